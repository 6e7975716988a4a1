"""The records drivers and their callers exchange: the vocabulary of the driver contract
(:mod:`glasswork.jobs.drivers.contract`), the same for every driver.

* producing: :class:`EnqueueResult`, and for a batch some of which was not sent,
  :class:`FailedEnqueue` in an :class:`EnqueueBatchError`;
* consuming: :class:`ReceivedMessage`, one delivery to a worker; :class:`LimitedBatch`, the
  deliveries of a claim holding flow limits;
* a job's life: :class:`JobStatus` (what ``JobService.status`` answers) and
  :class:`FinalStatus` (what a worker hands the driver when a job ends);
* what drivers report to the tools looking at their queues (:class:`QueueStats`,
  :class:`FoundJob`, :class:`OutcomeCount`, the dead letters' :class:`DeadLetterRecord`,
  :class:`DeadLetterQuery`, :class:`DeadLetterPage`, :class:`DeadLetterGroup`, the
  heartbeats' :class:`WorkerBeat`) live in :mod:`.reports`, also importable from here: they
  load on first use, so that a worker's cold start does not build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ..errors import EnqueueError
from ..extras import load_lazily

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .reports import (
        BEAT_SECONDS,
        FORGET_AFTER,
        GROUPS,
        MISSED_BEATS,
        OUTCOME_KINDS,
        PAGE_SIZE,
        DeadLetterGroup,
        DeadLetterPage,
        DeadLetterQuery,
        DeadLetterRecord,
        FoundJob,
        OutcomeCount,
        QueueStats,
        WorkerBeat,
    )

#: The names of :mod:`.reports`, importable from here too (loaded on first use).
REPORTS = dict.fromkeys(
    [
        "BEAT_SECONDS",
        "FORGET_AFTER",
        "GROUPS",
        "MISSED_BEATS",
        "OUTCOME_KINDS",
        "PAGE_SIZE",
        "DeadLetterGroup",
        "DeadLetterPage",
        "DeadLetterQuery",
        "DeadLetterRecord",
        "FoundJob",
        "OutcomeCount",
        "QueueStats",
        "WorkerBeat",
    ],
    f"{__package__}.reports",
)


def __getattr__(name: str) -> Any:
    return load_lazily(__name__, REPORTS, name)


# -- producing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What an enqueue produced: the driver's message id, the job id, the queue and, for
    delayed jobs, when the job becomes due (None means now)."""

    message_id: str
    job_id: str
    queue: str
    scheduled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FailedEnqueue:
    """One job a batch enqueue could not send, with the queue's error code and message."""

    job_id: str
    job_name: str
    queue: str
    code: str
    message: str


class EnqueueBatchError(EnqueueError):
    """Some jobs of an ``enqueue_many`` were not sent, even after retrying them.

    Unlike other :class:`EnqueueError` s, part of the batch may have been sent: ``sent``
    holds those results, ``failed`` the jobs that were not.
    """

    def __init__(self, failed: list[FailedEnqueue], sent: list[EnqueueResult], attempts: int):
        self.failed = failed
        self.sent = sent
        shown = "; ".join(
            f"job {f.job_name!r} (id {f.job_id}) on queue {f.queue!r}: {f.code}: {f.message}"
            for f in failed[:10]
        )
        more = f"; and {len(failed) - 10} more" if len(failed) > 10 else ""
        super().__init__(
            f"{len(failed)} of {len(failed) + len(sent)} jobs were not sent after {attempts} "
            f"attempt(s): {shown}{more}. {len(sent)} were sent (see .sent); nothing else is "
            "retried for you"
        )


# -- consuming ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ReceivedMessage:
    """One delivery handed to a worker by a driver's ``receive``.

    ``body`` is the raw wire text (it may be malformed: the worker decides); ``attempt`` is
    the 1-based delivery count; ``receipt`` is the driver's handle for ack/nack.
    """

    body: str
    receipt: Any
    attempt: int
    queue: str
    message_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LimitedBatch:
    """What a claim holding flow limits returned
    (:meth:`~glasswork.jobs.drivers.contract.LimitedClaims.claim`): the deliveries, those of
    limited jobs first (``limited`` of them: each holds its start and slot from the claim
    on, so the worker starts them first), the deliveries the claim held back, per
    ``(job name, queue)`` (``throttled``), and how many that could have started it left
    due, unclaimed, for want of free threads (``left``: the worker waits for a thread
    before claiming again)."""

    received: list[ReceivedMessage]
    limited: int = 0
    throttled: dict[tuple[str, str], int] = field(default_factory=dict)
    left: int = 0


# -- a job's life ------------------------------------------------------------------------------

#: Where a job is in its life.
JobState = Literal[
    "scheduled", "pending", "running", "retrying", "done", "failed", "dead", "cancelled"
]
#: The states a job ends in (``failed``: discarded after a failure, the job had ``retry=False``).
TERMINAL_STATES: frozenset[str] = frozenset({"done", "failed", "dead", "cancelled"})
#: Seconds an ended job's status is kept unless its job says otherwise (``result_ttl``).
DEFAULT_RESULT_TTL = 86400.0


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One job's life as its driver knows it: ``state``, ``attempts`` (runs started so far),
    ``progress`` (0.0 to 1.0, with ``progress_note``), ``result`` (the JSON value the handler
    returned; ``done`` only), ``error`` and ``traceback`` (of the last failure, or why it was
    cancelled), ``enqueued_at`` and ``updated_at`` (aware, UTC), its ``priority``."""

    job_id: str
    job_name: str
    queue: str
    state: JobState
    attempts: int = 0
    progress: float | None = None
    progress_note: str | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    enqueued_at: datetime | None = None
    updated_at: datetime | None = None
    priority: int = 0

    @property
    def finished(self) -> bool:
        """Whether the job has ended (done, failed, dead or cancelled)."""
        return self.state in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class FinalStatus:
    """How a job ended, handed by a worker to the driver with its last delivery: ``state``,
    ``result`` (JSON-able, already dumped; ``done`` only), ``error`` and ``traceback`` of the
    failure, the last ``progress``, and ``keep_for``: seconds to keep it (the job's
    ``result_ttl``; 0 keeps nothing). ``workflow``: ``(workflow id, step)`` when the job is
    a workflow's step (its ``result`` is then always made, whatever ``keep_for``): a driver
    with the :class:`~glasswork.jobs.drivers.contract.Workflows` group advances the
    workflow in the transaction that records this end."""

    state: Literal["done", "failed", "dead", "cancelled"]
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    progress: float | None = None
    progress_note: str | None = None
    keep_for: float = DEFAULT_RESULT_TTL
    workflow: tuple[str, int] | None = None


__all__ = [
    "BEAT_SECONDS",
    "DEFAULT_RESULT_TTL",
    "FORGET_AFTER",
    "GROUPS",
    "MISSED_BEATS",
    "OUTCOME_KINDS",
    "PAGE_SIZE",
    "TERMINAL_STATES",
    "DeadLetterGroup",
    "DeadLetterPage",
    "DeadLetterQuery",
    "DeadLetterRecord",
    "EnqueueBatchError",
    "EnqueueResult",
    "FailedEnqueue",
    "FinalStatus",
    "FoundJob",
    "JobState",
    "JobStatus",
    "OutcomeCount",
    "QueueStats",
    "ReceivedMessage",
    "WorkerBeat",
]
