"""The driver contract: what carries job messages between producers and workers.

A driver subclasses :class:`QueueDriver`. Producers need only :meth:`~QueueDriver.enqueue`
and :meth:`~QueueDriver.enqueue_in` (``enqueue_at`` and ``enqueue_many`` have defaults built
on them). Long-running workers also need :meth:`~QueueDriver.receive`,
:meth:`~QueueDriver.ack` and :meth:`~QueueDriver.nack`; :meth:`~QueueDriver.dead_letter`
gives permanent failures somewhere to go. Operators' tools (the dashboard) search dead
letters (:meth:`~QueueDriver.dead_letter_page` with a :class:`DeadLetterQuery`) and read
worker heartbeats (:meth:`~QueueDriver.heartbeat_store`); by default a driver cannot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigurationError, EnqueueError
from ..message import MAX_MESSAGE_BYTES, JobMessage

if TYPE_CHECKING:
    from ..execution import RunStep
    from ..idempotency.store import IdempotencyStore
    from .heartbeats import HeartbeatStore


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


@dataclass(slots=True)
class ReceivedMessage:
    """One delivery handed to a worker by :meth:`QueueDriver.receive`.

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


class AsyncEnqueuer(Protocol):
    """A driver's producing side as coroutines, what :class:`~glasswork.jobs.AsyncJobService`
    awaits: from the driver's own async I/O (:meth:`QueueDriver.async_enqueuer`), from a
    driver whose methods are ``async def``, or a bounded thread pool around a sync driver."""

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


class QueueDriver(ABC):
    """Base class of every driver. Subclass it to carry jobs over another backend.

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def message_limit(self, queue: str) -> int:
        """The size limit of a message for ``queue``, which :class:`~glasswork.jobs.JobService`
        checks before anything is sent (:class:`~glasswork.jobs.PayloadTooLargeError`).
        262,144 bytes unless :attr:`max_message_bytes` is set; the SQS driver reads each
        queue's ``MaximumMessageSize``."""
        return self.max_message_bytes

    def async_enqueuer(self) -> AsyncEnqueuer | None:
        """This driver's producing side on native async I/O, for
        :class:`~glasswork.jobs.AsyncJobService`; None (the default) means the service runs
        the sync methods in a bounded thread pool. The SQS driver returns one when
        aiobotocore is installed (``pip install 'glasswork[async]'``)."""
        return None

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

    def check(self, queues: Sequence[str] | None = None) -> None:
        """Make sure the backend answers and ``queues`` (None: all this driver has) exist,
        before a worker or a command relies on them; a :class:`ConfigurationError` says
        what to fix. Nothing by default (the SQLite and PostgreSQL drivers check at
        construction); the SQS driver asks SQS about each queue."""
        return None

    # -- consuming: needed by long-running workers -------------------------------------

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """Claim up to ``max_messages`` due messages from ``queues`` (None: all), waiting up to
        ``wait_seconds`` for the first. A claimed message is invisible to other consumers
        until acked, nacked, or its lease runs out."""
        raise NotImplementedError(f"driver {self.name!r} cannot receive messages")

    def ack(self, received: ReceivedMessage) -> None:
        """The message is finished with (done, discarded or dead-lettered): remove it."""
        raise NotImplementedError(f"driver {self.name!r} cannot acknowledge messages")

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        """Deliver the message again after ``delay_seconds``."""
        raise NotImplementedError(f"driver {self.name!r} cannot release messages")

    def dead_letter(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool:
        """Keep a message that can never succeed, with the reason and the formatted
        ``traceback`` of the failure (None when there is none to keep). Returns False when
        this driver has nowhere to put it (the worker then logs the body at ERROR level).

        Workers pass ``traceback`` only to a driver whose ``dead_letter`` takes it (decided
        once, when the worker is built): one written without it still works."""
        return False

    def run_steps(self) -> Sequence[RunStep]:
        """Around-run steps every worker on this driver must add to each run (say, releasing
        a unique key the driver holds once the job is finished). None by default."""
        return ()

    def idempotency_store(self) -> IdempotencyStore | None:
        """Where idempotent jobs keep their keys when neither the job nor the worker names a
        store (drivers with storage of their own may offer one). None by default."""
        return None

    def heartbeat_store(self) -> HeartbeatStore | None:
        """Where long-running workers on this driver say they are alive (the dashboard's
        workers panel reads it); None (the default) when the driver keeps no heartbeats."""
        return None

    # -- dead letters, for operators (the dashboard) -----------------------------------------

    def dead_letter_page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """The dead letters ``query`` matches, newest first: the page after ``cursor`` (a
        page's ``next_cursor``; None: the first), with the count and the groups by reason
        of every match (see :mod:`glasswork.jobs.drivers.dead_letter_query`)."""
        raise NotImplementedError(f"driver {self.name!r} cannot list dead letters")

    def find_dead_letter(self, record_id: str) -> DeadLetterRecord | None:
        """The dead letter whose id is ``record_id``, or None when there is none."""
        raise NotImplementedError(f"driver {self.name!r} cannot list dead letters")

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """Move every dead letter ``query`` matches back onto its queue (as ``redrive``
        does); returns how many moved."""
        raise NotImplementedError(f"driver {self.name!r} cannot redrive dead letters")

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """Delete every dead letter ``query`` matches; returns how many."""
        raise NotImplementedError(f"driver {self.name!r} cannot purge dead letters")

    # -- transactions --------------------------------------------------------------------

    def bind(self, connection: Any) -> QueueDriver:
        """This driver writing through the caller's own database ``connection``, so an
        enqueue commits or rolls back with the caller's transaction
        (``JobService.enqueue(..., connection=conn)``). Drivers on a database override it."""
        raise ConfigurationError(
            f"the {self.name} driver cannot enqueue inside your transaction (connection=...); "
            "drivers on a database you share with your app can"
        )
