"""The driver contract: what every driver is (:class:`QueueDriver`), what more a driver may do
(the capability groups, each a :class:`~typing.Protocol`), and the one way to ask
(:func:`capabilities_of`). The records they exchange are in :mod:`.records` and
:mod:`.reports` (re-exported here); the contract is written down, with each group's
semantics, in ``docs/drivers.md``.

>>> caps = capabilities_of(driver)                          # doctest: +SKIP
>>> if caps.stats is not None:
...     counts = caps.stats.stats()
... else:
...     print(f"the {driver.name} driver cannot report queue stats")

**How a driver has a group** (the rule :func:`capabilities_of` applies):

1. *Declared*: its class subclasses the group's Protocol
   (``class SQLiteQueueDriver(QueueDriver, Consuming, LeaseExtension, ...)``). Our four
   drivers declare every group they have. A declared group with a method left unwritten
   (still :class:`QueueDriver`'s fallback, or the Protocol's empty stub) is a
   :class:`TypeError` naming it: a driver's mistake shows at once.
2. *Structural*: a driver that declares nothing (a third-party one written against the
   methods) has a group when every method of the group is there and callable, and none is
   :class:`QueueDriver`'s fallback (those only say the driver cannot).
3. *Opted out*: a group method set to None (``find_job = None`` in a subclass, or on the
   instance) takes the group away, declared or not.

Only methods decide; a group's data attributes (``visibility_timeout``,
``job_lookup_scope``, ...) are read when used, through :func:`lease_seconds` and its
neighbours, with the defaults the table in ``docs/drivers.md`` gives. Answers are cached per
driver class (a driver that sets a group method on the instance is looked at afresh).
Nothing else asks a driver what it can do: callers hold the :class:`Capabilities` and use
its fields, typed as the groups.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..errors import ConfigurationError
from ..extras import load_lazily
from ..limits import JobLimits
from ..message import MAX_MESSAGE_BYTES, JobMessage
from .records import (
    REPORTS,
    EnqueueBatchError,
    EnqueueResult,
    FailedEnqueue,
    FinalStatus,
    JobStatus,
    LimitedBatch,
    ReceivedMessage,
)

if TYPE_CHECKING:
    from ..idempotency.store import IdempotencyStore
    from ..workflows.records import WorkflowPlan, WorkflowStatus
    from .reports import (
        BEAT_SECONDS,
        FORGET_AFTER,
        MISSED_BEATS,
        OUTCOME_KINDS,
        DeadLetterGroup,
        DeadLetterPage,
        DeadLetterQuery,
        DeadLetterRecord,
        FoundJob,
        OutcomeCount,
        QueueStats,
        WorkerBeat,
    )


# The records of .reports, re-exported here as the rest are: loaded on first use, since only
# the groups' annotations name them (a worker's cold start does not build them).
def __getattr__(name: str) -> Any:
    return load_lazily(__name__, REPORTS, name)


__all__ = [
    "BEAT_SECONDS",
    "CAPABILITY_GROUPS",
    "FORGET_AFTER",
    "MISSED_BEATS",
    "OUTCOME_KINDS",
    "AsyncEnqueuer",
    "BatchAck",
    "BatchNack",
    "Capabilities",
    "ClaimLimits",
    "Closing",
    "ConfiguredQueues",
    "Consuming",
    "CoroutineMethods",
    "CoroutineProducing",
    "DeadLetterAdmin",
    "DeadLetterGroup",
    "DeadLetterPage",
    "DeadLetterQuery",
    "DeadLetterRecord",
    "DeadLetterSearch",
    "Debounce",
    "DelayLimit",
    "EnqueueBatchError",
    "EnqueueResult",
    "FailedEnqueue",
    "Fairness",
    "FinalStatus",
    "FlowLimits",
    "FoundJob",
    "HandBack",
    "HeartbeatStore",
    "Heartbeats",
    "IdempotencyProvider",
    "JobFinder",
    "JobStatus",
    "LeaseExtension",
    "LimitedBatch",
    "LimitedClaims",
    "NativeAsync",
    "OutcomeCount",
    "OutcomeHistory",
    "OutcomeStore",
    "PendingCount",
    "PeriodicClaims",
    "PeriodicFire",
    "Producing",
    "QueueCounts",
    "QueueDriver",
    "QueueStats",
    "ReceivedMessage",
    "RunSteps",
    "SetupCheck",
    "StatusBatches",
    "StatusStore",
    "TransactionalEnqueue",
    "WorkerBeat",
    "Workflows",
    "capabilities_of",
    "coroutine_methods",
    "driver_label",
    "driver_name",
    "lease_seconds",
    "lookup_scope",
    "missing_methods",
    "outcome_source",
    "records_outcomes",
]


# -- the core --------------------------------------------------------------------------------

#: How a driver keeps ``define_job(fairness_key=...)``: ``"round-robin"``, it claims a
#: queue's jobs round-robin across keys (SQLite, PostgreSQL, the mock); ``"message-group"``,
#: the key is the backend's own tenant id and the backend is fair (SQS standard queues'
#: ``MessageGroupId``: fair queues).
Fairness = Literal["round-robin", "message-group"]


class AsyncEnqueuer(Protocol):
    """A driver's producing side as coroutines, what :class:`~glasswork.jobs.AsyncJobService`
    awaits: from the driver's own async I/O (:class:`NativeAsync`), from a driver whose
    methods are ``async def`` (:class:`CoroutineProducing`), or a bounded thread pool around
    a sync driver."""

    #: How enqueues run: ``"native"`` (async I/O on the event loop) or ``"threads"``.
    mode: str

    async def enqueue(self, message: JobMessage) -> EnqueueResult: ...
    async def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult: ...
    async def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult: ...
    async def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]: ...
    async def message_limit(self, queue: str) -> int: ...
    async def aclose(self) -> None: ...
    async def enqueue_debounced(
        self, message: JobMessage, window_seconds: float
    ) -> EnqueueResult: ...


class QueueDriver(ABC):
    """Base class of every driver: what every driver does. Subclass it to carry jobs over
    another backend, then add the capability groups the backend can offer (see the module).

    A producer needs only :meth:`enqueue` and :meth:`enqueue_in` (``enqueue_at`` and
    ``enqueue_many`` have defaults built on them). :meth:`dead_letter` gives permanent
    failures somewhere to go (by default nowhere). The other methods here are the answers of
    a driver without the group they belong to: nothing to check, no steps, no stores, and,
    for consuming and dead-letter search, a :class:`NotImplementedError` saying so.

    Example (a producer-only driver)::

        class RedisQueueDriver(QueueDriver):
            name = "redis"

            def enqueue(self, message):
                return self.enqueue_in(message, 0)

            def enqueue_in(self, message, delay_seconds):
                body = message.encode()   # the text, checked against message_limit()
                ...                       # push body, due at now + delay_seconds
                return EnqueueResult(message_id, message.job_id, message.queue, due_at)
    """

    name: str = "custom"
    #: The largest message (bytes of wire text) this driver takes, unless
    #: :meth:`message_limit` says otherwise per queue. Set it on an instance to change it.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    #: Whether it claims a queue's jobs higher ``JobMessage.priority`` first (read through
    #: :func:`capabilities_of`; a driver that does not refuses non-zero priorities).
    claims_by_priority: bool = False
    #: How it keeps fairness between the keys of ``define_job(fairness_key=...)`` (read
    #: through :func:`capabilities_of`; None: it cannot, and refuses jobs with a key).
    fairness: Fairness | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def message_limit(self, queue: str) -> int:
        """The size limit of a message for ``queue``, which :class:`~glasswork.jobs.JobService`
        checks before anything is sent (:class:`~glasswork.jobs.PayloadTooLargeError`).
        262,144 bytes unless :attr:`max_message_bytes` is set; the SQS driver reads each
        queue's ``MaximumMessageSize``."""
        return self.max_message_bytes

    @abstractmethod
    def enqueue(self, message: JobMessage) -> EnqueueResult:
        """Send ``message`` to run now."""

    @abstractmethod
    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        """Send ``message`` to run after ``delay_seconds``."""

    def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        """Send ``message`` to run at ``run_at`` (an aware datetime; past means now)."""
        delay = (run_at - datetime.now(UTC)).total_seconds()
        if delay <= 0:
            return self.enqueue(message)
        return self.enqueue_in(message, delay)

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        """Send several messages; drivers with a batch API override this."""
        if delay_seconds > 0:
            return [self.enqueue_in(m, delay_seconds) for m in messages]
        return [self.enqueue(m) for m in messages]

    def dead_letter(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool:
        """Keep a message that can never succeed, with the reason and the formatted
        ``traceback`` of the failure (None when there is none to keep). Returns False when
        this driver has nowhere to put it (the worker then logs the body at ERROR level).

        Workers pass ``traceback`` only to a driver whose ``dead_letter`` takes it (decided
        once, when the worker is built: :attr:`Capabilities.dead_letter_traceback`): one
        written without it still works."""
        return False

    # -- the answers of a driver without the group ---------------------------------------

    def check(self, queues: Sequence[str] | None = None) -> None:
        """:class:`SetupCheck`; by default nothing to check (the SQLite and PostgreSQL
        drivers check at construction)."""
        return None

    # Steps are RunSteps (glasswork.jobs.execution), typed Any so the contract does not
    # import the execution it is imported by.
    def run_steps(self) -> Sequence[Any]:
        """:class:`RunSteps`; by default none."""
        return ()

    def idempotency_store(self) -> IdempotencyStore | None:
        """:class:`IdempotencyProvider`; by default None (no store of its own)."""
        return None

    def heartbeat_store(self) -> HeartbeatStore | None:
        """:class:`Heartbeats`; by default None (the driver keeps no heartbeats)."""
        return None

    def async_enqueuer(self) -> AsyncEnqueuer | None:
        """:class:`NativeAsync`; by default None: :class:`~glasswork.jobs.AsyncJobService`
        runs the sync methods in a bounded thread pool."""
        return None

    def bind(self, connection: Any) -> QueueDriver:
        """:class:`TransactionalEnqueue`; by default a :class:`ConfigurationError`."""
        raise ConfigurationError(
            f"the {self.name} driver cannot enqueue inside your transaction (connection=...); "
            "drivers on a database you share with your app can"
        )

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """:class:`Consuming`; by default a :class:`NotImplementedError`."""
        raise NotImplementedError(f"driver {self.name!r} cannot receive messages")

    def ack(self, received: ReceivedMessage) -> None:
        """:class:`Consuming`; by default a :class:`NotImplementedError`."""
        raise NotImplementedError(f"driver {self.name!r} cannot acknowledge messages")

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        """:class:`Consuming`; by default a :class:`NotImplementedError`."""
        raise NotImplementedError(f"driver {self.name!r} cannot release messages")

    def dead_letter_page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """:class:`DeadLetterSearch`; by default a :class:`NotImplementedError`."""
        raise NotImplementedError(f"driver {self.name!r} cannot list dead letters")

    def find_dead_letter(self, record_id: str) -> DeadLetterRecord | None:
        """:class:`DeadLetterSearch`; by default a :class:`NotImplementedError`."""
        raise NotImplementedError(f"driver {self.name!r} cannot list dead letters")

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """:class:`DeadLetterSearch`; by default a :class:`NotImplementedError`."""
        raise NotImplementedError(f"driver {self.name!r} cannot redrive dead letters")

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """:class:`DeadLetterSearch`; by default a :class:`NotImplementedError`."""
        raise NotImplementedError(f"driver {self.name!r} cannot purge dead letters")


#: :class:`QueueDriver`'s answers for a driver without the group: not the group itself.
_FALLBACKS = frozenset(
    {
        "check",
        "run_steps",
        "idempotency_store",
        "heartbeat_store",
        "async_enqueuer",
        "bind",
        "receive",
        "ack",
        "nack",
        "dead_letter_page",
        "find_dead_letter",
        "redrive_matching",
        "purge_matching",
    }
)


# -- the capability groups -------------------------------------------------------------------


@runtime_checkable
class Producing(Protocol):
    """Sending jobs: what :class:`QueueDriver` makes every driver write."""

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        """Send ``message`` to run now."""
        ...

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        """Send ``message`` to run after ``delay_seconds``."""
        ...


@runtime_checkable
class Consuming(Protocol):
    """Receiving jobs, for long-running workers."""

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """Claim up to ``max_messages`` due messages from ``queues`` (None: all), waiting up to
        ``wait_seconds`` for the first. A claimed message is invisible to other consumers
        until acked, nacked, or its lease runs out."""
        ...

    def ack(self, received: ReceivedMessage) -> None:
        """The message is finished with (done, discarded or dead-lettered): remove it. A
        delivery whose lease another consumer has taken since is left alone."""
        ...

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        """Deliver the message again after ``delay_seconds``."""
        ...


@runtime_checkable
class BatchAck(Protocol):
    """Acknowledging several deliveries in one call (the worker settles in batches)."""

    def ack_many(self, received: Sequence[ReceivedMessage]) -> None:
        """:meth:`Consuming.ack` of each of ``received``."""
        ...


@runtime_checkable
class BatchNack(Protocol):
    """Releasing several deliveries in one call."""

    def nack_many(self, received: Sequence[ReceivedMessage], delay_seconds: float = 0.0) -> None:
        """:meth:`Consuming.nack` of each of ``received``."""
        ...


@runtime_checkable
class HandBack(Protocol):
    """Handing jobs back at shutdown without spending an attempt."""

    def release_many(self, received: Sequence[ReceivedMessage]) -> None:
        """Make ``received`` due again at once, this delivery not counted as an attempt (a
        worker shutting down did not fail them)."""
        ...


@runtime_checkable
class LeaseExtension(Protocol):
    """Renewing the leases of long jobs, so no second worker runs them. The driver's
    ``visibility_timeout`` (seconds, read through :func:`lease_seconds`) is how long a
    lease lasts; without a positive number there the worker does not renew."""

    def extend_leases(self, received: Sequence[ReceivedMessage], seconds: float) -> int:
        """Keep ``received`` hidden ``seconds`` more from now; returns how many leases were
        still held (a lease that ran out already is not renewed)."""
        ...


@runtime_checkable
class Debounce(Protocol):
    """Debounced enqueues (``enqueue(..., debounce="30s")``): the last payload of a burst
    runs once, at the end of its window. A driver without this group is refused at enqueue
    (:class:`ConfigurationError` naming the job)."""

    def enqueue_debounced(self, message: JobMessage, window_seconds: float) -> EnqueueResult:
        """Enqueue ``message`` (it has a ``unique_key`` and its ``debounce`` set) due
        ``window_seconds`` from now, in one atomic step: when a job of the same
        ``job_name`` and ``unique_key`` has not ended (waiting, retrying or running) and was
        enqueued debounced too, it is superseded: it ends ``cancelled``, its error
        :func:`~glasswork.jobs.debounce.superseded_reason` (naming ``message``'s job), is
        never delivered or run again, and a run of it under way is not interrupted but its
        outcome no longer counts. A job holding the key that was enqueued without
        ``debounce`` raises :class:`~glasswork.jobs.DuplicateJobError`, nothing changed.
        Of two racing calls for one key, exactly one job is left, the later call's."""
        ...


@runtime_checkable
class FlowLimits(Protocol):
    """Rate limits and per-key concurrency held across every worker on this backend
    (``define_job(rate_limit=..., concurrency_limit=...)``). A worker whose jobs have
    limits refuses to start on a driver without this group."""

    def acquire(
        self, received: ReceivedMessage, job_name: str, key: str | None, limits: JobLimits
    ) -> float | None:
        """Called on a claimed delivery of a limited job, just before it runs, in one atomic
        step: None when it may start now (its start is counted against ``limits.rate``, and
        it holds one of ``limits.concurrency`` slots of ``(job_name, key)`` until it is
        settled or its lease runs out, never longer); or the seconds until it may try again,
        the delivery already put back that long, not counted as an attempt."""
        ...

    def throttle_counts(self) -> Mapping[str, int]:
        """How many deliveries of each job its limits held back, across every worker on this backend (job name -> count; jobs never held back are absent)."""  # noqa: E501
        ...


class LimitedClaims(Protocol):
    """Claims that hold the limits of one worker's jobs (what
    :meth:`ClaimLimits.limited_claims` returns; the worker keeps it for its life)."""

    def claim(
        self,
        queues: Sequence[str] | None,
        max_messages: int,
        wait_seconds: float,
        max_limited: int,
    ) -> LimitedBatch:
        """:meth:`Consuming.receive`, with each delivery of a limited job admitted in the
        claim's own transaction: its start counted against its rate, a slot of
        ``(job name, concurrency key)`` held while it is leased (freed with the lease, as
        :meth:`FlowLimits.acquire`'s). A delivery that may not start yet is put back, due
        when it may try again, not counted as an attempt, and counted as throttled (in the
        batch and in :meth:`FlowLimits.throttle_counts`). At most ``max_limited`` of the
        deliveries are of limited jobs (the worker's free threads: a start or a slot is
        never held by a job waiting for a thread); further ones that may start are left
        where they are, unclaimed (counted in the batch's ``left``)."""
        ...


@runtime_checkable
class ClaimLimits(Protocol):
    """Flow limits taken inside the claim: a worker tells the driver its jobs' limits once,
    and each claim admits the deliveries that may start, in the claim's own transaction
    (no call per start, as :meth:`FlowLimits.acquire` is). A worker on a driver with this
    group uses it; one without uses :class:`FlowLimits`."""

    def limited_claims(self, limits: Mapping[str, JobLimits]) -> LimitedClaims:
        """The claims of a worker whose jobs have these limits (job name -> limits; jobs
        not named have none, and are claimed as :meth:`Consuming.receive` claims them)."""
        ...


#: What :meth:`PeriodicClaims.fire_periodic` did with a fire.
PeriodicFire = Literal["fired", "taken", "skipped"]


@runtime_checkable
class PeriodicClaims(Protocol):
    """Exactly one of many workers firing each periodic job, and the record of its last
    fire (what catching up on missed fires starts from)."""

    def claim_periodic(self, job_name: str, fire_at: datetime) -> bool:
        """True for exactly one caller, across every worker on this backend, per
        ``(job_name, fire_at)``; later fire times only."""
        ...

    def last_periodic_fire(self, job_name: str) -> datetime | None:
        """The latest fire time claimed for ``job_name`` (None: it never fired here)."""
        ...

    def fire_periodic(
        self, job_name: str, fire_at: datetime, message: JobMessage, *, overlap: bool = True
    ) -> PeriodicFire:
        """Claim ``(job_name, fire_at)`` as :meth:`claim_periodic` does and, in the same
        transaction, enqueue ``message``: ``"fired"``. ``"taken"``: another caller won the
        claim; nothing was enqueued. With ``overlap=False``, while a job named ``job_name``
        is still stored on ``message.queue`` (pending, running, waiting to retry) the fire
        is claimed but nothing is enqueued: ``"skipped"``."""
        ...


@runtime_checkable
class QueueCounts(Protocol):
    """Counts per queue (``glasswork stats``, the dashboard, Prometheus' queue depth)."""

    def stats(self) -> Mapping[str, QueueStats]:
        """:class:`~.reports.QueueStats` per queue name, for the queues with jobs or dead
        letters (SQS: every configured queue)."""
        ...


@runtime_checkable
class PendingCount(Protocol):
    """An exact count of unfinished jobs (a worker run until empty, delays included)."""

    def pending_count(self, queues: Sequence[str] | None = None) -> int:
        """Jobs not finished yet (ready, delayed or in flight) in ``queues`` (None: all)."""
        ...


@runtime_checkable
class ConfiguredQueues(Protocol):
    """A fixed set of configured queues (SQS), so a name can be checked before use."""

    def queue_name(self, queue: str) -> str:
        """The configured name ``queue`` stands for; :class:`ConfigurationError` naming the
        configured queues for an unknown one."""
        ...


@runtime_checkable
class DelayLimit(Protocol):
    """A ceiling on the delays the queue itself holds (SQS: 15 minutes, none on FIFO)."""

    def accepts_delay(self, queue: str, delay_seconds: float) -> bool:
        """Whether ``queue`` itself can hold a message back ``delay_seconds``."""
        ...


@runtime_checkable
class DeadLetterAdmin(Protocol):
    """Listing, redriving and purging dead letters (``glasswork dlq``, the dashboard)."""

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetterRecord]:
        """Up to ``limit`` dead letters (of ``queue``), oldest first, left in place."""
        ...

    def redrive(self, ids: Sequence[str] | None = None, *, queue: str | None = None) -> int:
        """Move dead letters (``ids``, or all; of ``queue``) back onto their queues to run
        again; returns how many moved."""
        ...

    def purge_dead_letters(
        self, ids: Sequence[str] | None = None, *, queue: str | None = None
    ) -> int:
        """Delete dead letters (``ids``, or all; of ``queue``); returns how many."""
        ...


