"""One job thread's slot, and running a sync job in it so a hung handler can be left behind.

A sync job runs on its slot's thread as the Lambda worker runs it, with no event loop: the
executor's coroutine is driven by hand (:func:`drive`) and the handler itself is called
*between* two steps of that coroutine, which suspends at a :class:`HandlerCall`. So when a
handler outlives its timeout, the coroutine is not stuck inside it: the control thread takes
the job over (:meth:`Slot.take`), and a fresh thread resumes the coroutine with
:class:`~glasswork.jobs.JobTimeoutError` as what the handler call raised.
The job's retry rules, hooks and steps then give its outcome as for any failure, and the
old thread runs on, abandoned, dropping its late result.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context, ContextVar
from threading import Lock, Thread
from typing import Any

from ..context import JobContext
from ..drivers.records import ReceivedMessage
from ..execution import CallNext, JobRun, Outcome
from ..timeouts import JobTimeout

#: Seconds an async job may overrun its timeout before the worker gives up on the event loop
#: cancelling it (a handler blocking the loop): at least this, or a tenth of the timeout.
ASYNC_OVERRUN = 2.0


class Held:
    """A received message the worker holds (waiting for a thread, or running), with the
    time its lease was last taken or extended."""

    __slots__ = ("leased_at", "received")

    def __init__(self, received: ReceivedMessage, leased_at: float) -> None:
        self.received = received
        self.leased_at = leased_at


class Abandoned:
    """What running a job gives when the control thread took it over mid-run."""


ABANDONED = Abandoned()


class Slot:
    """One job thread's state, which the control thread reads for deadlines, leases and
    shutdown. ``lock`` orders the end of a job against a take-over: whichever comes first
    decides who settles the job."""

    __slots__ = (
        "async_job",
        "call",
        "context",
        "coro",
        "ctx",
        "deadline",
        "held",
        "index",
        "job_id",
        "job_name",
        "limit",
        "lock",
        "started",
        "taken",
        "task",
        "thread",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.lock = Lock()
        self.thread: Thread | None = None
        self.held: Held | None = None
        self.job_name = ""
        self.job_id = ""
        self.async_job = False
        self.started = 0.0
        self.deadline: float | None = None  # set by SlotWatch once the run has a limit
        self.limit = 0.0
        self.coro: Coroutine[Any, Any, Outcome] | None = None
        #: The context a sync job's coroutine runs in (its own: see :func:`drive`).
        self.context: Context = _EMPTY
        self.call: HandlerCall | None = None  # the handler call in progress, if any
        self.task: asyncio.Task[Outcome] | None = None  # an async job's, on the event loop
        self.taken = False
        #: The run's context (None for a body that is no job): its cancel flag and progress.
        self.ctx: JobContext | None = None

    def begin(
        self,
        held: Held,
        job_name: str,
        job_id: str,
        async_job: bool,
        ctx: JobContext | None = None,
    ) -> None:
        # ``held`` last: the control thread looks at a slot only once it holds a job.
        self.ctx = ctx
        self.deadline = None
        self.coro = None
        self.call = None
        self.task = None
        self.job_name = job_name
        self.job_id = job_id
        self.async_job = async_job
        self.started = time.perf_counter()
        self.held = held

    @property
    def running(self) -> Held | None:
        """The job this slot's thread runs and still owns."""
        held = self.held
        return None if held is None or self.taken else held

    def resume(self) -> bool:
        """Called by the slot's thread when a handler call returns: False if the job was
        taken over meanwhile (the thread must then drop the result and stop)."""
        with self.lock:
            if self.taken:
                return False
            self.call = None
            return True

    def finish(self) -> bool:
        """Called by the slot's thread at the end of a job: False if it was taken over."""
        with self.lock:
            if self.taken:
                return False
            self.held = None
            return True

    def take(self, *, expired_at: float | None = None) -> bool:
        """Take the running job away from this slot's thread (the control thread, at a
        timeout when ``expired_at`` is given, or at shutdown). False if the slot is idle,
        already taken, or (with ``expired_at``) not past its deadline."""
        with self.lock:
            if self.held is None or self.taken:
                return False
            if expired_at is not None and (self.deadline is None or expired_at < self.deadline):
                return False
            self.taken = True
            return True


