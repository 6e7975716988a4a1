"""Huey with ``SqliteHuey``: enqueue N tasks, then run them all in this process.

Huey's own consumer polls with sleeps between empty reads and spreads work over threads;
to give Huey its best number the drain here is its in-process API in a tight loop,
``huey.execute(huey.dequeue())`` until the queue is empty (one thread, no polling delay).
Storage is Huey's defaults (WAL journal), results on (a no-op's None is not stored).

Run alone: ``python bench/peers/huey_sqlite.py [--quick]``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import contender_main
from workload import validate_payload, wire_payload

LABEL = "Huey SqliteHuey"
NOTES = "in-process huey.execute(huey.dequeue()) loop, 1 thread"


def run_once(n: int, workdir: Path) -> dict[str, float]:
    from huey import SqliteHuey

    logging.getLogger("huey").setLevel(logging.WARNING)
    huey = SqliteHuey("bench", filename=str(workdir / "huey.db"))
    task = huey.task()(validate_payload)

    start = time.perf_counter()
    for _ in range(n):
        task(wire_payload())
    enqueued = time.perf_counter()
    done = 0
    while (message := huey.dequeue()) is not None:
        huey.execute(message)
        done += 1
    drained = time.perf_counter()
    if done != n:
        raise RuntimeError(f"huey ran {done} of {n} tasks")
    return {"enqueue_s": enqueued - start, "drain_s": drained - enqueued}


if __name__ == "__main__":
    sys.exit(contender_main(LABEL, run_once, NOTES, needs_redis=False))