@runtime_checkable
class DeadLetterSearch(Protocol):
    """Searching dead letters a page at a time, and acting on every match (the dashboard);
    a driver without it is searched in memory from :class:`DeadLetterAdmin`'s list."""

    def dead_letter_page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """The dead letters ``query`` matches, newest first: the page after ``cursor`` (a
        page's ``next_cursor``; None: the first), with the count and the groups by reason
        of every match."""
        ...

    def find_dead_letter(self, record_id: str) -> DeadLetterRecord | None:
        """The dead letter whose id is ``record_id``, or None when there is none."""
        ...

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """Move every dead letter ``query`` matches back onto its queue; returns how many."""
        ...

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """Delete every dead letter ``query`` matches; returns how many."""
        ...


@runtime_checkable
class OutcomeHistory(Protocol):
    """Where a dashboard reads outcome counts per minute: a driver that stores them
    (:class:`OutcomeStore`), or another source (``CloudWatchOutcomes``). An optional
    ``outcome_source`` attribute (text, :func:`outcome_source`) says where the numbers come
    from."""

    def outcome_history(self, since: datetime) -> list[OutcomeCount]:
        """Counts of the minutes from ``since`` on, oldest first."""
        ...


@runtime_checkable
class OutcomeStore(OutcomeHistory, Protocol):
    """A driver that keeps outcome counts: workers on it record them (see
    :class:`~glasswork.jobs.metrics.outcome_log.OutcomeLog`), dashboards chart them. An
    optional ``records_outcomes`` attribute set False (:func:`records_outcomes`) leaves the
    recording out of workers built after."""

    def record_outcomes(self, counts: Sequence[OutcomeCount]) -> None:
        """Add ``counts`` to what is stored (counts of the same key add up)."""
        ...