_EMPTY = Context()

#: The slot of the job running in this thread (or, for an async job, this task).
CURRENT_SLOT: ContextVar[Slot | None] = ContextVar("glasswork_worker_slot", default=None)


class SlotWatch(JobTimeout):
    """The worker's timeout step: :class:`~glasswork.jobs.timeouts.JobTimeout`, which also
    records each run's deadline on its slot, for the control thread's watch over jobs no
    event loop can cancel (sync handlers, or a blocked loop). On a job thread (no loop) it
    only records: the control thread takes the job over at the deadline."""

    __slots__ = ()

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome:
        seconds = self.seconds_for(run)
        if seconds is None:
            return await call_next()
        slot = CURRENT_SLOT.get()
        if slot is not None:
            slot.limit = seconds
            # JobTimeout cancels an async job on time; the worker steps in only if the
            # event loop cannot (a handler blocking it).
            overrun = max(ASYNC_OVERRUN, seconds / 10) if slot.async_job else 0.0
            slot.deadline = time.monotonic() + seconds + overrun
        if asyncio._get_running_loop() is None:
            return await call_next()
        return await super().__call__(run, call_next)


class HandlerCall:
    """A sync handler call the executor awaits. :func:`drive` makes the call outside the
    coroutine and hands back what it returned or raised (``value`` / ``error``): the error
    is raised *inside* the awaiting frame, so even a ``GeneratorExit`` reaches the
    executor's error handling as that job's failure (thrown in with ``coro.throw``, it would
    close the coroutine instead)."""

    __slots__ = ("args", "error", "fn", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.value: Any = None
        self.error: BaseException | None = None

    def __await__(self) -> Generator[HandlerCall, None, Any]:
        yield self
        if self.error is not None:
            raise self.error
        return self.value


def call_inline(fn: Callable[..., Any], *args: Any) -> HandlerCall:
    """The executor's ``run_sync`` on job threads: suspend, so :func:`drive` calls ``fn``."""
    return HandlerCall(fn, args)


_NEEDS_LOOP = (
    "a step or hook of a sync job awaited something that needs an event loop; sync jobs run "
    "without one, as on Lambda (make the step await only coroutines, or the job async)"
)


def drive(coro: Coroutine[Any, Any, Outcome], slot: Slot) -> Outcome | Abandoned:
    """Run ``coro`` (an ``execute``, new or suspended at a handler call whose result is set)
    to its outcome, making the handler calls it awaits in between.

    The coroutine runs in ``slot.context``, the job's own, so what its steps set there
    (a trace span, attached and detached) stays with the job, even when another thread
    takes it over. The handler runs in a copy made at its call: it sees all of it, and the
    job's context is free for a new thread to resume in while a hung handler runs on."""
    run = slot.context.run
    try:
        while True:
            step = run(coro.send, None)
            if not isinstance(step, HandlerCall):
                coro.close()
                raise RuntimeError(_NEEDS_LOOP)
            slot.call = step
            value: Any = None
            error: BaseException | None = None
            try:
                value = slot.context.copy().run(step.fn, *step.args)
            except BaseException as exc:
                # SystemExit, KeyboardInterrupt and the like fail this job, not the thread:
                # the executor decides their outcome like any handler error.
                error = exc
            if not slot.resume():  # taken over meanwhile: the result is not ours to give
                return ABANDONED
            step.value, step.error = value, error
    except StopIteration as stop:
        outcome: Outcome = stop.value
        return outcome


def unwind(coro: Coroutine[Any, Any, Outcome], call: HandlerCall, context: Context) -> None:
    """End a job's coroutine, taken from its thread inside the handler call ``call``, with no
    outcome (a release at shutdown): it goes on as if cancelled from outside, which
    ``execute`` lets through without hooks or retry rules, so its steps unwind now rather
    than when the garbage collector closes it (which would run them as a failure)."""

    async def cancelled() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # so execute() sees a cancellation of its caller's task
        call.error = asyncio.CancelledError()
        with contextlib.suppress(asyncio.CancelledError, StopIteration):
            context.run(coro.send, None)

    loop = asyncio.new_event_loop()
    try:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(cancelled())
    finally:
        loop.close()
