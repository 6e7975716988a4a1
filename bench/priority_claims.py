"""Priority claims: what claiming highest priority first costs the SQLite and PostgreSQL
drivers, against plain claims, in the same run.

N no-op jobs are enqueued (``enqueue_many``, not timed) into a fresh SQLite file or
PostgreSQL schema, then claimed ten at a time (``receive(max_messages=10)``) and
acknowledged (``ack_many``) until the queue is empty; *claims/s* is N ÷ that time. Three
queues per driver, interleaved repetition by repetition:

* *plain*: every job priority 0 (the partial priority index stays empty; each claim only
  finds that out);
* *mixed*: priorities drawn from -1, 0 (half of them), 1, 5 and 10, so every claim takes
  from several bands of the priority index;
* *mixed + scheduled*: as *mixed*, plus N/2 jobs of priority 10 due in an hour, which sit in
  the priority index ahead of the due ones of lower priority (each claim walks past them:
  the cost a large backlog of delayed prioritised jobs adds).

The ratios (mixed ÷ plain) compare bests of the same run; 1.0 means free.

Run: ``python bench/priority_claims.py [--quick] [--n N] [--repeats R] [--json PATH]``;
PostgreSQL rows need the server at ``$BENCH_POSTGRES_DSN`` (default the local test
database).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import best_and_median, emit, parser, row

BENCHMARK = "priority claims"
DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
MODES = ("plain", "mixed", "mixed + scheduled")
LEVELS = (-1, 0, 0, 0, 0, 1, 5, 10)


@contextlib.contextmanager
def fresh_driver(kind: str) -> Iterator[Any]:
    """A driver on a fresh SQLite file or PostgreSQL schema, removed afterwards."""
    if kind == "sqlite":
        from glasswork.jobs import SQLiteQueueDriver

        with tempfile.TemporaryDirectory(prefix="bench-priority-") as tmp:
            driver = SQLiteQueueDriver(str(Path(tmp) / "jobs.db"))
            yield driver
            driver.close()
        return
    import psycopg

    from glasswork.jobs import PostgresQueueDriver

    schema = f"bench_priority_{uuid.uuid4().hex[:8]}"
    try:
        with PostgresQueueDriver(DSN, schema=schema) as driver:
            yield driver
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def fill(driver: Any, n: int, mode: str) -> None:
    from glasswork.jobs import JobMessage

    rng = random.Random(7)

    def level() -> int:
        return 0 if mode == "plain" else rng.choice(LEVELS)

    for start in range(0, n, 1000):
        batch = [
            JobMessage.create("noop", {"n": i}, priority=level())
            for i in range(start, min(n, start + 1000))
        ]
        driver.enqueue_many(batch)
    if mode == "mixed + scheduled":
        for start in range(0, n // 2, 1000):
            later = [
                JobMessage.create("later", {"n": i}, priority=10)
                for i in range(start, min(n // 2, start + 1000))
            ]
            driver.enqueue_many(later, delay_seconds=3600)


def claim_all(n: int, kind: str, mode: str) -> float:
    """Seconds to claim and acknowledge the N due jobs of a fresh queue."""
    with fresh_driver(kind) as driver:
        fill(driver, n, mode)
        claimed = 0
        start = time.perf_counter()
        while claimed < n:
            got = driver.receive(max_messages=10)
            if not got:
                raise RuntimeError(f"the queue ran dry after {claimed} of {n} jobs")
            driver.ack_many(got)
            claimed += len(got)
        return time.perf_counter() - start


def measure(n: int, repeats: int, kind: str) -> list[dict[str, Any]]:
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(repeats):
        for mode in MODES:
            samples[mode].append(n / claim_all(n, kind, mode))
    name = NAMES[kind]
    notes = f"N={n:,} jobs, receive(10) + ack_many"
    rows, best = [], {}
    for mode in MODES:
        best[mode], median = best_and_median(samples[mode], higher_is_better=True)
        rows.append(
            row(BENCHMARK, f"{name}, {mode}", "claims/s", best[mode], "jobs/s",
                median=median, runs=repeats, notes=notes)
        )  # fmt: skip
    for mode in MODES[1:]:
        rows.append(
            row(BENCHMARK, f"{mode} ÷ plain ({name})", "throughput ratio",
                best[mode] / best["plain"], "x", runs=repeats,
                notes="1.0 means free; same run, interleaved")
        )  # fmt: skip
    return rows


def postgres_answers() -> bool:
    try:
        import psycopg

        with psycopg.connect(DSN, connect_timeout=3):
            return True
    except Exception:
        return False


def main_on_sql_drivers(
    description: str, measure: Callable[[int, int, str], list[dict[str, Any]]], argv: list[str]
) -> int:
    """The ``main`` of a script measuring ``measure(n, repeats, kind)`` on SQLite, then on
    PostgreSQL when the server answers: ``--n``, ``--repeats``, ``--quick``, ``--json``."""
    p = parser(description)
    p.add_argument("--n", type=int, default=None, help="jobs per run")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    n = args.n or (2000 if args.quick else 10000)
    repeats = args.repeats or (2 if args.quick else 5)
    rows = measure(n, repeats, "sqlite")
    if postgres_answers():
        rows += measure(n, repeats, "postgresql")
    emit(rows, args.json)
    return 0


def main(argv: list[str]) -> int:
    return main_on_sql_drivers(__doc__.splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
