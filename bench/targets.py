"""The targets the issues set, as data: which row is ours, which is the peer's, and the goal.

``bench/run.py`` turns these into RESULTS.md's summary: one line per target, with the numbers
of the same run, the ratio and whether the goal was met. A target whose rows are missing
from a run says so rather than passing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: (benchmark, library, metric): how a row is found.
Key = tuple[str, str, str]

LAMBDA = "lambda dispatch"
ASYNC_IO = "lambda async I/O batch"
EMBEDDED = "embedded throughput"
PG = "postgres throughput"
PG_LATENCY = "postgres idle latency"
OBS_LAMBDA = "observability: lambda"
OBS_ENQUEUE = "observability: enqueue"
ASYNC_ENQUEUE = "async enqueue"
SCHEDULER = "scheduler dispatch"
OUTCOMES = "outcome log overhead"
GW_LAMBDA = "Glasswork bootstrap_worker"
GW_WORKER = "Glasswork Worker (SQLite)"
GW_PG = "Glasswork PostgresQueueDriver"
PROCRASTINATE = "procrastinate (PostgreSQL)"
PGQUEUER = "PgQueuer (PostgreSQL)"
CPU = "worker processes (CPU-bound)"


@dataclass(frozen=True)
class Target:
    """One goal. ``ratio`` is ``"ours/peer"`` or ``"peer/ours"`` (how the ratio column is
    computed, when there is a peer); ``met(ours, ratio)`` decides the goal, None when it
    cannot (the peer was not measured); ``met=None``: no goal, the row is there to be read."""

    issue: int
    what: str
    ours: Key
    unit: str
    peer: Key | None = None
    ratio: str = "peer/ours"
    goal: str = "-"
    met: Callable[[float, float | None], bool | None] | None = None


def _at_most(limit: float) -> Callable[[float, float | None], bool]:
    return lambda ours, ratio: ours <= limit


def _at_least(limit: float) -> Callable[[float, float | None], bool]:
    return lambda ours, ratio: ours >= limit


def _ratio_at_most(limit: float) -> Callable[[float, float | None], bool | None]:
    return lambda ours, ratio: None if ratio is None else ratio <= limit


def _ratio_at_least(limit: float) -> Callable[[float, float | None], bool | None]:
    return lambda ours, ratio: None if ratio is None else ratio >= limit


def _vs_pgqueuer(what: str, label: str, metric: str) -> Target:
    """Issue 25: a PostgreSQL row at least even with PgQueuer's, in the same run."""
    return Target(
        25,
        f"PostgreSQL vs PgQueuer: {what}",
        (PG, f"{GW_PG}{label}", metric),
        "jobs/s",
        peer=(PG, f"{PGQUEUER}{label}", metric),
        ratio="ours/peer",
        goal="≥ 1.0x PgQueuer",
        met=_ratio_at_least(1.0),
    )


def _observability(name: str) -> Target:
    return Target(
        11,
        f"Lambda dispatch with {name}, µs per message",
        (OBS_LAMBDA, f"Glasswork, {name}", "µs per message"),
        "µs",
        peer=(OBS_LAMBDA, "Glasswork, off", "µs per message"),
        ratio="ours/peer",
        goal="measured (vs all off)",
    )


