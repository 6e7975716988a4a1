"""Following a job once it is enqueued: its status, waiting for its result, cancelling it.

``JobService.enqueue`` returns a :class:`JobHandle` (``AsyncJobService``: an
:class:`AsyncJobHandle`), the :class:`~glasswork.jobs.EnqueueResult` it always was, bound to
the service that made it::

    handle = jobs.enqueue(resize_job, Image(url=...))
    handle.status()            # JobStatus | None
    size = handle.wait(timeout=30)   # what the handler returned, typed as it is annotated
    handle.cancel()            # True: it will not run (or is asked to stop)

All of it asks the driver's :class:`~glasswork.jobs.drivers.contract.StatusStore`; a driver
without one raises :class:`~glasswork.jobs.errors.StatusUnavailableError`. See
``docs/status.md``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Generic, Protocol

from typing_extensions import TypeVar

from .debounce import superseding_job
from .drivers.contract import StatusStore, capabilities_of
from .drivers.records import EnqueueResult, JobStatus
from .errors import JobFailedError, JobNotFoundError, StatusUnavailableError

if TYPE_CHECKING:
    from datetime import datetime

    from .definition import JobDefinition

R = TypeVar("R", default=Any)

#: The first pause between two polls of :meth:`JobService.wait`, in seconds; each pause is
#: half as long again as the one before, up to ``poll`` (:data:`POLL`).
FIRST_POLL = 0.01
#: The longest pause between two polls, unless ``wait(poll=...)`` says otherwise.
POLL = 0.5
#: Why a job was cancelled, unless ``cancel(reason=...)`` says.
CANCELLED = "cancelled"


def status_store(driver: object) -> StatusStore:
    """``driver``'s status store; :class:`StatusUnavailableError` saying how to get one."""
    store = capabilities_of(driver).status
    if store is None:
        raise StatusUnavailableError(_unavailable(driver))
    return store


def _unavailable(driver: object) -> str:
    return (
        f"{type(driver).__name__} keeps no job statuses, so a job's status, result or cancel "
        "is unknown to it: use a driver that keeps them (SQLite, PostgreSQL, SQS with a "
        "status table, the mock), or implement the StatusStore methods on this one (see "
        "docs/drivers.md)"
    )


def check_wait(timeout: float | None, poll: float) -> None:
    """Refuse a ``timeout`` or ``poll`` :meth:`JobService.wait` cannot use."""
    if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
        raise ValueError(f"wait timeout must be 0 or more seconds, or None, got {timeout!r}")
    if isinstance(poll, bool) or not 0 < poll < float("inf"):
        raise ValueError(f"wait poll must be positive seconds, got {poll!r}")


def pauses(timeout: float | None, poll: float) -> Iterator[float]:
    """The pauses between polls: growing from :data:`FIRST_POLL` to ``poll``, each cut to
    what is left of ``timeout``; ends when the time is up."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = min(FIRST_POLL, poll)
    while True:
        if deadline is None:
            yield pause
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            yield min(pause, left)
        pause = min(pause * 1.5, poll)


def outcome(job_id: str, status: JobStatus | None) -> tuple[bool, Any]:
    """``(True, result)`` for a job done, ``(False, None)`` for one not ended yet;
    :class:`JobFailedError` for one that ended otherwise, :class:`JobNotFoundError` for no
    status."""
    if status is None:
        raise JobNotFoundError(job_id)
    if status.state == "done":
        return True, status.result
    if status.finished:
        raise JobFailedError(job_id, status.state, status.error, status.traceback)
    return False, None


def timed_out(job_id: str, timeout: float | None, status: JobStatus | None) -> TimeoutError:
    state = status.state if status is not None else "unknown"
    return TimeoutError(f"job {job_id} has not ended after {timeout:g}s (it is {state})")


def wait_sync(store: StatusStore, job_id: str, timeout: float | None, poll: float) -> Any:
    """:meth:`JobService.wait`: poll ``store`` until the job ends or ``timeout`` passes; a
    job superseded by a debounced enqueue is followed to the job that superseded it."""
    check_wait(timeout, poll)
    seen = {job_id}
    job_id, status = _read(store, job_id, seen)
    ended, result = outcome(job_id, status)
    for pause in pauses(timeout, poll):
        if ended:
            return result
        time.sleep(pause)
        job_id, status = _read(store, job_id, seen)
        ended, result = outcome(job_id, status)
    if ended:
        return result
    raise timed_out(job_id, timeout, status)


def _read(store: StatusStore, job_id: str, seen: set[str]) -> tuple[str, JobStatus | None]:
    """The status of ``job_id``, or of the job that superseded it (and so on; ``seen``:
    the ids followed so far), and whose it is."""
    status = store.job_status(job_id)
    while (later := superseding_job(status)) is not None and later not in seen:
        seen.add(job_id := later)
        status = store.job_status(job_id)
    return job_id, status


async def call_async(method: Callable[..., Any], *args: Any) -> Any:
    """``method(*args)`` off the event loop: awaited when it is ``async def``, else in a
    thread."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    return await asyncio.to_thread(method, *args)


