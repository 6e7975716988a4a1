"""JobService: validate a payload, build its message, hand it to the driver.

:class:`JobService` is for sync code; :class:`~glasswork.jobs.AsyncJobService`
(:mod:`glasswork.jobs.async_service`) has the same methods as coroutines. What they share,
checking a payload and building its message, is :class:`EnqueueBase`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from . import debounce as debouncing
from .definition import JobDefinition, check_priority
from .drivers.contract import QueueDriver, capabilities_of, driver_label
from .drivers.records import EnqueueResult, JobStatus
from .durations import Delay, parse_duration
from .errors import (
    ConfigurationError,
    DuplicateJobError,
    InvalidJobPayloadError,
    PriorityUnsupportedError,
)
from .fairness import refuse_unfair
from .following import CANCELLED, POLL, JobHandle, job_handle, status_store, wait_sync
from .message import JobMessage
from .telemetry import traced_send

if TYPE_CHECKING:
    from .workflows.canvas import Workflow
    from .workflows.handle import WorkflowHandle

P = TypeVar("P")
R = TypeVar("R")


class EnqueueBase:
    """What both services do before a driver sees a job: check the payload against the job's
    schema, build the message, and check it against the driver's size limit."""

    def __init__(self, driver: object, *, default_queue: str = "default") -> None:
        if not isinstance(default_queue, str) or not default_queue:
            raise ConfigurationError(
                f"default_queue must be a non-empty queue name, got {default_queue!r}"
            )
        self.default_queue = default_queue
        self._producer = driver

    def queue_of(self, job: JobDefinition[Any]) -> str:
        """The queue ``job`` goes to: its own ``queue``, else the service's default."""
        if not isinstance(job, JobDefinition):
            raise TypeError(f"expected a job made by define_job, got {job!r}")
        return job.queue or self.default_queue

    def build_message(
        self, job: JobDefinition[Any], payload: object, limit: int, priority: int | None = None
    ) -> JobMessage:
        """Validate ``payload`` and build the message, checking it against ``limit`` bytes
        (:class:`PayloadTooLargeError`) before any driver sees it. A unique key no driver
        could store alike is an :class:`InvalidJobPayloadError` here, on every driver.
        ``priority`` (None: the job's own) must be 0 on a driver that does not claim by
        priority (:class:`PriorityUnsupportedError`)."""
        return self.message_for(job, payload, self.queue_of(job), limit, priority)

    def message_for(
        self,
        job: JobDefinition[Any],
        payload: object,
        queue: str,
        limit: int,
        priority: int | None,
        *,
        debounce: float | None = None,
    ) -> JobMessage:
        """:meth:`build_message` for ``job`` on ``queue`` (its :meth:`queue_of`, which the
        caller has already looked up to learn ``limit``); ``debounce``: the window of a
        debounced enqueue (the payload must give a unique key)."""
        chosen = job.priority if priority is None else priority
        if chosen:
            chosen = self.checked_priority(job, chosen)
        value = job.validate(payload)
        unique_key = job.unique_key_for(value)
        if debounce is not None:
            debouncing.check_key(job, unique_key)
        if unique_key is not None and "\x00" in unique_key:
            raise InvalidJobPayloadError(
                job.name,
                [],
                f"its unique key {unique_key!r} holds U+0000 (NUL), which PostgreSQL text "
                "cannot store; nothing was sent",
            )
        message = JobMessage.create(
            job.name,
            job.to_wire(value),
            queue=queue,
            unique_key=unique_key,
            group_id=job.group_id_for(value),
            priority=chosen,
            concurrency_key=job.concurrency_key_for(value),
            debounce=debounce,
            fairness_key=self.fairness_key(job, value) if job.fairness_key else None,
        )
        message.encode(limit)
        return message

    def fairness_key(self, job: JobDefinition[Any], value: Any) -> str | None:
        """The fairness key of ``job``'s payload ``value``, on a driver that keeps fairness
        (a :class:`ConfigurationError` on one that does not, whatever the key)."""
        caps = capabilities_of(self._producer)
        refuse_unfair(job.name, caps.fairness, f"the {driver_label(self._producer)} driver")
        return job.fairness_key_for(value)

    def checked_priority(self, job: JobDefinition[Any], priority: int) -> int:
        """``priority`` for ``job``, if it is one and the driver claims by priority."""
        check_priority(priority, f"job {job.name!r}: priority")
        if priority and not capabilities_of(self._producer).priorities:
            raise PriorityUnsupportedError(
                f"{type(self._producer).__name__} does not claim jobs by priority, so job "
                f"{job.name!r} cannot have priority {priority}; nothing was sent. Give urgent "
                "jobs a queue of their own, with its own workers or concurrency "
                '(define_job(..., queue="urgent")), or use a driver that claims by priority '
                "(SQLite, PostgreSQL)"
            )
        return priority