@runtime_checkable
class JobFinder(Protocol):
    """A driver that can look a job up by its id. An optional ``job_lookup_scope``
    attribute (text, :func:`lookup_scope`) says where it looks, when that is less than
    every pending job and dead letter (SQS cannot see into its queues)."""

    def find_job(self, job_id: str) -> list[FoundJob]:
        """Every pending or dead-lettered copy of job ``job_id`` the driver holds (finished
        jobs are not kept)."""
        ...


class HeartbeatStore(Protocol):
    """Where workers beat (the SQLite and PostgreSQL drivers keep one each)."""

    def record_worker(self, beat: WorkerBeat) -> None:
        """Write ``beat`` (now is its ``last_seen``), and delete the rows of workers silent
        for :data:`~.reports.FORGET_AFTER` seconds."""
        ...

    def remove_worker(self, worker_id: str) -> None:
        """Delete the row of a worker that stopped."""
        ...

    def workers(self) -> Sequence[WorkerBeat]:
        """Every worker with a row, the most recently started first."""
        ...


@runtime_checkable
class Heartbeats(Protocol):
    """Worker heartbeats: long-running workers say they are alive, the dashboard's workers
    panel reads them."""

    def heartbeat_store(self) -> HeartbeatStore | None:
        """Where workers on this driver beat (None: nowhere after all)."""
        ...


