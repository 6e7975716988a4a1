"""What keeping job statuses and results costs a drain, SQLite and PostgreSQL, same run.

N no-op jobs are enqueued (``enqueue_many``, not timed) into a fresh SQLite file or
PostgreSQL schema, then a ``Worker`` (the defaults: concurrency 10, timeouts on) drains them
(``run_until_empty``). Two variants, interleaved repetition by repetition:

* *statuses off* (``define_job(result_ttl=0)``): live states are read off the job's row,
  nothing is written when a job ends (the acknowledgement alone, as before statuses);
* *statuses kept* (the default, ``result_ttl`` one day): each ending also writes the job's
  final status and result, in the acknowledgement's transaction.

The ratio (kept ÷ off) compares bests of the same run; 1.0 means free. *CPU per job* is the
drain's process CPU time ÷ N (less noisy than wall time on a busy machine). The Lambda
handler's cost is in bench/lambda_dispatch.py (statuses off there: an SQS driver without a
status table makes no status calls at all; with one, each job costs DynamoDB requests, counted
in docs/sqs.md).

Run: ``python bench/status_cost.py [--quick] [--n N] [--repeats R] [--json PATH]``;
PostgreSQL rows need the server at ``$BENCH_POSTGRES_DSN`` (default the local test database).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from _common import best_and_median, row
from priority_claims import NAMES, fresh_driver, main_on_sql_drivers
from workload import PAYLOAD, Payload

BENCHMARK = "status cost"
VARIANTS = {"statuses off": 0.0, "statuses kept": 86400.0}


def drain(n: int, kind: str, result_ttl: float) -> tuple[float, float]:
    """(jobs/s, CPU µs per job) of one drain of N jobs."""
    from glasswork import define_module
    from glasswork.jobs import JobService, Worker, define_job

    job = define_job(
        name="bench-noop", handler=lambda payload: None, schema=Payload, result_ttl=result_ttl
    )
    module = define_module("bench", jobs=[job])
    with fresh_driver(kind) as driver:
        service = JobService(driver)
        for start in range(0, n, 1000):
            service.enqueue_many(job, [PAYLOAD] * min(1000, n - start))
        worker = Worker(module=module, driver=driver)
        cpu, wall = time.process_time(), time.perf_counter()
        ran = worker.run_until_empty().jobs
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if ran != n:
        raise RuntimeError(f"the worker ran {ran} of {n} jobs")
    return n / wall, cpu / n * 1e6


def measure(n: int, repeats: int, kind: str) -> list[dict[str, Any]]:
    rate: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant, ttl in VARIANTS.items():
            per_s, per_job = drain(n, kind, ttl)
            rate[variant].append(per_s)
            cpu[variant].append(per_job)
    name = NAMES[kind]
    notes = f"N={n:,} no-op jobs, Worker().run_until_empty()"
    rows, best, best_cpu = [], {}, {}
    for variant in VARIANTS:
        best[variant], median = best_and_median(rate[variant], higher_is_better=True)
        best_cpu[variant], median_cpu = best_and_median(cpu[variant], higher_is_better=False)
        rows.append(
            row(BENCHMARK, f"{name}, {variant}", "drain", best[variant], "jobs/s",
                median=median, runs=repeats, notes=notes)
        )  # fmt: skip
        rows.append(
            row(BENCHMARK, f"{name}, {variant}", "CPU per job", best_cpu[variant], "µs",
                median=median_cpu, runs=repeats, notes=notes)
        )  # fmt: skip
    rows.append(
        row(BENCHMARK, f"kept ÷ off ({name})", "throughput ratio",
            best["statuses kept"] / best["statuses off"], "x", runs=repeats,
            notes="1.0 means free; same run, interleaved")
    )  # fmt: skip
    return rows


def main(argv: list[str]) -> int:
    return main_on_sql_drivers(__doc__.splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
