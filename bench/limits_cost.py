"""What flow limits cost a drain, SQLite and PostgreSQL, same run: taken in the claim (how
workers on these drivers hold them) and through ``acquire`` (a call per start: how they
held them before, and how a driver without ``ClaimLimits`` does).

N no-op jobs are enqueued (``enqueue_many``, not timed) into a fresh SQLite file or
PostgreSQL schema, then a ``Worker`` (the defaults: concurrency 10, timeouts on) drains them
(``run_until_empty``). The variants, interleaved repetition by repetition:

* *no limits*: the module's only job has none (the worker has no limits to hold at all);
* *unlimited beside a limited job*: the drained job has no limits, but the module also
  registers a limited one, so the worker claims with limits (in the claim: the limited
  claim, finding no limited row; acquire: the gate, asked for every job) — what "an
  unlimited job pays nothing" is about;
* *rate_limit, never throttling*: ``rate_limit="1000000/s"`` (far above the drain's rate):
  every start is counted against the starts of the last second;
* *concurrency_limit, never throttling*: ``concurrency_limit=1000`` (above the worker's 10):
  every start takes a slot; *per key*: with a ``concurrency_key`` (the claim reads each
  row's key from its body).

Each limited variant runs both ways: *in the claim* (``Worker`` on the driver as it is) and
*acquire* (the driver's ``limited_claims`` set to None on the instance, so the worker asks
``acquire`` per start). After an unmeasured warm-up drain, each repetition runs every
variant, starting from another one each time. Ratios (variant ÷ no limits) compare bests
of the same run; 1.0 means free. *CPU per job* is the drain's process CPU time ÷ N (on
PostgreSQL the server's work is not in it).

Run: ``python bench/limits_cost.py [--quick] [--n N] [--repeats R] [--json PATH]``;
PostgreSQL rows need the server at ``$BENCH_POSTGRES_DSN`` (default the local test database).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from _common import best_and_median, row
from priority_claims import NAMES, fresh_driver, main_on_sql_drivers
from workload import PAYLOAD, Payload

BENCHMARK = "limits cost"
#: variant -> (the drained job's define_job limits, whether a limited job is registered too,
#: how the worker holds them: "claim" or "acquire"; None: it has none to hold)
VARIANTS: dict[str, tuple[dict[str, Any], bool, str | None]] = {
    "no limits": ({}, False, None),
    "unlimited beside a limited job, in the claim": ({}, True, "claim"),
    "unlimited beside a limited job, acquire": ({}, True, "acquire"),
    "rate_limit, in the claim": ({"rate_limit": "1000000/s"}, False, "claim"),
    "rate_limit, acquire": ({"rate_limit": "1000000/s"}, False, "acquire"),
    "concurrency_limit, in the claim": ({"concurrency_limit": 1000}, False, "claim"),
    "concurrency_limit, acquire": ({"concurrency_limit": 1000}, False, "acquire"),
    "concurrency_limit per key, in the claim": (
        {"concurrency_limit": 1000, "concurrency_key": lambda p: "tenant-1"},
        False,
        "claim",
    ),
    "concurrency_limit per key, acquire": (
        {"concurrency_limit": 1000, "concurrency_key": lambda p: "tenant-1"},
        False,
        "acquire",
    ),
}
BASE = "no limits"


def drain(
    n: int, kind: str, limits: dict[str, Any], beside: bool, way: str | None
) -> tuple[float, float]:
    """(jobs/s, CPU µs per job) of one drain of N jobs."""
    from glasswork import define_module
    from glasswork.jobs import JobService, Worker, define_job

    job = define_job(name="bench-noop", handler=lambda payload: None, schema=Payload, **limits)
    jobs = [job]
    if beside:
        jobs.append(define_job(name="bench-limited", handler=lambda: None, rate_limit="1/s"))
    module = define_module("bench", jobs=jobs)
    with fresh_driver(kind) as driver:
        service = JobService(driver)
        for start in range(0, n, 1000):
            service.enqueue_many(job, [PAYLOAD] * min(1000, n - start))
        if way == "acquire":
            driver.limited_claims = None  # opted out of ClaimLimits: acquire() per start
        worker = Worker(module=module, driver=driver)
        cpu, wall = time.process_time(), time.perf_counter()
        summary = worker.run_until_empty()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if summary.jobs != n or summary.throttled:
        raise RuntimeError(f"the worker ran {summary.jobs} of {n} jobs: {summary}")
    return n / wall, cpu / n * 1e6


def measure(n: int, repeats: int, kind: str) -> list[dict[str, Any]]:
    rate: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    drain(min(n, 1000), kind, {}, False, None)  # a warm-up, not measured
    order = list(VARIANTS)
    for repeat in range(repeats):
        # Each repetition starts with another variant: the first of a round runs slower.
        shift = repeat * len(order) // max(1, repeats)
        for variant in order[shift:] + order[:shift]:
            limits, beside, way = VARIANTS[variant]
            per_s, per_job = drain(n, kind, limits, beside, way)
            rate[variant].append(per_s)
            cpu[variant].append(per_job)
    name = NAMES[kind]
    notes = f"N={n:,} no-op jobs, Worker().run_until_empty()"
    rows, best = [], {}
    for variant in VARIANTS:
        best[variant], median = best_and_median(rate[variant], higher_is_better=True)
        best_cpu, median_cpu = best_and_median(cpu[variant], higher_is_better=False)
        rows.append(
            row(BENCHMARK, f"{name}, {variant}", "drain", best[variant], "jobs/s",
                median=median, runs=repeats, notes=notes)
        )  # fmt: skip
        rows.append(
            row(BENCHMARK, f"{name}, {variant}", "CPU per job", best_cpu, "µs",
                median=median_cpu, runs=repeats, notes=notes)
        )  # fmt: skip
    for variant in VARIANTS:
        if variant != BASE:
            rows.append(
                row(BENCHMARK, f"{variant} ÷ {BASE} ({name})", "throughput ratio",
                    best[variant] / best[BASE], "x", runs=repeats,
                    notes="1.0 means free; same run, interleaved")
            )  # fmt: skip
    for variant in VARIANTS:
        if variant.endswith(", in the claim"):
            before = variant.replace(", in the claim", ", acquire")
            rows.append(
                row(BENCHMARK, f"{variant} ÷ acquire ({name})", "throughput ratio",
                    best[variant] / best[before], "x", runs=repeats,
                    notes="the claim's way against a call per start; same run")
            )  # fmt: skip
    return rows


def main(argv: list[str]) -> int:
    return main_on_sql_drivers(__doc__.splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
