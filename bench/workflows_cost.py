"""What a workflow costs per member: a group of N members (and its fan-in callback) against
N plain jobs, SQLite and PostgreSQL, same run.

Two variants, interleaved repetition by repetition, each on a fresh SQLite file or
PostgreSQL schema, drained by a ``Worker`` (the defaults: concurrency 10) with
``run_until_empty``:

* *N plain jobs*: ``enqueue_many`` of N no-op jobs;
* *group of N*: ``enqueue_workflow(group(*(job.s(p) for ...)).then(callback))``: the
  workflow row, N step rows and N jobs stored in one transaction; each member's end counted
  in its finish transaction (its step row marked once, the counter decremented); the last
  one builds the N results and enqueues the callback, which the drain runs too.

*Enqueue per job* is the enqueue's wall time ÷ N; *drain* is jobs per second; *CPU per
job* is the process CPU time of the whole run (enqueue and drain) ÷ N. The ratio rows
compare the bests of the same run; *cost per member* is (group - plain) wall time ÷ N.

Run: ``python bench/workflows_cost.py [--quick] [--n N] [--repeats R] [--json PATH]``;
PostgreSQL rows need the server at ``$BENCH_POSTGRES_DSN`` (default the local test database).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from _common import best_and_median, row
from priority_claims import NAMES, fresh_driver, main_on_sql_drivers
from workload import PAYLOAD, Payload

BENCHMARK = "workflow cost"
VARIANTS = ("N plain jobs", "group of N")


def run_once(n: int, kind: str, variant: str) -> tuple[float, float, float]:
    """(enqueue µs per job, drain jobs/s, CPU µs per job) of one run."""
    from glasswork import define_module
    from glasswork.jobs import JobService, Worker, define_job
    from glasswork.jobs.workflows import group

    job = define_job(name="bench-noop", handler=lambda payload: None, schema=Payload)
    called: list[int] = []
    callback = define_job(
        name="bench-callback", handler=lambda results: called.append(len(results)),
        schema=list[Any],
    )  # fmt: skip
    module = define_module("bench", jobs=[job, callback])
    with fresh_driver(kind) as driver:
        service = JobService(driver)
        cpu, wall = time.process_time(), time.perf_counter()
        if variant == "group of N":
            service.enqueue_workflow(group(*(job.s(PAYLOAD) for _ in range(n))).then(callback))
        else:
            for start in range(0, n, 1000):
                service.enqueue_many(job, [PAYLOAD] * min(1000, n - start))
        enqueued = time.perf_counter()
        ran = Worker(module=module, driver=driver).run_until_empty().jobs
        end = time.perf_counter()
        cpu = time.process_time() - cpu
    expected = n + 1 if variant == "group of N" else n
    if ran != expected or (variant == "group of N" and called != [n]):
        raise RuntimeError(f"the worker ran {ran} of {expected} jobs (callback: {called})")
    return (enqueued - wall) / n * 1e6, n / (end - enqueued), cpu / n * 1e6


def measure(n: int, repeats: int, kind: str) -> list[dict[str, Any]]:
    enqueue: dict[str, list[float]] = {v: [] for v in VARIANTS}
    drain: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            per_job, per_s, cpu_job = run_once(n, kind, variant)
            enqueue[variant].append(per_job)
            drain[variant].append(per_s)
            cpu[variant].append(cpu_job)
    name = NAMES[kind]
    notes = f"N={n:,} no-op jobs; the group's callback gets the N results"
    rows, best = [], {}
    for variant in VARIANTS:
        for metric, values, unit, higher in (
            ("enqueue per job", enqueue[variant], "µs", False),
            ("drain", drain[variant], "jobs/s", True),
            ("CPU per job", cpu[variant], "µs", False),
        ):
            value, median = best_and_median(values, higher_is_better=higher)
            best[variant, metric] = value
            rows.append(
                row(BENCHMARK, f"{name}, {variant}", metric, value, unit,
                    median=median, runs=repeats, notes=notes)
            )  # fmt: skip
    plain_s = best["N plain jobs", "enqueue per job"] / 1e6 + 1 / best["N plain jobs", "drain"]
    group_s = best["group of N", "enqueue per job"] / 1e6 + 1 / best["group of N", "drain"]
    rows += [
        row(BENCHMARK, f"group ÷ plain ({name})", "drain ratio",
            best["group of N", "drain"] / best["N plain jobs", "drain"], "x", runs=repeats,
            notes="1.0 means free; same run, interleaved"),
        row(BENCHMARK, f"group ÷ plain ({name})", "enqueue ratio",
            best["group of N", "enqueue per job"] / best["N plain jobs", "enqueue per job"],
            "x", runs=repeats, notes="time per job; same run"),
        row(BENCHMARK, f"group - plain ({name})", "cost per member", (group_s - plain_s) * 1e6,
            "µs", runs=repeats, notes="enqueue + drain wall time per job, bests"),
    ]  # fmt: skip
    return rows


def main(argv: list[str]) -> int:
    return main_on_sql_drivers(__doc__.splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
