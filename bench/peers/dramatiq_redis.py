"""Dramatiq on a real Redis server: enqueue N messages with ``actor.send``, then start a
``dramatiq.Worker`` (its default 8 threads) and wait for the queue to empty with
``broker.join``.

Run alone: ``python bench/peers/dramatiq_redis.py [--quick]`` (starts a private redis-server).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import REDIS_URL_ENV, contender_main, redis_client
from workload import validate_payload, wire_payload

LABEL = "Dramatiq Worker (Redis)"
NOTES = "RedisBroker + Worker (8 threads), broker.join"


def run_once(n: int, workdir: Path) -> dict[str, float]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    logging.getLogger("dramatiq").setLevel(logging.WARNING)
    redis_client()  # flush
    broker = RedisBroker(url=os.environ[REDIS_URL_ENV])
    dramatiq.set_broker(broker)
    done = [0]

    def task(payload: Any) -> None:
        validate_payload(payload)
        done[0] += 1

    task.__name__ = "bench_noop"
    actor = dramatiq.actor(task, broker=broker, queue_name="bench", max_retries=0)

    start = time.perf_counter()
    for _ in range(n):
        actor.send(wire_payload())
    enqueued = time.perf_counter()
    worker = dramatiq.Worker(broker)
    worker.start()
    broker.join("bench", interval=10)
    worker.join()
    drained = time.perf_counter()
    worker.stop()
    broker.close()
    if done[0] != n:
        raise RuntimeError(f"dramatiq ran {done[0]} of {n} messages")
    return {"enqueue_s": enqueued - start, "drain_s": drained - enqueued}


if __name__ == "__main__":
    sys.exit(contender_main(LABEL, run_once, NOTES, needs_redis=True))
