"""RQ on a real Redis server: enqueue N jobs, then drain them with ``SimpleWorker`` in burst
mode (jobs run in the worker's own process, no fork per job: RQ's fastest worker).

Run alone: ``python bench/peers/rq_redis.py [--quick]`` (starts a private redis-server).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import contender_main, redis_client
from workload import validate_payload, wire_payload

LABEL = "RQ SimpleWorker (Redis)"
NOTES = "SimpleWorker.work(burst=True), 1 process"


def run_once(n: int, workdir: Path) -> dict[str, float]:
    from rq import Queue, SimpleWorker

    conn = redis_client()
    queue = Queue("bench", connection=conn)
    start = time.perf_counter()
    for _ in range(n):
        queue.enqueue(validate_payload, wire_payload())
    enqueued = time.perf_counter()
    worker = SimpleWorker([queue], connection=conn)
    worker.work(burst=True, logging_level="WARNING")
    drained = time.perf_counter()
    finished = queue.finished_job_registry.count
    if finished != n:
        raise RuntimeError(f"rq finished {finished} of {n} jobs")
    return {"enqueue_s": enqueued - start, "drain_s": drained - enqueued}


if __name__ == "__main__":
    sys.exit(contender_main(LABEL, run_once, NOTES, needs_redis=True))