#: The latest time a job may be due, on every driver: SQLite stores times up to it, and due
#: times come back as Python datetimes, which end hours later (PostgreSQL would store more).
LATEST_DUE = datetime(9999, 12, 31, tzinfo=UTC)


def delay_seconds(job: JobDefinition[Any], delay: Delay) -> float:
    """``delay`` in seconds (:func:`parse_duration`); a ``ValueError`` saying nothing was
    stored if ``job`` would come due after :data:`LATEST_DUE`."""
    seconds = parse_duration(delay)
    if not seconds <= (LATEST_DUE - datetime.now(UTC)).total_seconds():  # inf too
        raise ValueError(
            f"job {job.name!r} would be due after the year 9999: the delay {delay!r} is too "
            "long; nothing was stored"
        )
    return seconds


def check_when(when: datetime) -> datetime:
    """``enqueue_at``'s time: an aware datetime (naive ones are ambiguous), not after
    :data:`LATEST_DUE`."""
    if not isinstance(when, datetime):
        raise TypeError(f"enqueue_at needs a datetime, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"enqueue_at needs an aware datetime, got naive {when.isoformat()}; "
            "use e.g. datetime.now(UTC) + timedelta(hours=1)"
        )
    try:
        too_late = when.astimezone(UTC) > LATEST_DUE
    except OverflowError:  # after the year 9999 in UTC
        too_late = True
    if too_late:
        raise ValueError(
            f"enqueue_at {when.isoformat()} is after {LATEST_DUE.isoformat()}, the latest "
            "time every driver can hold; nothing was stored"
        )
    return when


def debounce_seconds(job: JobDefinition[Any], debounce: Delay) -> float:
    """A ``debounce`` window in seconds (given as delays are: ``"30s"``, seconds, a
    timedelta; 0 or more), the errors naming the job and the option."""
    try:
        return delay_seconds(job, debounce)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"job {job.name!r}: debounce: {exc}") from None


def check_raw_timing(
    delay: Delay | None, at: datetime | None, debounce: Delay | None = None
) -> None:
    given = [
        name for name, v in (("delay", delay), ("at", at), ("debounce", debounce)) if v is not None
    ]
    if len(given) > 1:
        raise TypeError(
            f"enqueue_raw takes one of delay=, at= and debounce=, not {' and '.join(given)}"
        )


def refuse_many_debounce(job: JobDefinition[Any], debounce: object) -> None:
    """``enqueue_many`` does not debounce: a clear :class:`ConfigurationError` when asked."""
    if debounce is not None:
        raise ConfigurationError(
            f"job {job.name!r}: enqueue_many does not debounce (each debounced enqueue "
            "supersedes in one atomic step of its own, which a batch cannot keep); call "
            "enqueue(job, payload, debounce=...) for each payload; nothing was sent"
        )


