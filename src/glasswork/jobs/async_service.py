"""AsyncJobService: :class:`~glasswork.jobs.JobService`'s methods as coroutines, for asyncio
apps (FastAPI, Starlette, aiohttp), never blocking the event loop.

How each driver runs (:mod:`glasswork.jobs.drivers.aio`):

* ``SQSQueueDriver``: native async I/O through aiobotocore when it is installed
  (``pip install 'glasswork[async]'``); without it, a bounded thread pool.
* ``SQLiteQueueDriver``, ``MockQueueDriver`` and other sync drivers: a bounded thread pool
  (``max_threads``, default 8). SQLite writes are short local transactions; the pool keeps
  lock waits off the loop.
* A driver whose ``enqueue``/``enqueue_in`` are ``async def``: awaited natively.

A cancelled enqueue still settles as if awaited, and :meth:`AsyncJobService.aclose` waits
for the enqueues in flight: see :mod:`glasswork.jobs.inflight`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .debounce import NOT_DEBOUNCED, debouncer
from .definition import JobDefinition
from .drivers.aio import async_enqueuer
from .drivers.contract import Producing, QueueDriver, missing_methods
from .drivers.records import EnqueueResult, JobStatus
from .durations import Delay
from .errors import DuplicateJobError
from .following import (
    CANCELLED,
    POLL,
    AsyncJobHandle,
    async_job_handle,
    call_async,
    status_store,
    wait_async,
)
from .inflight import InFlight
from .message import JobMessage
from .service import (
    EnqueueBase,
    check_raw_timing,
    check_when,
    debounce_seconds,
    delay_seconds,
    refuse_many_debounce,
)
from .telemetry import traced_send_async

if TYPE_CHECKING:
    from .workflows.canvas import Workflow
    from .workflows.handle import AsyncWorkflowHandle

P = TypeVar("P")
R = TypeVar("R")
T = TypeVar("T")

#: Seconds :meth:`AsyncJobService.aclose` waits for enqueues in flight before cancelling them.
CLOSE_TIMEOUT = 30.0


class AsyncJobService(EnqueueBase):
    """Enqueue jobs from coroutines: the methods of :class:`~glasswork.jobs.JobService`,
    awaited.

    >>> jobs = AsyncJobService(SQSQueueDriver(region=..., queues={...}))     # doctest: +SKIP
    >>> await jobs.enqueue(send_welcome_email, WelcomeEmail(user_id="123"))  # doctest: +SKIP
    >>> await jobs.aclose()          # or: async with AsyncJobService(...) as jobs  # doctest: +SKIP

    It takes the same drivers as ``JobService`` (and drivers whose methods are
    ``async def``). :attr:`mode` tells how enqueues run: ``"native"`` (async I/O on the
    loop) or ``"threads"`` (the driver's sync methods on a pool of at most ``max_threads``
    threads). :meth:`aclose` releases the HTTP client or the threads. While tracing is on,
    each call sends inside a PRODUCER span, as ``JobService``'s do.

    Cancelling a call (``asyncio.wait_for``) does not cancel the enqueue: the caller gets
    ``CancelledError`` at once, and the job is sent, or not, as if it had waited (see
    :mod:`glasswork.jobs.inflight`).
    """

    def __init__(
        self,
        driver: QueueDriver | Any,
        *,
        default_queue: str = "default",
        max_threads: int = 8,
    ) -> None:
        missing = missing_methods(driver, Producing)
        if missing:
            raise TypeError(
                f"driver must be a QueueDriver or have async enqueue/enqueue_in methods; "
                f"{type(driver).__name__} has no {missing[0]}"
            )
        super().__init__(driver, default_queue=default_queue)
        self.driver = driver
        self.enqueuer = async_enqueuer(driver, max_threads)
        self._in_flight = InFlight()

    def __repr__(self) -> str:
        return f"AsyncJobService({self.driver!r}, mode={self.mode!r})"

    @property
    def mode(self) -> str:
        """``"native"`` or ``"threads"``: how this service runs its driver."""
        return self.enqueuer.mode

    async def enqueue(
        self,
        job: JobDefinition[P, T],
        payload: P,
        *,
        priority: int | None = None,
        debounce: Delay | None = None,
    ) -> AsyncJobHandle[T]:
        """Enqueue ``job`` to run as soon as a worker is free; returns its
        :class:`~glasswork.jobs.following.AsyncJobHandle` (``await handle.wait()``).
        ``priority`` and ``debounce`` as for :meth:`JobService.enqueue
        <glasswork.jobs.JobService.enqueue>`."""
        if debounce is not None:
            return async_job_handle(
                self, job, await self._debounced(job, payload, priority, debounce)
            )
        return async_job_handle(
            self, job, await self._run(job, payload, priority, self.enqueuer.enqueue)
        )

    async def enqueue_in(
        self, job: JobDefinition[P, T], payload: P, delay: Delay, *, priority: int | None = None
    ) -> AsyncJobHandle[T]:
        """Enqueue ``job`` to run after ``delay`` (``"10m"``, seconds or a timedelta)."""
        seconds = delay_seconds(job, delay)
        if seconds == 0:
            sent = await self._run(job, payload, priority, self.enqueuer.enqueue)
        else:
            sent = await self._run(job, payload, priority, self.enqueuer.enqueue_in, seconds)
        return async_job_handle(self, job, sent)

    async def enqueue_at(
        self, job: JobDefinition[P, T], payload: P, when: datetime, *, priority: int | None = None
    ) -> AsyncJobHandle[T]:
        """Enqueue ``job`` to run at ``when``, an aware datetime."""
        check_when(when)
        return async_job_handle(
            self, job, await self._run(job, payload, priority, self.enqueuer.enqueue_at, when)
        )

    async def enqueue_many(
        self,
        job: JobDefinition[P],
        payloads: Iterable[P],
        *,
        delay: Delay | None = None,
        priority: int | None = None,
        debounce: None = None,
    ) -> list[EnqueueResult]:
        """Enqueue one job per payload, in batches where the driver has them; every payload
        is validated first. ``debounce`` is refused, as by :meth:`JobService.enqueue_many
        <glasswork.jobs.JobService.enqueue_many>`."""
        refuse_many_debounce(job, debounce)
        seconds = delay_seconds(job, delay) if delay is not None else 0.0
        queue, given = self.queue_of(job), list(payloads)

        async def many() -> list[EnqueueResult]:
            limit = await self.enqueuer.message_limit(queue)
            messages = [self.message_for(job, p, queue, limit, priority) for p in given]
            if not messages:
                return []
            return await self._send(self.enqueuer.enqueue_many, messages, limit, seconds)

        return await self._in_flight.run(job.name, many)

    async def enqueue_raw(
        self,
        job: JobDefinition[Any, T],
        payload: object,
        *,
        delay: Delay | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        debounce: Delay | None = None,
    ) -> AsyncJobHandle[T]:
        """Enqueue a plain JSON-like ``payload``, validated against the job's schema (see
        :meth:`JobService.enqueue_raw <glasswork.jobs.JobService.enqueue_raw>`)."""
        check_raw_timing(delay, at, debounce)
        if debounce is not None:
            return async_job_handle(
                self, job, await self._debounced(job, payload, priority, debounce)
            )
        if at is not None:
            return await self.enqueue_at(job, payload, at, priority=priority)
        return await self.enqueue_in(job, payload, delay or 0, priority=priority)

    # -- following a job (the driver's status store, off the loop) ---------------------

    async def enqueue_workflow(self, workflow: Workflow[R]) -> AsyncWorkflowHandle[R]:
        """:meth:`JobService.enqueue_workflow <glasswork.jobs.JobService.enqueue_workflow>`,
        in a thread (the driver's workflow store is sync)."""
        import asyncio

        from .workflows.handle import AsyncWorkflowHandle
        from .workflows.starting import start

        workflow_id, store = await asyncio.to_thread(start, self, self.driver, workflow)
        return AsyncWorkflowHandle(workflow_id, store, workflow)

    async def status(self, job_id: str) -> JobStatus | None:
        """:meth:`JobService.status <glasswork.jobs.JobService.status>`, awaited (a sync
        store is asked in a thread)."""
        store = status_store(self.driver)
        status: JobStatus | None = await call_async(store.job_status, job_id)
        return status

    async def wait(self, job_id: str, timeout: float | None = None, *, poll: float = POLL) -> Any:
        """:meth:`JobService.wait <glasswork.jobs.JobService.wait>`, sleeping on the loop
        between polls."""
        return await wait_async(status_store(self.driver), job_id, timeout, poll)

    async def cancel(self, job_id: str, reason: str = CANCELLED) -> bool:
        """:meth:`JobService.cancel <glasswork.jobs.JobService.cancel>`, awaited."""
        store = status_store(self.driver)
        return bool(await call_async(store.cancel, job_id, reason))

    async def aclose(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Close what the service opened (the aiobotocore clients, the thread pool), once
        the enqueues in flight have settled: it refuses new ones, waits up to ``timeout``
        seconds for those in flight, and cancels the rest (see :mod:`glasswork.jobs.inflight`).
        An enqueue after it opens the service again."""
        await self._in_flight.close(timeout)
        await self.enqueuer.aclose()

    async def __aenter__(self) -> AsyncJobService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(
        self,
        job: JobDefinition[Any],
        payload: object,
        priority: int | None,
        send: Callable[..., Awaitable[EnqueueResult]],
        *args: Any,
    ) -> EnqueueResult:
        queue = self.queue_of(job)

        async def enqueue() -> EnqueueResult:
            limit = await self.enqueuer.message_limit(queue)
            message = self.message_for(job, payload, queue, limit, priority)
            return await self._send(send, message, limit, *args)

        return await self._in_flight.run(job.name, enqueue)

    async def _debounced(
        self, job: JobDefinition[Any], payload: object, priority: int | None, debounce: Delay
    ) -> EnqueueResult:
        seconds = debounce_seconds(job, debounce)
        debouncer(self.driver, job)  # refused here, before anything is sent
        queue = self.queue_of(job)

        async def enqueue() -> EnqueueResult:
            limit = await self.enqueuer.message_limit(queue)
            message = self.message_for(job, payload, queue, limit, priority, debounce=seconds)
            try:
                return await self._send(self.enqueuer.enqueue_debounced, message, limit, seconds)
            except DuplicateJobError as exc:
                exc.add_note(NOT_DEBOUNCED)
                raise

        return await self._in_flight.run(job.name, enqueue)

    async def _send(
        self,
        send: Callable[..., Awaitable[R]],
        message: JobMessage | list[JobMessage],
        limit: int,
        *args: Any,
    ) -> R:
        await self._in_flight.hold_keys(message if isinstance(message, list) else [message])
        # While tracing is on, inside a PRODUCER span whose context travels with the job.
        return await traced_send_async(send, message, *args, driver=self.driver, limit=limit)