@runtime_checkable
class TransactionalEnqueue(Protocol):
    """Enqueueing inside the caller's own database transaction
    (``JobService.enqueue(..., connection=conn)``)."""

    def bind(self, connection: Any) -> QueueDriver:
        """This driver writing through ``connection``, so an enqueue commits or rolls back
        with the caller's transaction."""
        ...


@runtime_checkable
class IdempotencyProvider(Protocol):
    """A default store for idempotent jobs, in the driver's own storage."""

    def idempotency_store(self) -> IdempotencyStore | None:
        """Where idempotent jobs keep their keys when neither the job nor the worker names a
        store."""
        ...


@runtime_checkable
class RunSteps(Protocol):
    """Around-run steps every worker on the driver adds to each run."""

    def run_steps(self) -> Sequence[Any]:
        """The steps, each a :class:`~glasswork.jobs.RunStep` (say, releasing a unique key
        the driver holds once a job finishes)."""
        ...


@runtime_checkable
class NativeAsync(Protocol):
    """Producing on native async I/O, for :class:`~glasswork.jobs.AsyncJobService`."""

    def async_enqueuer(self) -> AsyncEnqueuer | None:
        """The producing side as coroutines (None: not available here, say without
        aiobotocore; the service then uses threads)."""
        ...


@runtime_checkable
class SetupCheck(Protocol):
    """A check of the setup before a worker or a command relies on it."""

    def check(self, queues: Sequence[str] | None = None) -> None:
        """Make sure the backend answers and ``queues`` (None: all the driver has) exist; a
        :class:`ConfigurationError` says what to fix."""
        ...


