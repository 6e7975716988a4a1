"""Outcome log overhead: what the dashboard's per-minute outcome counts cost the worker.

The ``OutcomeLog`` sink (glasswork/jobs/outcome_log.py), fed by the metrics step, counts
every run when the driver can store outcomes, as SQLite's and PostgreSQL's can. Two
measurements, each with the log on and off, interleaved repetition by repetition; headline
is the best repetition, the median beside it, and the ratios compare bests of the same run:

* *µs per run*: ``Executor.execute_sync`` of one no-op job M times, with no steps (the
  worker's fast path) and with only the log: the step's own cost, little disturbed by the
  machine's other work.
* *jobs/s drain*: N no-op jobs drained from a fresh SQLite file (and a fresh PostgreSQL
  schema, when the server at ``$BENCH_POSTGRES_DSN``, default the local test database,
  answers) by the Worker as ``worker_steps`` builds it (log on), and with the log removed
  from its chain (off).

Run: ``python bench/outcome_log.py [--quick] [--n N] [--repeats R] [--json PATH]``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import best_and_median, emit, parser, row
from workload import PAYLOAD, Payload, noop

BENCHMARK = "outcome log overhead"
DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


@contextlib.contextmanager
def fresh_driver(kind: str) -> Iterator[Any]:
    """A driver on a fresh SQLite file or PostgreSQL schema, removed afterwards."""
    if kind == "sqlite":
        from glasswork.jobs import SQLiteQueueDriver

        with tempfile.TemporaryDirectory(prefix="bench-outcomes-") as tmp:
            driver = SQLiteQueueDriver(str(Path(tmp) / "jobs.db"))
            yield driver
            driver.close()
        return
    import psycopg

    from glasswork.jobs import PostgresQueueDriver

    schema = f"bench_outcomes_{uuid.uuid4().hex[:8]}"
    try:
        with PostgresQueueDriver(DSN, schema=schema) as driver:
            yield driver
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def postgres_answers() -> bool:
    try:
        import psycopg

        psycopg.connect(DSN, connect_timeout=3).close()
    except Exception as exc:
        print(f"# PostgreSQL at {DSN} not used: {exc}", file=sys.stderr)
        return False
    return True


def drain_once(n: int, kind: str, *, log_on: bool) -> float:
    """Seconds to drain ``n`` enqueued jobs with the outcome log on or off."""
    from glasswork import define_module
    from glasswork.jobs import JobService, Worker, define_job
    from glasswork.jobs.metrics.outcome_log import OutcomeLog

    job = define_job(name="bench-noop", handler=noop, schema=Payload)
    module = define_module("bench", jobs=[job])
    with fresh_driver(kind) as driver:
        JobService(driver).enqueue_many(job, [PAYLOAD] * n)
        driver.records_outcomes = log_on  # off: the documented opt-out, no sink and no step
        worker = Worker(module=module, driver=driver, install_signal_handlers=False)
        if log_on != any(isinstance(s, OutcomeLog) for s in worker.metrics):
            raise RuntimeError("the worker's outcome log is not as asked: nothing to measure")
        start = time.perf_counter()
        ran = worker.run_until_empty().jobs  # flushes the log as it stops
        seconds = time.perf_counter() - start
    if ran != n:
        raise RuntimeError(f"ran {ran} of {n} jobs")
    return seconds


def run_cost(m: int, *, log_on: bool, workdir: Path) -> float:
    """µs per ``execute_sync`` of a no-op job, with the outcome log as the only step or none."""
    from glasswork import define_module
    from glasswork.jobs import JobMessage, SQLiteQueueDriver, define_job
    from glasswork.jobs.execution import Executor
    from glasswork.jobs.metrics import JobMetrics
    from glasswork.jobs.metrics.outcome_log import OutcomeLog

    job = define_job(name="bench-noop", handler=noop, schema=Payload)
    driver = SQLiteQueueDriver(str(workdir / "jobs.db"))
    log = OutcomeLog(driver, flush_every=3600)  # flushed once, after the timing
    steps = [JobMetrics([log])] if log_on else []
    executor = Executor.for_module(define_module("bench", jobs=[job]), steps=steps)
    body = JobMessage.create("bench-noop", PAYLOAD).encode()
    for _ in range(200):
        executor.execute_sync(body)
    start = time.perf_counter()
    for _ in range(m):
        executor.execute_sync(body)
    seconds = time.perf_counter() - start
    log.flush()
    driver.close()
    return seconds / m * 1e6


def interleaved(repeats: int, measure_one: Any) -> dict[bool, list[float]]:
    """``measure_one(log_on)`` for off then on, ``repeats`` times."""
    samples: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for log_on in (False, True):
            samples[log_on].append(measure_one(log_on))
    return samples


def pair_rows(
    samples: dict[bool, list[float]], labels: tuple[str, str], metric: str, unit: str, notes: str
) -> tuple[list[dict[str, Any]], dict[bool, float]]:
    """One row per setting (off, on) and the two bests."""
    rows, best = [], {}
    for log_on, label in zip((False, True), labels, strict=True):
        best[log_on], median = best_and_median(samples[log_on], higher_is_better=unit != "µs")
        rows.append(
            row(BENCHMARK, label, metric, best[log_on], unit, median=median,
                runs=len(samples[log_on]), notes=notes)
        )  # fmt: skip
    return rows, best


def measure_runs(m: int, repeats: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-outcomes-") as tmp:
        costs = interleaved(repeats, lambda on: run_cost(m, log_on=on, workdir=Path(tmp)))
    labels = ("Executor, no steps", "Executor, outcome log")
    notes = f"execute_sync of a no-op job, M={m:,}"
    rows, best = pair_rows(costs, labels, "µs per run", "µs", notes)
    rows.append(
        row(BENCHMARK, "outcome log", "µs added per run", best[True] - best[False], "µs",
            runs=repeats, notes="difference of the bests")
    )  # fmt: skip
    return rows


def measure(n: int, repeats: int, kind: str) -> list[dict[str, Any]]:
    def rate(log_on: bool) -> float:
        return n / drain_once(n, kind, log_on=log_on)

    name = NAMES[kind]
    labels = (f"Worker ({name}), outcome log off", f"Worker ({name}), outcome log on")
    notes = f"N={n:,} no-op jobs, concurrency 10"
    rows, best = pair_rows(interleaved(repeats, rate), labels, "jobs/s drain", "jobs/s", notes)
    rows.append(
        row(BENCHMARK, f"on ÷ off ({name})", "throughput ratio", best[True] / best[False], "x",
            runs=repeats, notes="1.0 means free; same run, interleaved")
    )  # fmt: skip
    return rows


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="jobs per run")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    n = args.n or (2000 if args.quick else 20000)
    repeats = args.repeats or (2 if args.quick else 5)
    m = 5000 if args.quick else 50000
    rows = measure_runs(m, repeats) + measure(n, repeats, "sqlite")
    if postgres_answers():
        rows += measure(n, repeats, "postgresql")
    emit(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
