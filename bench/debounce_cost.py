"""What a debounced enqueue costs, SQLite and PostgreSQL, same run.

N single enqueues (``JobService.enqueue``, one at a time, as an app does) of a job with a
unique key into a fresh SQLite file or PostgreSQL schema, timed. Three variants,
interleaved repetition by repetition:

* *plain, a key each*: ``enqueue(job, payload)``, every payload with a key of its own (one
  ``INSERT``);
* *debounced, a key each*: ``enqueue(..., debounce="1h")``, nothing to supersede (SQLite:
  a ``BEGIN IMMEDIATE`` transaction that looks the key up and inserts; PostgreSQL: one call
  of ``glasswork_debounce``);
* *debounced, one key*: every enqueue supersedes the one before (the holder's end written,
  its row deleted, the new one inserted).

Ratios (variant ÷ plain) compare bests of the same run; 1.0 means free.

Run: ``python bench/debounce_cost.py [--quick] [--n N] [--repeats R] [--json PATH]``;
PostgreSQL rows need the server at ``$BENCH_POSTGRES_DSN`` (default the local test database).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from _common import best_and_median, row
from priority_claims import NAMES, fresh_driver, main_on_sql_drivers

BENCHMARK = "debounce cost"
VARIANTS = ("plain, a key each", "debounced, a key each", "debounced, one key")
BASE = VARIANTS[0]


def enqueue_all(n: int, kind: str, variant: str) -> float:
    """Enqueues per second of ``n`` enqueues."""
    from glasswork.jobs import JobService, define_job

    job = define_job(name="bench-debounce", handler=lambda p: None, unique=lambda p: p["key"])
    keys = ["one"] * n if variant == "debounced, one key" else [f"k{i}" for i in range(n)]
    debounce = None if variant == BASE else "1h"
    with fresh_driver(kind) as driver:
        service = JobService(driver)
        start = time.perf_counter()
        for i, key in enumerate(keys):
            service.enqueue(job, {"key": key, "n": i}, debounce=debounce)
        elapsed = time.perf_counter() - start
        expected = 1 if variant == "debounced, one key" else n
        if driver.pending_count() != expected:
            raise RuntimeError(f"{variant}: {driver.pending_count()} jobs left, not {expected}")
    return n / elapsed


def measure(n: int, repeats: int, kind: str) -> list[dict[str, Any]]:
    rate: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            rate[variant].append(enqueue_all(n, kind, variant))
    name = NAMES[kind]
    notes = f"N={n:,} JobService.enqueue calls, one at a time"
    rows, best = [], {}
    for variant in VARIANTS:
        best[variant], median = best_and_median(rate[variant], higher_is_better=True)
        rows.append(
            row(BENCHMARK, f"{name}, {variant}", "enqueue", best[variant], "enqueues/s",
                median=median, runs=repeats, notes=notes)
        )  # fmt: skip
        rows.append(
            row(BENCHMARK, f"{name}, {variant}", "per enqueue", 1e6 / best[variant], "µs",
                runs=repeats, notes=notes)
        )  # fmt: skip
    for variant in VARIANTS[1:]:
        rows.append(
            row(BENCHMARK, f"{variant} ÷ {BASE} ({name})", "throughput ratio",
                best[variant] / best[BASE], "x", runs=repeats,
                notes="1.0 means free; same run, interleaved")
        )  # fmt: skip
    return rows


def main(argv: list[str]) -> int:
    return main_on_sql_drivers(__doc__.splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