@runtime_checkable
class Closing(Protocol):
    """Resources (connections, pools) to release when a command is done with the driver."""

    def close(self) -> None:
        """Release them; the driver may open new ones if used again."""
        ...


@runtime_checkable
class CoroutineProducing(Protocol):
    """A driver whose ``enqueue``/``enqueue_in`` are ``async def`` (as the TypeScript seeds
    write drivers): :class:`~glasswork.jobs.AsyncJobService` awaits them
    (:func:`coroutine_methods` gives the rest), :class:`~glasswork.jobs.JobService` refuses
    it. Found by ``enqueue`` being a coroutine function, not by the rule above."""

    async def enqueue(self, message: JobMessage) -> EnqueueResult: ...
    async def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult: ...


@runtime_checkable
class StatusStore(Protocol):
    """A job's life kept by the driver: its status and result, cancellation and progress
    (``JobService.status/wait/cancel``, ``ctx.progress``, ``ctx.cancelled``).

    Live jobs' states may be derived from what the driver holds anyway (SQLite and
    PostgreSQL read them off the job's row); an ended job's :class:`FinalStatus` is written
    by :meth:`finish` together with the acknowledgement, so a status never says ``done`` for
    a job whose end was not recorded, and is kept for its ``keep_for`` seconds."""

    def job_status(self, job_id: str) -> JobStatus | None:
        """The status of job ``job_id``; None when the driver knows no such job (never
        enqueued here, or ended longer ago than it was kept)."""
        ...

    def job_history(
        self,
        *,
        state: str | None = None,
        job_name: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[JobStatus]:
        """Jobs newest first (by ``updated_at``), filtered; ``before`` is the ``job_id`` of
        the last one of the previous page."""
        ...

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """Cancel a job that has not ended: one that waits (scheduled, pending, retrying)
        ends as ``cancelled`` now and never runs, also after a restart; a running one is
        marked, and its worker asks it to stop (:meth:`cancel_requested`). False when the
        job is unknown or has ended."""
        ...

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these running jobs have been asked to stop."""
        ...

    def record_start(self, received: ReceivedMessage) -> bool:
        """Called before a delivery runs; False: it must not run (it was cancelled, or it
        ended before: a redelivery after its end was recorded), and the worker settles it
        without running it. A driver whose claims already skip such jobs returns True."""
        ...

    def record_retry(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        """The run of ``received`` failed and will be retried: keep the error (state
        ``retrying``). Drivers may write it with the nack instead."""
        ...

    def record_progress(self, job_id: str, fraction: float, note: str | None) -> None:
        """The running job's progress (workers throttle the calls)."""
        ...

    def finish(self, received: ReceivedMessage, final: FinalStatus) -> None:
        """Acknowledge ``received`` (as :meth:`Consuming.ack` does) and record how its job
        ended; where the store allows, both at once. A ``dead`` one has been dead-lettered
        by the worker (``dead_letter``, which consumed it) before: ``finish`` only records
        its status and must not acknowledge it again."""
        ...

    def finish_many(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> None:
        """:meth:`finish` for many deliveries at once (what the worker's batched settling
        calls; one statement or request where the store allows)."""
        ...


@runtime_checkable
class StatusBatches(Protocol):
    """The status calls of a runtime that settles deliveries itself (the Lambda handler: the
    Lambda service deletes a batch's finished records): a batch's starts at once, and ends
    recorded without acknowledging. A driver whose status store is switched off leaves this
    group out (so such a runtime pays nothing)."""

    def record_start_many(self, received: Sequence[ReceivedMessage]) -> list[bool]:
        """:meth:`StatusStore.record_start` of each, in order (side by side where it can)."""
        ...

    def record_ends(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> bool:
        """Record how these jobs ended, acknowledging none (a ``dead`` one as
        :meth:`StatusStore.finish` does); False (logged) when the store did not take them:
        the jobs ran, so the caller settles them anyway."""
        ...


@runtime_checkable
class Workflows(Protocol):
    """Chains and groups (:mod:`glasswork.jobs.workflows`), kept in the driver's status
    store: a row per workflow with its atomic fan-in counter, a row per step.

    Besides these methods, a driver with the group advances workflows where jobs end: its
    :meth:`StatusStore.finish_many` (and :meth:`StatusBatches.record_ends`, and, for a
    delivery it dead-letters, its ``dead_letter``), for each end whose
    :attr:`FinalStatus.workflow` is set, in the same transaction as the end, marks the step
    ended **once** (a step delivered twice counts once), and when it was a chain's step,
    enqueues the next step with its result as the payload, or fails the chain; when it was
    a group's last member, enqueues the callback with the members' results in order (or
    records the group done); a member that failed fails the group (``on_member_failure``
    ``"fail"``) or counts as ended (``"continue"``). See ``docs/workflows.md``."""

    def start_workflow(self, plan: WorkflowPlan, batches: Iterable[Sequence[JobMessage]]) -> None:
        """Store the workflow ``plan`` describes and send the messages of ``batches`` (a
        chain's first step; a group's members, a batch at a time, each message carrying
        its :attr:`JobMessage.workflow` step): all of it, or (an error) none of it.
        ``batches`` may be iterated again (the same messages), should a driver repeat the
        write."""
        ...

    def workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's state, or None when the driver knows no such workflow."""
        ...


# -- asking ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one driver can do: each group field is the driver itself, typed as the group's
    Protocol, or None when it lacks the group. Made by :func:`capabilities_of`.

    Besides the groups, four facts read from the driver: ``dead_letter_traceback`` (its
    ``dead_letter`` takes ``traceback=``), ``purge_by_queue`` (its ``purge_dead_letters``
    takes ``queue=``), ``async_def`` (which of its producing methods are ``async def``) and
    ``priorities`` (its class sets ``claims_by_priority = True``: it claims a queue's jobs
    higher :attr:`JobMessage.priority` first; a driver without it refuses a non-zero
    priority). ``fairness`` (its class's ``fairness``, a :data:`Fairness`): how it keeps
    ``fairness_key`` jobs fair across keys; None: it refuses them at enqueue."""

    producing: Producing | None = None
    consuming: Consuming | None = None
    batch_ack: BatchAck | None = None
    batch_nack: BatchNack | None = None
    hand_back: HandBack | None = None
    lease_extension: LeaseExtension | None = None
    periodic_claims: PeriodicClaims | None = None
    stats: QueueCounts | None = None
    pending_count: PendingCount | None = None
    configured_queues: ConfiguredQueues | None = None
    delay_limit: DelayLimit | None = None
    dead_letter_admin: DeadLetterAdmin | None = None
    dead_letter_search: DeadLetterSearch | None = None
    outcome_history: OutcomeHistory | None = None
    outcome_store: OutcomeStore | None = None
    job_lookup: JobFinder | None = None
    heartbeats: Heartbeats | None = None
    transactions: TransactionalEnqueue | None = None
    idempotency: IdempotencyProvider | None = None
    run_steps: RunSteps | None = None
    native_async: NativeAsync | None = None
    setup_check: SetupCheck | None = None
    closing: Closing | None = None
    coroutine_producing: CoroutineProducing | None = None
    status: StatusStore | None = None
    status_batches: StatusBatches | None = None
    flow_limits: FlowLimits | None = None
    debounce: Debounce | None = None
    claim_limits: ClaimLimits | None = None
    workflows: Workflows | None = None
    dead_letter_traceback: bool = False
    purge_by_queue: bool = False
    async_def: tuple[str, ...] = ()
    priorities: bool = False
    fairness: Fairness | None = None

    @property
    def groups(self) -> tuple[str, ...]:
        """The names of the groups the driver has, in the order of the fields."""
        return tuple(name for name, _ in CAPABILITY_GROUPS if getattr(self, name) is not None)


#: Every group Capabilities reports by the rule: (its field, its Protocol).
CAPABILITY_GROUPS: tuple[tuple[str, type], ...] = (
    ("producing", Producing),
    ("consuming", Consuming),
    ("batch_ack", BatchAck),
    ("batch_nack", BatchNack),
    ("hand_back", HandBack),
    ("lease_extension", LeaseExtension),
    ("periodic_claims", PeriodicClaims),
    ("stats", QueueCounts),
    ("pending_count", PendingCount),
    ("configured_queues", ConfiguredQueues),
    ("delay_limit", DelayLimit),
    ("dead_letter_admin", DeadLetterAdmin),
    ("dead_letter_search", DeadLetterSearch),
    ("outcome_history", OutcomeHistory),
    ("outcome_store", OutcomeStore),
    ("job_lookup", JobFinder),
    ("heartbeats", Heartbeats),
    ("transactions", TransactionalEnqueue),
    ("idempotency", IdempotencyProvider),
    ("run_steps", RunSteps),
    ("native_async", NativeAsync),
    ("setup_check", SetupCheck),
    ("closing", Closing),
    ("status", StatusStore),
    ("status_batches", StatusBatches),
    ("flow_limits", FlowLimits),
    ("debounce", Debounce),
    ("claim_limits", ClaimLimits),
    ("workflows", Workflows),
)
#: The producing methods a driver may write as ``async def``.
PRODUCING_METHODS = ("enqueue", "enqueue_in", "enqueue_at", "enqueue_many", "enqueue_debounced")


def _methods(protocol: type) -> tuple[str, ...]:
    """The public methods of ``protocol`` and of the protocols it extends."""
    found: dict[str, None] = {}
    for cls in reversed(protocol.__mro__):
        if cls.__dict__.get("_is_protocol") and cls is not Protocol:
            found.update(
                (name, None)
                for name, value in cls.__dict__.items()
                if not name.startswith("_") and inspect.isfunction(value)
            )
    return tuple(found)


_GROUP_METHODS = {field: _methods(protocol) for field, protocol in CAPABILITY_GROUPS}
_ALL_METHODS = frozenset(name for names in _GROUP_METHODS.values() for name in names) | {
    "dead_letter",
    *PRODUCING_METHODS,
}
#: The empty bodies the Protocols define (what an undeclared method resolves to).
_STUBS = {
    id(value)
    for _, protocol in CAPABILITY_GROUPS
    for cls in protocol.__mro__
    if cls.__dict__.get("_is_protocol") and cls is not Protocol
    for value in cls.__dict__.values()
    if inspect.isfunction(value)
}
_MISSING = object()


class _Answer:
    """What :func:`capabilities_of` found out about a driver class (or instance). (Not a
    dataclass: each costs ``import glasswork.jobs`` about half a millisecond.)"""

    __slots__ = (
        "async_def",
        "dead_letter_traceback",
        "fairness",
        "groups",
        "priorities",
        "purge_by_queue",
    )

    def __init__(
        self,
        groups: tuple[str, ...],
        dead_letter_traceback: bool,
        purge_by_queue: bool,
        async_def: tuple[str, ...],
        priorities: bool,
        fairness: Fairness | None,
    ) -> None:
        self.groups = groups
        self.dead_letter_traceback = dead_letter_traceback
        self.purge_by_queue = purge_by_queue
        self.async_def = async_def
        self.priorities = priorities
        self.fairness = fairness


_answers: dict[type, _Answer] = {}


def capabilities_of(driver: object) -> Capabilities:
    """What ``driver`` can do, by the rule in this module's docstring.

    Raises :class:`TypeError` for a driver class that declares a group (subclasses its
    Protocol) without writing one of its methods."""
    kind = type(driver)
    own = getattr(driver, "__dict__", None)
    overrides = bool(own) and not _ALL_METHODS.isdisjoint(own)  # type: ignore[arg-type]
    answer = None if overrides else _answers.get(kind)
    if answer is None:
        answer = _answer(driver, kind)
        if not overrides:
            _answers[kind] = answer
    present: dict[str, Any] = dict.fromkeys(answer.groups, driver)
    if "enqueue" in answer.async_def:
        present["coroutine_producing"] = driver
    return Capabilities(
        **present,
        dead_letter_traceback=answer.dead_letter_traceback,
        purge_by_queue=answer.purge_by_queue,
        async_def=answer.async_def,
        priorities=answer.priorities,
        fairness=answer.fairness,
    )


def missing_methods(driver: object, group: type) -> list[str]:
    """The methods of ``group`` (a Protocol of this module) that ``driver`` lacks or leaves
    to :class:`QueueDriver`'s fallback, in the group's order."""
    field = next(f for f, protocol in CAPABILITY_GROUPS if protocol is group)
    return [
        name
        for name in _GROUP_METHODS[field]
        if _state(inspect.getattr_static(driver, name, _MISSING), name) != "ok"
    ]


def _answer(driver: object, kind: type) -> _Answer:
    groups = []
    for field, protocol in CAPABILITY_GROUPS:
        states = {
            name: _state(inspect.getattr_static(driver, name, _MISSING), name)
            for name in _GROUP_METHODS[field]
        }
        declared = protocol in kind.__mro__
        if any(state == "absent" for state in states.values()):
            continue  # opted out (None), or not there at all
        unwritten = [name for name, state in states.items() if state == "unwritten"]
        if unwritten and declared:
            raise TypeError(
                f"{kind.__name__} declares {protocol.__name__} but does not implement "
                f"{', '.join(unwritten)}: write it, or take {protocol.__name__} out of its bases"
            )
        if not unwritten:
            groups.append(field)
    dead_letter = _bound(driver, "dead_letter")
    purge = _bound(driver, "purge_dead_letters") if "dead_letter_admin" in groups else None
    return _Answer(
        tuple(groups),
        dead_letter is not None and _takes_keyword(dead_letter, "traceback"),
        purge is not None and _takes_keyword(purge, "queue"),
        tuple(
            name for name in PRODUCING_METHODS if inspect.iscoroutinefunction(_bound(driver, name))
        ),
        getattr(driver, "claims_by_priority", False) is True,
        _fairness(getattr(driver, "fairness", None)),
    )


def _fairness(value: object) -> Fairness | None:
    """A driver's ``fairness`` when it is one of :data:`Fairness` (else None: a custom
    driver's unrelated attribute of that name claims nothing)."""
    if value == "round-robin":
        return "round-robin"
    if value == "message-group":
        return "message-group"
    return None


def _state(raw: object, name: str) -> str:
    """``ok``, ``absent`` (missing, or None: opted out) or ``unwritten`` (QueueDriver's
    fallback, or a Protocol's empty body)."""
    if raw is _MISSING or raw is None:
        return "absent"
    if name in _FALLBACKS and raw is QueueDriver.__dict__.get(name):
        return "unwritten"
    if id(raw) in _STUBS:
        return "unwritten"
    return "ok" if callable(raw) else "absent"


def _bound(driver: object, name: str) -> Callable[..., Any] | None:
    value = getattr(driver, name, None)
    return value if callable(value) else None


def _takes_keyword(method: Callable[..., Any], name: str) -> bool:
    """Whether ``method`` accepts ``name=`` (by name, or ``**kwargs``)."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin, say)
        return False
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == name and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in parameters
    )


# -- the optional parts of a group -----------------------------------------------------------


class CoroutineMethods:
    """The rest of a :class:`CoroutineProducing` driver, each None where it has none:
    ``enqueue_at`` and ``enqueue_many`` when they are ``async def`` too, ``message_limit``
    (sync or async) and ``aclose``."""

    __slots__ = ("aclose", "enqueue_at", "enqueue_many", "message_limit")

    def __init__(self, driver: CoroutineProducing) -> None:
        at, many = _bound(driver, "enqueue_at"), _bound(driver, "enqueue_many")
        self.enqueue_at: Callable[[JobMessage, datetime], Awaitable[EnqueueResult]] | None = (
            at if inspect.iscoroutinefunction(at) else None
        )
        self.enqueue_many: (
            Callable[[Sequence[JobMessage], float], Awaitable[list[EnqueueResult]]] | None
        ) = many if inspect.iscoroutinefunction(many) else None
        self.message_limit: Callable[[str], Any] | None = _bound(driver, "message_limit")
        self.aclose: Callable[[], Awaitable[None]] | None = _bound(driver, "aclose")


def coroutine_methods(driver: CoroutineProducing) -> CoroutineMethods:
    """The optional methods of a driver written with coroutines."""
    return CoroutineMethods(driver)


def lease_seconds(driver: LeaseExtension) -> object:
    """The driver's ``visibility_timeout`` (None when it has none); what reading it raises
    (SQS asks the queues) is raised."""
    return getattr(driver, "visibility_timeout", None)


def releases_slots_itself(flow: FlowLimits) -> bool:
    """Whether a :class:`FlowLimits` frees a run's concurrency slots when the run ends (its
    ``releases_slots_itself``, False unless set True), rather than when the delivery is
    acknowledged: what a runtime that settles finished deliveries through no driver call
    (the Lambda handler) needs to hold limits."""
    return getattr(flow, "releases_slots_itself", False) is True


def lookup_scope(finder: JobFinder) -> str | None:
    """Where a :class:`JobFinder` looks, when it says (its ``job_lookup_scope``)."""
    scope = getattr(finder, "job_lookup_scope", None)
    return None if scope is None else str(scope)


def outcome_source(history: OutcomeHistory) -> str | None:
    """Where an :class:`OutcomeHistory` gets its numbers, when it says (its
    ``outcome_source``)."""
    source = getattr(history, "outcome_source", None)
    return None if source is None else str(source)


def records_outcomes(store: OutcomeStore) -> bool:
    """Whether workers on an :class:`OutcomeStore` record outcomes into it (its
    ``records_outcomes``, True unless set False)."""
    return bool(getattr(store, "records_outcomes", True))


def driver_name(driver: object) -> str | None:
    """A driver's ``name`` (None for an object without one: a duck-typed async driver)."""
    name = getattr(driver, "name", None)
    return None if name is None else str(name)


def driver_label(driver: object | None) -> str | None:
    """How a message names ``driver``: its ``name``, else its class; None for no driver."""
    if driver is None:
        return None
    return driver_name(driver) or type(driver).__name__
