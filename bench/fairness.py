"""Fair tenants: when a small tenant's jobs finish behind a big tenant's backlog, with and
without ``fairness_key``, and what the fair claim costs a drain; SQLite and PostgreSQL, same
run.

Tenant A enqueues N jobs (20,000; ``enqueue_many``, not timed), then tenant B enqueues 20,
into a fresh SQLite file or PostgreSQL schema; one ``Worker`` (the defaults: concurrency 10)
drains the queue (``run_until_empty``). Each no-op handler notes its tenant as it finishes.
Two variants, interleaved repetition by repetition:

* *fair*: the job has ``fairness_key=lambda p: p["tenant"]``: claims take A's and B's jobs
  in turn;
* *plain*: the same job without it: claims take the oldest first, so B waits for all of A.

For each: the place (jobs finished) at which B's last job finished, how many of A's had
finished by then, and the seconds since the drain began (the goal: B's last job finishes
before A's 500th); and the drain's throughput (all N + 20 jobs), fair ÷ plain compared
within the same run (1.0 means the fair claim costs nothing).

Then the claim's cost against its backlog: 200 claims of 10 (``receive`` + ``ack_many``)
from a queue holding 100,000 jobs of one tenant (and 5 of another), 10,000 tenants of 2
jobs each, or 100,000 jobs without a key (the plain claim), in ms per claim (PostgreSQL: as
enqueued, before the table has statistics, and after ``ANALYZE``): a fair claim's work grows
with the keys it looks at, not with the jobs waiting.

Run: ``python bench/fairness.py [--quick] [--n N] [--repeats R] [--json PATH]``; PostgreSQL
rows need the server at ``$BENCH_POSTGRES_DSN`` (default the local test database).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from _common import best_and_median, emit, parser, row
from priority_claims import DSN, NAMES, fresh_driver, postgres_answers

BENCHMARK = "fair tenants"
SMALL = 20
VARIANTS = ("fair", "plain")
GOAL = 500


def drain(n: int, kind: str, variant: str) -> dict[str, float]:
    """One drain: B's last job's place, A's count then, its time, and the throughput."""
    from glasswork import define_module
    from glasswork.jobs import JobService, Worker, define_job

    finished: list[tuple[str, float]] = []
    lock = threading.Lock()

    def handler(payload: dict[str, Any]) -> None:
        with lock:
            finished.append((payload["tenant"], time.perf_counter()))

    fair = {"fairness_key": lambda p: p["tenant"]} if variant == "fair" else {}
    job = define_job(name="bench-tenant", handler=handler, **fair)  # type: ignore[call-overload]
    module = define_module("bench", jobs=[job])
    with fresh_driver(kind) as driver:
        service = JobService(driver)
        for start in range(0, n, 1000):
            service.enqueue_many(job, [{"tenant": "A"}] * min(1000, n - start))
        service.enqueue_many(job, [{"tenant": "B"}] * SMALL)
        worker = Worker(module=module, driver=driver, install_signal_handlers=False)
        began = time.perf_counter()
        summary = worker.run_until_empty()
        wall = time.perf_counter() - began
    if summary.done != n + SMALL:
        raise RuntimeError(f"the worker ran {summary.done} of {n + SMALL} jobs: {summary}")
    place = max(i for i, (tenant, _) in enumerate(finished) if tenant == "B")
    return {
        "place": place + 1,
        "a_before": sum(1 for tenant, _ in finished[:place] if tenant == "A"),
        "seconds": finished[place][1] - began,
        "rate": (n + SMALL) / wall,
    }