async def wait_async(store: StatusStore, job_id: str, timeout: float | None, poll: float) -> Any:
    """:meth:`AsyncJobService.wait`: :func:`wait_sync` sleeping on the loop."""
    check_wait(timeout, poll)
    seen = {job_id}
    job_id, status = await _read_async(store, job_id, seen)
    ended, result = outcome(job_id, status)
    for pause in pauses(timeout, poll):
        if ended:
            return result
        await asyncio.sleep(pause)
        job_id, status = await _read_async(store, job_id, seen)
        ended, result = outcome(job_id, status)
    if ended:
        return result
    raise timed_out(job_id, timeout, status)


async def _read_async(
    store: StatusStore, job_id: str, seen: set[str]
) -> tuple[str, JobStatus | None]:
    """:func:`_read`, the store asked off the loop."""
    status = await call_async(store.job_status, job_id)
    while (later := superseding_job(status)) is not None and later not in seen:
        seen.add(job_id := later)
        status = await call_async(store.job_status, job_id)
    return job_id, status


# -- handles -----------------------------------------------------------------------------------


class Follows(Protocol):
    """What a :class:`JobHandle` asks: :class:`~glasswork.jobs.JobService`."""

    def status(self, job_id: str) -> JobStatus | None: ...
    def wait(self, job_id: str, timeout: float | None = None, *, poll: float = POLL) -> Any: ...
    def cancel(self, job_id: str, reason: str = CANCELLED) -> bool: ...


class FollowsAsync(Protocol):
    """What an :class:`AsyncJobHandle` awaits: :class:`~glasswork.jobs.AsyncJobService`."""

    def status(self, job_id: str) -> Awaitable[JobStatus | None]: ...
    def wait(
        self, job_id: str, timeout: float | None = None, *, poll: float = POLL
    ) -> Awaitable[Any]: ...
    def cancel(self, job_id: str, reason: str = CANCELLED) -> Awaitable[bool]: ...


