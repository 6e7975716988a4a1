"""The records drivers report to the tools that look at their queues (the ``glasswork``
command, the dashboard, the metrics), the same for every driver:

* inspection: :class:`QueueStats` (counts per queue), :class:`FoundJob` (a job by id),
  :class:`OutcomeCount` (runs per outcome and minute);
* dead letters: :class:`DeadLetterRecord`, searched with a :class:`DeadLetterQuery` a
  :class:`DeadLetterPage` at a time, grouped by reason (:class:`DeadLetterGroup`);
* heartbeats: :class:`WorkerBeat`, one long-running worker as its last beat described it.

Apart from :mod:`.records` (what producing and running jobs exchange) so that a worker that
never inspects, a Lambda function's above all, does not build them at its cold start; each
is also importable from :mod:`.records`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# -- inspection --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for one queue, the same for every driver: ``ready`` (due now, including
    expired leases), ``delayed`` (waiting for their time), ``in_flight`` (held by a worker)
    and ``dead`` (in the dead letter). Drivers that only estimate (SQS) give approximations."""

    queue: str
    ready: int = 0
    delayed: int = 0
    in_flight: int = 0
    dead: int = 0

    @property
    def pending(self) -> int:
        """Jobs not finished yet: ready, delayed or in flight."""
        return self.ready + self.delayed + self.in_flight


#: Outcome kinds as recorded (the ``kind`` of :class:`~glasswork.jobs.Outcome`).
OUTCOME_KINDS = ("done", "retry", "dead_letter", "discarded", "cancelled")


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """``count`` runs of ``job_name`` on ``queue`` ended with ``outcome`` (one of
    :data:`OUTCOME_KINDS`) in the minute starting at ``minute`` (UTC)."""

    minute: datetime
    queue: str
    job_name: str
    outcome: str
    count: int


# -- dead letters ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One dead letter: the driver's ``id`` for it (what ``redrive``/``purge_dead_letters``
    take), the original body, the reason, when it failed (None when unknown) and the
    formatted traceback of the failure (None for a deliberate job error, a lost lease, or a
    dead letter kept without one; see :func:`glasswork.jobs.errors.failure_traceback`)."""

    id: str
    queue: str | None
    job_name: str | None
    job_id: str | None
    body: str
    reason: str
    failed_at: datetime | None
    traceback: str | None = None


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


#: Dead letters on a page, unless asked otherwise.
PAGE_SIZE = 100
#: Reasons a page groups its dead letters by, the most frequent first.
GROUPS = 20


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    """Which dead letters: each field set narrows the search (None: any).

    * ``queue``, ``job_name``: exactly these (dead letters without a queue are ``default``'s);
    * ``reason``: exactly this reason (a group); ``reason_contains``: this text anywhere in
      the reason, ignoring case (ASCII letters only, on SQLite);
    * ``failed_from`` (inclusive) and ``failed_until`` (exclusive): when they failed;
    * ``newest``: none newer than the dead letter with this cursor, so an action confirmed on
      what a page showed leaves dead letters that arrived since alone.
    """

    queue: str | None = None
    job_name: str | None = None
    reason: str | None = None
    reason_contains: str | None = None
    failed_from: datetime | None = None
    failed_until: datetime | None = None
    newest: str | None = None

    def matches(self, record: DeadLetterRecord, cursor: str) -> bool:
        """Whether ``record`` (whose cursor is ``cursor``) is one of these (for drivers that
        search in memory)."""
        if self.queue is not None and (record.queue or "default") != self.queue:
            return False
        if self.job_name is not None and record.job_name != self.job_name:
            return False
        if self.reason is not None and record.reason != self.reason:
            return False
        if self.reason_contains and self.reason_contains.casefold() not in (
            record.reason.casefold()
        ):
            return False
        if self.failed_from is not None or self.failed_until is not None:
            at = record.failed_at
            if at is None:
                return False
            if self.failed_from is not None and at < self.failed_from:
                return False
            if self.failed_until is not None and at >= self.failed_until:
                return False
        return self.newest is None or cursor <= self.newest


@dataclass(frozen=True, slots=True)
class DeadLetterGroup:
    """``count`` dead letters with this ``reason``; ``newest`` is the cursor of the newest
    of them (what an action on the group passes as :attr:`DeadLetterQuery.newest`)."""

    reason: str
    count: int
    newest: str
    last_failed: datetime | None


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """One page of a search, newest first.

    ``next_cursor`` asks for the page after this one (None: this is the last);
    ``total`` counts every match and ``newest`` is the cursor of the newest match (None: no
    match); ``groups`` are the most frequent reasons among the matches, of
    ``group_count`` distinct ones. ``note`` says where the driver could not look (SQS)."""

    records: list[DeadLetterRecord]
    next_cursor: str | None
    total: int
    newest: str | None
    groups: list[DeadLetterGroup] = field(default_factory=list)
    group_count: int = 0
    note: str | None = None


# -- heartbeats --------------------------------------------------------------------------------

#: Seconds between two beats of a worker, unless it is told otherwise.
BEAT_SECONDS = 10.0
#: Beats missed before a worker is shown as gone.
MISSED_BEATS = 3
#: Seconds after its last beat that a gone worker's row is deleted.
FORGET_AFTER = 86400.0


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """One worker as its last beat described it.

    Every ``every`` seconds a long-running worker writes its row in the driver's heartbeat
    store, from a thread of its own; a worker that stops cleanly deletes its row. One that
    died stops beating: it is shown as gone once :data:`MISSED_BEATS` beats are missing, and
    its row is deleted :data:`FORGET_AFTER` seconds after its last beat (by whichever worker
    beats next).

    ``queues`` are the queues it receives from (None: all); ``in_flight`` the jobs it held
    then. Read back from a store, ``last_seen`` is when it last beat and ``silent_for`` the
    seconds since, by the store's clock (the server's, on PostgreSQL), so a dashboard on
    another machine is not misled by its own clock.
    """

    worker_id: str
    host: str
    pid: int
    queues: tuple[str, ...] | None
    concurrency: int
    in_flight: int
    started_at: datetime
    every: float = BEAT_SECONDS
    last_seen: datetime | None = None
    silent_for: float = 0.0

    @property
    def gone(self) -> bool:
        """Whether :data:`MISSED_BEATS` beats are missing: it died, or cannot reach the
        store."""
        return self.silent_for > self.every * MISSED_BEATS
