"""What a driver may offer beyond the core contract, for dashboards and operators: outcome
history (how many runs were done, retried, dead-lettered or discarded per minute) and job
lookup by id. Both are optional capabilities, found by duck typing: a driver offers them by
having the methods of :class:`OutcomeStore` or :class:`JobFinder`. Outcome history may also
come from elsewhere (:class:`OutcomeHistory`: CloudWatch's metrics of ``EMFMetrics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from .base import DeadLetterRecord

#: Outcome kinds as recorded (the ``kind`` of :class:`~glasswork.jobs.Outcome`).
OUTCOME_KINDS = ("done", "retry", "dead_letter", "discarded")


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """``count`` runs of ``job_name`` on ``queue`` ended with ``outcome`` (one of
    :data:`OUTCOME_KINDS`) in the minute starting at ``minute`` (UTC)."""

    minute: datetime
    queue: str
    job_name: str
    outcome: str
    count: int


@runtime_checkable
class OutcomeHistory(Protocol):
    """Where a dashboard reads outcome counts per minute: a driver that stores them
    (:class:`OutcomeStore`), or another source (``CloudWatchOutcomes``). An optional
    ``outcome_source`` attribute (text) says where the numbers come from."""

    def outcome_history(self, since: datetime) -> list[OutcomeCount]:
        """Counts of the minutes from ``since`` on, oldest first."""
        ...


@runtime_checkable
class OutcomeStore(OutcomeHistory, Protocol):
    """A driver that keeps outcome counts: workers on it record them (see
    :class:`~glasswork.jobs.metrics.outcome_log.OutcomeLog`), dashboards chart them."""

    def record_outcomes(self, counts: Sequence[OutcomeCount]) -> None:
        """Add ``counts`` to what is stored (counts of the same key add up)."""
        ...


@dataclass(frozen=True, slots=True)
class FoundJob:
    """A job found by id. ``state`` is ``ready``, ``delayed``, ``in_flight`` or ``dead``;
    ``due_at`` is when a pending job runs (for one in flight, when its lease ends);
    ``dead_letter`` is set for a dead job."""

    job_id: str
    state: str
    queue: str | None
    job_name: str | None
    body: str
    attempts: int | None = None
    due_at: datetime | None = None
    enqueued_at: datetime | None = None
    dead_letter: DeadLetterRecord | None = None


@runtime_checkable
class JobFinder(Protocol):
    """A driver that can look a job up by its id. An optional ``job_lookup_scope``
    attribute (text) says where it looks, when that is less than every pending job and
    dead letter (SQS cannot see into its queues)."""

    def find_job(self, job_id: str) -> list[FoundJob]:
        """Every pending or dead-lettered copy of job ``job_id`` the driver holds (finished
        jobs are not kept)."""
        ...
