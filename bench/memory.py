"""Memory: peak RSS of a worker process with 100,000 jobs pending in SQLite.

One process fills the queue file (so its memory is not counted); a fresh process then
imports the library, records its RSS, starts the worker and drains every pending job, and
reports its peak RSS (``ru_maxrss``) and the growth over the imports. Huey's ``SqliteHuey``
gets the same treatment for comparison (its in-process dequeue/execute loop).

Run: ``python bench/memory.py [--quick] [--pending N]``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Row, emit, parser, row, run_json, skipped
from workload import PAYLOAD, Payload, noop, validate_payload, wire_payload

BENCH = "memory"
CHUNK = 10_000


def rss_now_mib() -> float:
    """Resident set size now, from /proc (falls back to the peak elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- Glasswork ----------------------------------------------------------------------------


def glasswork_fill(db: Path, pending: int) -> None:
    from glasswork.jobs import JobService, SQLiteQueueDriver, define_job

    job = define_job(name="bench-noop", handler=noop, schema=Payload)
    driver = SQLiteQueueDriver(str(db))
    service = JobService(driver)
    for start in range(0, pending, CHUNK):
        service.enqueue_many(job, [PAYLOAD] * min(CHUNK, pending - start))
    driver.close()


def glasswork_drain(db: Path, pending: int) -> dict[str, float]:
    import logging

    logging.basicConfig(level=logging.WARNING)
    from embedded_throughput import drain, make_worker

    from glasswork import define_module
    from glasswork.jobs import SQLiteQueueDriver, define_job

    job = define_job(name="bench-noop", handler=noop, schema=Payload)
    module = define_module("bench", jobs=[job])
    driver = SQLiteQueueDriver(str(db))
    before = rss_now_mib()
    start = time.perf_counter()
    ran = drain(make_worker(module, driver))
    took = time.perf_counter() - start
    if ran != pending:
        raise RuntimeError(f"the worker ran {ran} of {pending} jobs")
    return {"before": before, "peak": peak_rss_mib(), "after": rss_now_mib(), "seconds": took}


# -- Huey ---------------------------------------------------------------------------------


def huey_fill(db: Path, pending: int) -> None:
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=str(db))
    task = huey.task(name="bench")(validate_payload)
    for _ in range(pending):
        task(wire_payload())


def huey_drain(db: Path, pending: int) -> dict[str, float]:
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=str(db))
    huey.task(name="bench")(validate_payload)
    before = rss_now_mib()
    start = time.perf_counter()
    ran = 0
    while (message := huey.dequeue()) is not None:
        huey.execute(message)
        ran += 1
    took = time.perf_counter() - start
    if ran != pending:
        raise RuntimeError(f"huey ran {ran} of {pending} tasks")
    return {"before": before, "peak": peak_rss_mib(), "after": rss_now_mib(), "seconds": took}


STEPS: dict[str, Any] = {
    "glasswork-fill": glasswork_fill,
    "glasswork-drain": glasswork_drain,
    "huey-fill": huey_fill,
    "huey-drain": huey_drain,
}
LABELS = {"glasswork": "Glasswork Worker (SQLite)", "huey": "Huey SqliteHuey"}


def step(name: str, db: Path, pending: int) -> Any:
    """Run one step in a fresh interpreter; returns what it printed as JSON."""
    return run_json(
        [sys.executable, __file__, "--step", name, "--db", str(db), "--pending", str(pending)],
        timeout=900,
    )


def measure(pending: int, contenders: list[str]) -> list[Row]:
    rows: list[Row] = []
    for name in contenders:
        label = LABELS[name]
        with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
            db = Path(tmp) / "jobs.db"
            try:
                step(f"{name}-fill", db, pending)
                got = step(f"{name}-drain", db, pending)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                rows.append(skipped(BENCH, label, f"failed: {exc}", status="failed"))
                continue
        notes = (
            f"{pending:,} pending jobs, all drained in {got['seconds']:.1f}s; "
            f"RSS {got['before']:.0f} MiB after imports and driver setup"
        )
        rows.append(row(BENCH, label, "peak RSS while draining", got["peak"], "MiB", notes=notes))
        rows.append(
            row(
                BENCH,
                label,
                "RSS growth over imports",
                got["peak"] - got["before"],
                "MiB",
                notes=notes,
            )
        )
    for r in rows:
        r["pending"] = pending
    return rows


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--pending", type=int, default=None)
    p.add_argument("--contenders", default="glasswork,huey")
    p.add_argument("--step", choices=sorted(STEPS), help=argparse_hidden())
    p.add_argument("--db", type=Path, help=argparse_hidden())
    args = p.parse_args(argv)
    pending = args.pending or (10_000 if args.quick else 100_000)
    if args.step:
        result = STEPS[args.step](args.db, pending)
        print(json.dumps(result))
        return 0
    contenders = args.contenders.split(",")
    rows: list[Row] = []
    if "glasswork" in contenders:
        from embedded_throughput import missing_pieces

        why = missing_pieces()
        if why:
            rows.append(skipped(BENCH, LABELS["glasswork"], why, status="missing"))
            contenders.remove("glasswork")
    rows += measure(pending, contenders)
    emit(rows, args.json)
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