TARGETS: list[Target] = [
    # Issue 5: the first round of hot-path work.
    Target(5, "Lambda dispatch, µs per message", (LAMBDA, GW_LAMBDA, "µs per message"), "µs",
           goal="≤ 25 µs", met=_at_most(25)),
    Target(5, "SQS enqueue_many (moto): HTTP requests per job",
           ("sqs enqueue_many", "Glasswork SQSQueueDriver", "HTTP requests per job"), "",
           goal="≤ 0.11", met=_at_most(0.11)),
    # Issue 8: the Lambda worker.
    Target(8, "Lambda dispatch of sync no-op jobs, µs per message",
           (LAMBDA, GW_LAMBDA, "µs per message"), "µs",
           peer=(LAMBDA, "Powertools BatchProcessor", "µs per message"), ratio="ours/peer",
           goal="no slower than Powertools (ours ÷ peer ≤ 1.0)", met=_ratio_at_most(1.0)),
    Target(8, "Lambda: 10 async jobs of 50 ms I/O, ms per batch",
           (ASYNC_IO, GW_LAMBDA, "ms per 10-record batch"), "ms",
           peer=(ASYNC_IO, "Powertools AsyncBatchProcessor", "ms per 10-record batch"),
           ratio="ours/peer", goal="ours ÷ peer ≤ 1.2", met=_ratio_at_most(1.2)),
    # Issue 9: the long-running worker, scheduler and SQLite driver.
    Target(9, "SQLite Worker, 20,000 jobs enqueued one by one: jobs/s end to end",
           (EMBEDDED, GW_WORKER, "jobs/s end to end"), "jobs/s",
           goal="≥ 15,000 jobs/s (timeouts on)", met=_at_least(15_000)),
    Target(9, "SQLite Worker vs SqliteHuey: jobs/s end to end",
           (EMBEDDED, GW_WORKER, "jobs/s end to end"), "jobs/s",
           peer=(EMBEDDED, "Huey SqliteHuey", "jobs/s end to end"), ratio="ours/peer",
           goal="≥ 4x SqliteHuey", met=_ratio_at_least(4)),
    Target(9, "SQLite Worker vs Dramatiq on Redis: jobs/s end to end",
           (EMBEDDED, GW_WORKER, "jobs/s end to end"), "jobs/s",
           peer=(EMBEDDED, "Dramatiq Worker (Redis)", "jobs/s end to end"), ratio="ours/peer"),
    Target(9, "SQLite Worker vs RQ: jobs/s end to end",
           (EMBEDDED, GW_WORKER, "jobs/s end to end"), "jobs/s",
           peer=(EMBEDDED, "RQ SimpleWorker (Redis)", "jobs/s end to end"), ratio="ours/peer"),
    Target(9, "Peak RSS draining 100,000 SQLite jobs",
           ("memory", GW_WORKER, "peak RSS while draining"), "MiB",
           peer=("memory", "Huey SqliteHuey", "peak RSS while draining"), ratio="peer/ours",
           goal="≤ 42 MiB", met=_at_most(42)),
    Target(9, "DynamoDB scheduler: requests per dispatched job",
           (SCHEDULER, "Glasswork scheduler pass", "HTTP requests per job"), "",
           peer=(SCHEDULER, "Glasswork scheduler pass (before)", "HTTP requests per job"),
           ratio="peer/ours", goal="fewer than before (3 per job)", met=_ratio_at_least(1.5)),
    # Issue 10: async enqueue.
    Target(10, "1,000 enqueues from 100 coroutines (moto): seconds",
           (ASYNC_ENQUEUE, "AsyncJobService, aiobotocore", "seconds for 1,000"), "s",
           peer=(ASYNC_ENQUEUE, "JobService (sync) in coroutines", "seconds for 1,000"),
           ratio="peer/ours", goal="measured (sync ÷ async)"),
    Target(10, "... the longest event-loop stall meanwhile",
           (ASYNC_ENQUEUE, "AsyncJobService, aiobotocore", "longest loop stall"), "ms",
           peer=(ASYNC_ENQUEUE, "JobService (sync) in coroutines", "longest loop stall"),
           ratio="peer/ours", goal="the loop keeps running"),
    # Issue 11: what tracing, metrics and idempotency cost when on; nothing when off.
    Target(11, "Lambda dispatch, tracing API installed but no SDK, µs per message",
           (OBS_LAMBDA, "Glasswork, tracing, API only", "µs per message"), "µs",
           peer=(OBS_LAMBDA, "Glasswork, off", "µs per message"), ratio="ours/peer",
           goal="about nothing (≤ 1.1x off)", met=_ratio_at_most(1.1)),
    _observability("tracing, SDK"),
    _observability("EMF metrics"),
    _observability("idempotency, memory"),
    _observability("idempotency, SQLite"),
    _observability("idempotency, duplicate"),
    _observability("all on"),
    Target(11, "JobService.enqueue with tracing (SDK), µs per job",
           (OBS_ENQUEUE, "Glasswork, tracing, SDK", "µs per job"), "µs",
           peer=(OBS_ENQUEUE, "Glasswork, off", "µs per job"), ratio="ours/peer",
           goal="measured (vs off)"),
    # Issue 12: the PostgreSQL driver.
    Target(12, "PostgreSQL, 1 worker process: jobs/s end to end",
           (PG, f"{GW_PG}, 1 worker process", "jobs/s end to end"), "jobs/s",
           peer=(PG, f"{PROCRASTINATE}, 1 worker process", "jobs/s end to end"),
           ratio="ours/peer", goal="≥ 2x procrastinate", met=_ratio_at_least(2)),
    Target(12, "PostgreSQL, 2 worker processes: jobs/s end to end",
           (PG, f"{GW_PG}, 2 worker processes", "jobs/s end to end"), "jobs/s",
           peer=(PG, f"{PROCRASTINATE}, 2 worker processes", "jobs/s end to end"),
           ratio="ours/peer", goal="≥ 2x procrastinate", met=_ratio_at_least(2)),
    Target(12, "PostgreSQL vs the SQLite driver, 1 worker process: jobs/s end to end",
           (PG, f"{GW_PG}, 1 worker process", "jobs/s end to end"), "jobs/s",
           peer=(PG, "Glasswork SQLiteQueueDriver, 1 worker process", "jobs/s end to end"),
           ratio="ours/peer"),
    Target(12, "PostgreSQL idle latency, enqueue commit to handler start, p50",
           (PG_LATENCY, GW_PG, "p50 ms"), "ms",
           peer=(PG_LATENCY, PROCRASTINATE, "p50 ms"), ratio="peer/ours",
           goal="≤ 5 ms", met=_at_most(5)),
    Target(12, "PostgreSQL idle latency, p99",
           (PG_LATENCY, GW_PG, "p99 ms"), "ms",
           peer=(PG_LATENCY, PROCRASTINATE, "p99 ms"), ratio="peer/ours"),
    # Issue 25: PostgreSQL against PgQueuer on every row; all the cores from one command.
    _vs_pgqueuer("enqueue, one call per job", ", 1 worker process", "jobs/s enqueue only"),
    _vs_pgqueuer("enqueue, one batch call", ", batch enqueue, 1 worker process",
                 "jobs/s enqueue only"),
    _vs_pgqueuer("drain only, 1 worker process", ", 1 worker process", "jobs/s drain only"),
    _vs_pgqueuer("end to end, 1 worker process", ", 1 worker process", "jobs/s end to end"),
    _vs_pgqueuer("end to end, 2 worker processes", ", 2 worker processes", "jobs/s end to end"),
    _vs_pgqueuer("end to end, batch enqueue, 1 worker process",
                 ", batch enqueue, 1 worker process", "jobs/s end to end"),
    _vs_pgqueuer("end to end, batch enqueue, 2 worker processes",
                 ", batch enqueue, 2 worker processes", "jobs/s end to end"),
    Target(25, "PostgreSQL vs PgQueuer: idle latency p50", (PG_LATENCY, GW_PG, "p50 ms"), "ms",
           peer=(PG_LATENCY, PGQUEUER, "p50 ms"), ratio="peer/ours",
           goal="≥ 1.0x (peer ÷ ours)", met=_ratio_at_least(1.0)),
    Target(25, "PostgreSQL vs PgQueuer: idle latency p99", (PG_LATENCY, GW_PG, "p99 ms"), "ms",
           peer=(PG_LATENCY, PGQUEUER, "p99 ms"), ratio="peer/ours",
           goal="≥ 1.0x (peer ÷ ours)", met=_ratio_at_least(1.0)),
    Target(25, "PostgreSQL per-round-trip deadlines: enqueue with ÷ without",
           (PG, f"{GW_PG}, 1 worker process", "jobs/s enqueue only"), "jobs/s",
           peer=(PG, f"{GW_PG}, no deadlines, 1 worker process", "jobs/s enqueue only"),
           ratio="ours/peer", goal="measured (about 1.0: cheap)"),
    Target(25, "CPU-bound jobs: worker --processes 2 ÷ --processes 1 (2 cores)",
           (CPU, "--processes 2 ÷ --processes 1", "scaling"), "x",
           goal="≥ 1.6x", met=_at_least(1.6)),
    # Issue 13: the dashboard's outcome log, on by default for SQLite workers.
    Target(13, "Outcome log (dashboard chart): µs added per run",
           (OUTCOMES, "outcome log", "µs added per run"), "µs", goal="measured"),
    Target(13, "Outcome log: SQLite Worker drain, on ÷ off",
           (OUTCOMES, "on ÷ off (SQLite)", "throughput ratio"), "x", goal="measured"),
    Target(13, "Outcome log: PostgreSQL Worker drain, on ÷ off",
           (OUTCOMES, "on ÷ off (PostgreSQL)", "throughput ratio"), "x", goal="measured"),
]  # fmt: skip
