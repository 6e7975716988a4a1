"""The jobs page: what each registered job of the app is configured to do, and the limits
of those with a rate or concurrency limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..jobs.definition import JobDefinition
from ..jobs.errors import ConfigurationError
from ..jobs.execution import JobRegistry
from ..jobs.schedules import schedule_of

#: Next fire times shown per periodic job.
NEXT_FIRES = 3


@dataclass(frozen=True, slots=True)
class JobRow:
    """One registered job as the jobs page shows it."""

    name: str
    kind: str
    queue: str
    retry: str
    timeout: str
    unique_key: str
    schedule: str = ""
    next_fires: list[datetime] = field(default_factory=list)
    problem: str = ""


@dataclass(frozen=True, slots=True)
class LimitRow:
    """One registered job with flow limits as the jobs page shows it: its ``rate`` limit
    (``"10/s"``), how many may run at ``once`` (and ``keyed_by``: the function giving the
    key they are counted per; empty: per job), and how many deliveries its limits held back
    across every worker (``held_back``; None: unknown)."""

    name: str
    queue: str
    rate: str
    once: str
    keyed_by: str
    held_back: int | None = None


def limit_rows(registry: JobRegistry, held_back: Mapping[str, int] | None) -> list[LimitRow]:
    """The jobs of ``registry`` with limits, sorted by name, with the counts ``held_back``
    (the driver's throttle counts; None: the driver keeps none)."""
    rows = []
    for job in sorted(registry, key=lambda j: j.name):
        limits = job.limits
        if limits is None:
            continue
        rows.append(
            LimitRow(
                job.name,
                job.queue or "default",
                str(limits.rate) if limits.rate is not None else "",
                str(limits.concurrency) if limits.concurrency is not None else "",
                _function_name(job.concurrency_key) if job.concurrency_key else "",
                None if held_back is None else int(held_back.get(job.name, 0)),
            )
        )
    return rows


def job_rows(registry: JobRegistry, now: datetime) -> list[JobRow]:
    """Every job of ``registry``, sorted by name, with periodic jobs' next fire times."""
    return [_row(job, now) for job in sorted(registry, key=lambda j: j.name)]


def _row(job: JobDefinition[Any], now: datetime) -> JobRow:
    kind, queue, schedule, fires, problem = "job", job.queue or "default", "", [], ""
    if job.periodic:
        # Worker(periodic=True) enqueues them on its periodic_queue, "default" unless set.
        kind, queue, schedule = "periodic", "default", job.schedule or ""
        if not job.schedule:
            queue, schedule = "", "EventBridge rule"
        else:
            try:
                fires = _next_fires(job, now)
            except ConfigurationError as exc:
                problem = str(exc)
    return JobRow(
        job.name,
        kind,
        queue,
        _retry(job),
        f"{job.timeout:g}s" if job.timeout is not None else "worker default",
        _function_name(job.unique_key) if job.unique_key else "",
        schedule,
        fires,
        problem,
    )


def _next_fires(job: JobDefinition[Any], now: datetime) -> list[datetime]:
    schedule = schedule_of(job)
    assert schedule is not None  # the job has a schedule expression
    fires = [schedule.next_after(now)]
    while len(fires) < NEXT_FIRES:
        fires.append(schedule.next_after(fires[-1]))
    return fires


def _retry(job: JobDefinition[Any]) -> str:
    policy = job.retry
    if policy is None:
        return "no retries (discarded on failure)"
    if policy.max_attempts == 1:
        return "1 attempt, then dead letter"
    jitter = ", jitter" if policy.jitter else ""
    return (
        f"{policy.max_attempts} attempts, backoff {policy.backoff:g}s doubling "
        f"to {policy.max_backoff:g}s{jitter}"
    )


def _function_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)