def measure(n: int, repeats: int, kind: str) -> list[dict[str, Any]]:
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            runs[variant].append(drain(n, kind, variant))
    name = NAMES[kind]
    notes = f"A: {n:,} jobs, then B: {SMALL}; one Worker (concurrency 10)"
    rows, best = [], {}
    for variant in VARIANTS:
        samples = runs[variant]
        label = f"{name}, {variant}"
        worst_a = max(s["a_before"] for s in samples)  # the headline is the worst run
        rows.append(
            row(BENCHMARK, label, "A's jobs finished before B's last", worst_a, "jobs",
                median=sorted(s["a_before"] for s in samples)[len(samples) // 2], runs=repeats,
                notes=f"{notes}; worst of the runs; goal: fewer than {GOAL}")
        )  # fmt: skip
        rows.append(
            row(BENCHMARK, label, "B's last job finished at place",
                max(s["place"] for s in samples), "of all", runs=repeats, notes=notes)
        )  # fmt: skip
        rows.append(
            row(BENCHMARK, label, "B's last job finished after",
                max(s["seconds"] for s in samples), "s", runs=repeats, notes=notes)
        )  # fmt: skip
        best[variant], median = best_and_median([s["rate"] for s in samples], higher_is_better=True)
        rows.append(
            row(BENCHMARK, label, "drain", best[variant], "jobs/s", median=median,
                runs=repeats, notes=notes)
        )  # fmt: skip
    rows.append(
        row(BENCHMARK, f"fair ÷ plain ({name})", "throughput ratio",
            best["fair"] / best["plain"], "x", runs=repeats,
            notes="1.0 means free; same run, interleaved")
    )  # fmt: skip
    return rows


#: backlog -> (keys, jobs per key); no keys: the plain claim.
BACKLOGS = {
    "100,000 jobs of one tenant": (1, 100_000),
    "10,000 tenants of 2 jobs": (10_000, 2),
    "100,000 jobs without a key": (0, 100_000),
}
CLAIMS = 200


def claim_cost(kind: str, keys: int, each: int, scale: float, analyzed: bool) -> float:
    """ms per claim of 10 (and its ack) from the backlog (on PostgreSQL, ``analyzed``: after
    ``ANALYZE``, as autovacuum leaves a table that has lived a while)."""
    from glasswork.jobs import JobMessage

    total = int((max(keys, 1) * each) * scale)
    with fresh_driver(kind) as driver:
        batch = []
        for i in range(total):
            key = f"t{i % keys:05}" if keys else None
            batch.append(JobMessage.create("bench-tenant", {"tenant": key}, fairness_key=key))
            if len(batch) == 1000:
                driver.enqueue_many(batch)
                batch = []
        if keys == 1:
            batch += [JobMessage.create("bench-tenant", {}, fairness_key="z") for _ in range(5)]
        if batch:
            driver.enqueue_many(batch)
        if analyzed:
            import psycopg

            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(f'ANALYZE "{driver.schema}".glasswork_jobs')
        driver.ack_many(driver.receive(max_messages=10))  # the first claim tags the queue
        began = time.perf_counter()
        for _ in range(CLAIMS):
            driver.ack_many(driver.receive(max_messages=10))
        return (time.perf_counter() - began) / CLAIMS * 1000


def measure_backlogs(repeats: int, kind: str, scale: float) -> list[dict[str, Any]]:
    rows = []
    # PostgreSQL plans differ before the table's first statistics: both are measured.
    states = (False, True) if kind == "postgresql" else (False,)
    for analyzed in states:
        for label, (keys, each) in BACKLOGS.items():
            samples = [claim_cost(kind, keys, each, scale, analyzed) for _ in range(repeats)]
            best, median = best_and_median(samples, higher_is_better=False)
            state = " (analyzed)" if analyzed else " (no statistics yet)" if states[1:] else ""
            notes = f"{CLAIMS} claims" + (f"; backlog scaled by {scale:g}" if scale != 1 else "")
            rows.append(
                row(BENCHMARK, f"{NAMES[kind]}, {label}{state}", "claim of 10 + ack", best,
                    "ms", median=median, runs=repeats, notes=notes)
            )  # fmt: skip
    return rows


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="tenant A's jobs (default 20,000)")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    n = args.n or (2000 if args.quick else 20000)
    repeats = args.repeats or (1 if args.quick else 3)
    scale = 0.2 if args.quick else 1.0
    rows = measure(n, repeats, "sqlite") + measure_backlogs(repeats, "sqlite", scale)
    if postgres_answers():
        rows += measure(n, repeats, "postgresql") + measure_backlogs(repeats, "postgresql", scale)
    emit(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