class JobService(EnqueueBase):
    """Enqueue jobs now, after a delay, or at a time.

    >>> service = JobService(MockQueueDriver())                                # doctest: +SKIP
    >>> service.enqueue(send_welcome_email, WelcomeEmail(user_id="123"))        # doctest: +SKIP
    >>> service.enqueue_in(send_welcome_email, WelcomeEmail(user_id="1"), "10m")  # doctest: +SKIP
    >>> service.enqueue_raw(send_welcome_email, {"user_id": "123"})             # doctest: +SKIP

    Payloads are typed by the job's schema (a model instance for a model schema, the
    ``TypedDict`` for a ``TypedDict`` schema); :meth:`enqueue_raw` takes plain JSON-like
    values. Every payload is validated before anything is sent
    (:class:`InvalidJobPayloadError`), the message is checked against the driver's size
    limit (:class:`PayloadTooLargeError`), and drivers that keep unique keys refuse a
    duplicate (:class:`DuplicateJobError`). Options are keyword-only. While tracing is on
    (:mod:`glasswork.jobs.telemetry`), each call sends inside an OpenTelemetry PRODUCER span
    whose context travels with the message.

    A driver whose methods are ``async def`` is refused here: use
    :class:`~glasswork.jobs.AsyncJobService`, which awaits them.
    """

    def __init__(self, driver: QueueDriver, *, default_queue: str = "default") -> None:
        if not isinstance(driver, QueueDriver):
            raise TypeError(f"driver must be a QueueDriver, got {type(driver).__name__}")
        coroutines = capabilities_of(driver).async_def
        if coroutines:
            raise ConfigurationError(
                f"{type(driver).__name__}.{coroutines[0]} is async def, and JobService calls "
                "drivers synchronously (its coroutines would never run, and every job would be "
                "lost): use AsyncJobService(driver), which awaits them"
            )
        super().__init__(driver, default_queue=default_queue)
        self.driver = driver

    def enqueue(
        self,
        job: JobDefinition[P, R],
        payload: P,
        *,
        priority: int | None = None,
        connection: Any = None,
        debounce: Delay | None = None,
    ) -> JobHandle[R]:
        """Enqueue ``job`` to run as soon as a worker is free; returns its
        :class:`~glasswork.jobs.following.JobHandle` (an :class:`EnqueueResult` with
        ``status()``, ``wait()`` and ``cancel()``).

        ``priority`` (None: the job's own): higher runs first within the queue, on drivers
        that claim by priority. ``connection``: write through your own database connection,
        inside your open transaction, so the job exists if and only if that transaction
        commits (drivers on a database, such as PostgreSQL; others raise
        :class:`ConfigurationError`).

        ``debounce`` (``"30s"``, seconds or a timedelta; the job needs a unique key): run
        the job that long from now, superseding a job of the same unique key enqueued with
        ``debounce`` that has not ended, so a burst runs once, with its last payload, a
        window after the last enqueue (see :mod:`glasswork.jobs.debounce`)."""
        driver = self._driver(connection)
        if debounce is not None:
            return self._debounced(driver, job, payload, priority, debounce)
        message = self._message(driver, job, payload, priority)
        return job_handle(self, job, traced_send(driver, driver.enqueue, message))

    def enqueue_in(
        self,
        job: JobDefinition[P, R],
        payload: P,
        delay: Delay,
        *,
        priority: int | None = None,
        connection: Any = None,
    ) -> JobHandle[R]:
        """Enqueue ``job`` to run after ``delay``: ``"30s"``, ``"10m"``, ``"1h30m"``, seconds
        or a timedelta."""
        seconds = delay_seconds(job, delay)
        driver = self._driver(connection)
        message = self._message(driver, job, payload, priority)
        if seconds == 0:
            return job_handle(self, job, traced_send(driver, driver.enqueue, message))
        return job_handle(self, job, traced_send(driver, driver.enqueue_in, message, seconds))

    def enqueue_at(
        self,
        job: JobDefinition[P, R],
        payload: P,
        when: datetime,
        *,
        priority: int | None = None,
        connection: Any = None,
    ) -> JobHandle[R]:
        """Enqueue ``job`` to run at ``when``, an aware datetime (a time in the past: now)."""
        check_when(when)
        driver = self._driver(connection)
        message = self._message(driver, job, payload, priority)
        return job_handle(self, job, traced_send(driver, driver.enqueue_at, message, when))

    def enqueue_many(
        self,
        job: JobDefinition[P],
        payloads: Iterable[P],
        *,
        delay: Delay | None = None,
        priority: int | None = None,
        connection: Any = None,
        debounce: None = None,
    ) -> list[EnqueueResult]:
        """Enqueue one job per payload, in batches where the driver has them. Every payload is
        validated first: if one is invalid, nothing is sent. ``debounce`` is refused (a
        :class:`ConfigurationError`): debounce each payload with :meth:`enqueue`."""
        refuse_many_debounce(job, debounce)
        seconds = delay_seconds(job, delay) if delay is not None else 0.0
        driver = self._driver(connection)
        with _collector_paused():
            messages = [self._message(driver, job, p, priority) for p in payloads]
            if not messages:
                return []
            return traced_send(driver, driver.enqueue_many, messages, seconds)

    def enqueue_raw(
        self,
        job: JobDefinition[Any, R],
        payload: object,
        *,
        delay: Delay | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        connection: Any = None,
        debounce: Delay | None = None,
    ) -> JobHandle[R]:
        """Enqueue a plain JSON-like ``payload`` (say, a dict from a request body), validated
        against the job's schema as any payload is: the explicit untyped path, for when the
        payload is not (yet) the schema's type. ``delay``, ``at`` or ``debounce`` as for
        :meth:`enqueue_in`, :meth:`enqueue_at` and :meth:`enqueue`."""
        check_raw_timing(delay, at, debounce)
        if debounce is not None:
            return self._debounced(self._driver(connection), job, payload, priority, debounce)
        if at is not None:
            return self.enqueue_at(job, payload, at, priority=priority, connection=connection)
        return self.enqueue_in(job, payload, delay or 0, priority=priority, connection=connection)

    def enqueue_workflow(self, workflow: Workflow[R]) -> WorkflowHandle[R]:
        """Send a workflow (:func:`~glasswork.jobs.workflows.chain`,
        :func:`~glasswork.jobs.workflows.group`): its first step, or every member of a
        group (in batches), and what the rest needs, in the driver's status store. Returns a
        :class:`~glasswork.jobs.workflows.WorkflowHandle` (``status()``, ``wait()``).
        :class:`ConfigurationError` on a driver without workflows (SQS, for now)."""
        from .workflows.handle import WorkflowHandle
        from .workflows.starting import start

        workflow_id, store = start(self, self.driver, workflow)
        return WorkflowHandle(workflow_id, store, workflow)

    # -- following a job ---------------------------------------------------------------

    def status(self, job_id: str) -> JobStatus | None:
        """Job ``job_id``'s :class:`~glasswork.jobs.drivers.records.JobStatus` (state,
        attempts, progress, result, error, traceback), or None when the driver knows no such
        job (never enqueued here, or ended longer ago than its ``result_ttl``).
        :class:`~glasswork.jobs.errors.StatusUnavailableError` on a driver that keeps no
        statuses."""
        return status_store(self.driver).job_status(job_id)

    def wait(self, job_id: str, timeout: float | None = None, *, poll: float = POLL) -> Any:
        """Wait for job ``job_id`` to end and return its result (the JSON value it was
        stored as; ``handle.wait()`` gives it the handler's type). Polls the status, from
        every 10 ms up to every ``poll`` seconds. Raises
        :class:`~glasswork.jobs.errors.JobFailedError` when it ended ``failed``, ``dead`` or
        ``cancelled``, :class:`TimeoutError` when it has not ended after ``timeout`` seconds
        (None: wait as long as it takes), :class:`~glasswork.jobs.errors.JobNotFoundError`
        when the driver has no status for it. A job superseded by a debounced enqueue is
        followed to the job that superseded it (its result is the one returned)."""
        return wait_sync(status_store(self.driver), job_id, timeout, poll)

    def cancel(self, job_id: str, reason: str = CANCELLED) -> bool:
        """Cancel job ``job_id``: one waiting (scheduled, pending, retrying) ends
        ``cancelled`` and never runs; a running one is asked to stop (``ctx.cancelled``).
        False when the job is unknown or has ended."""
        return status_store(self.driver).cancel(job_id, reason)

    def build_message(
        self,
        job: JobDefinition[Any],
        payload: object,
        limit: int | None = None,
        priority: int | None = None,
    ) -> JobMessage:
        """Validate ``payload`` and build its message, checked against the driver's size limit
        (or ``limit`` bytes)."""
        if limit is None:
            limit = self.driver.message_limit(self.queue_of(job))
        return super().build_message(job, payload, limit, priority)

    def _message(
        self,
        driver: QueueDriver,
        job: JobDefinition[Any],
        payload: object,
        priority: int | None,
    ) -> JobMessage:
        queue = self.queue_of(job)
        return self.message_for(job, payload, queue, driver.message_limit(queue), priority)

    def _debounced(
        self,
        driver: QueueDriver,
        job: JobDefinition[Any, R],
        payload: object,
        priority: int | None,
        debounce: Delay,
    ) -> JobHandle[R]:
        seconds = debounce_seconds(job, debounce)
        debouncer = debouncing.debouncer(driver, job)
        queue = self.queue_of(job)
        limit = driver.message_limit(queue)
        message = self.message_for(job, payload, queue, limit, priority, debounce=seconds)
        try:
            sent = traced_send(driver, debouncer.enqueue_debounced, message, seconds)
        except DuplicateJobError as exc:
            exc.add_note(debouncing.NOT_DEBOUNCED)
            raise
        return job_handle(self, job, sent)

    def _driver(self, connection: Any) -> QueueDriver:
        return self.driver if connection is None else self.driver.bind(connection)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a batch is built and sent: thousands
    of new objects that all live on make it run again and again over them, finding nothing
    (a sixth of a large batch's time). It runs as before afterwards; one the application
    turned off stays off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