class _Handle(EnqueueResult):
    """An :class:`EnqueueResult` that reads its fields from the one the driver returned
    (``_sent``: a handle is made on every enqueue, and one slot set costs a quarter of
    copying four), compares and hashes as that result (``handle == result``), and pickles as
    it (without its service)."""

    __slots__ = ("_job", "_sent", "_service")
    _sent: EnqueueResult

    if not TYPE_CHECKING:  # to type checkers, the dataclass fields they are
        message_id = property(attrgetter("_sent.message_id"))
        job_id = property(attrgetter("_sent.job_id"))
        queue = property(attrgetter("_sent.queue"))
        scheduled_at = property(attrgetter("_sent.scheduled_at"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnqueueResult):
            return NotImplemented
        return (self.message_id, self.job_id, self.queue, self.scheduled_at) == (
            other.message_id,
            other.job_id,
            other.queue,
            other.scheduled_at,
        )

    def __hash__(self) -> int:
        return hash((self.message_id, self.job_id, self.queue, self.scheduled_at))

    def __reduce__(self) -> tuple[Any, ...]:
        return EnqueueResult, (self.message_id, self.job_id, self.queue, self.scheduled_at)


_new = object.__new__
# The slots' own setters: the frozen dataclass's __setattr__ refuses, and these are the
# fastest way past it.
_put_sent = _Handle.__dict__["_sent"].__set__
_put_service = _Handle.__dict__["_service"].__set__
_put_job = _Handle.__dict__["_job"].__set__


class JobHandle(_Handle, Generic[R]):
    """What :meth:`JobService.enqueue <glasswork.jobs.JobService.enqueue>` returns: the
    :class:`~glasswork.jobs.EnqueueResult` of the enqueue, and the job to follow through
    the service that sent it. ``R`` is what the job's handler returns."""

    __slots__ = ()
    _service: Follows
    _job: JobDefinition[Any, R]

    def __init__(
        self,
        message_id: str,
        job_id: str,
        queue: str,
        scheduled_at: datetime | None = None,
        *,
        service: Follows,
        job: JobDefinition[Any, R],
    ) -> None:
        _put_sent(self, EnqueueResult(message_id, job_id, queue, scheduled_at))
        _put_service(self, service)
        _put_job(self, job)

    def status(self) -> JobStatus | None:
        """The job's status now (:meth:`JobService.status <glasswork.jobs.JobService.status>`)."""
        return self._service.status(self.job_id)

    def wait(self, timeout: float | None = None, *, poll: float = POLL) -> R:
        """Wait for the job to end and return its result, as the handler's return annotation
        types it (a model rebuilt from the stored JSON); see
        :meth:`JobService.wait <glasswork.jobs.JobService.wait>` for the errors."""
        return self._job.result_from(self._service.wait(self.job_id, timeout, poll=poll))

    def cancel(self, reason: str = CANCELLED) -> bool:
        """Cancel the job (:meth:`JobService.cancel <glasswork.jobs.JobService.cancel>`)."""
        return self._service.cancel(self.job_id, reason)


class AsyncJobHandle(_Handle, Generic[R]):
    """What :meth:`AsyncJobService.enqueue <glasswork.jobs.AsyncJobService.enqueue>`
    returns: :class:`JobHandle` with methods to await."""

    __slots__ = ()
    _service: FollowsAsync
    _job: JobDefinition[Any, R]

    def __init__(
        self,
        message_id: str,
        job_id: str,
        queue: str,
        scheduled_at: datetime | None = None,
        *,
        service: FollowsAsync,
        job: JobDefinition[Any, R],
    ) -> None:
        _put_sent(self, EnqueueResult(message_id, job_id, queue, scheduled_at))
        _put_service(self, service)
        _put_job(self, job)

    async def status(self) -> JobStatus | None:
        """The job's status now."""
        return await self._service.status(self.job_id)

    async def wait(self, timeout: float | None = None, *, poll: float = POLL) -> R:
        """Wait for the job to end, without blocking the loop, and return its result."""
        return self._job.result_from(await self._service.wait(self.job_id, timeout, poll=poll))

    async def cancel(self, reason: str = CANCELLED) -> bool:
        """Cancel the job."""
        return await self._service.cancel(self.job_id, reason)


def job_handle(service: Follows, job: JobDefinition[Any, R], sent: EnqueueResult) -> JobHandle[R]:
    """The :class:`JobHandle` of the enqueue that gave ``sent``, made without running
    ``__init__`` (the hot path of every enqueue)."""
    handle: JobHandle[R] = _new(JobHandle)
    _put_sent(handle, sent)
    _put_service(handle, service)
    _put_job(handle, job)
    return handle


def async_job_handle(
    service: FollowsAsync, job: JobDefinition[Any, R], sent: EnqueueResult
) -> AsyncJobHandle[R]:
    """:func:`job_handle` for :class:`AsyncJobService`."""
    handle: AsyncJobHandle[R] = _new(AsyncJobHandle)
    _put_sent(handle, sent)
    _put_service(handle, service)
    _put_job(handle, job)
    return handle
