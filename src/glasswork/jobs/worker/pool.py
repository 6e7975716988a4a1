"""JobPool: ``concurrency`` job threads, and the jobs they run.

A thread takes a received job from the :class:`~.handoff.Handoff` and runs it from start to
outcome: reading it (:meth:`Executor.prepare <glasswork.jobs.execution.Executor.prepare>`), the
around-run steps, hooks and a sync handler, all on the thread, in a context of the job's own
(so a step's context variables, such as the trace span, are the handler's and end with the
job); an async job it hands to :class:`~.event_loop.AsyncJobs` (with the async jobs right
behind it) and goes on. Outcomes go to :attr:`JobPool.finished` for the control thread to
settle. With a status store (``may_run``), a thread asks it before running each delivery,
and one that must not run is settled unrun (:class:`~.status.Skipped`). With limited jobs
(``gate``), a thread asks the driver to start each delivery of one, right before it runs;
one held back was put back by the driver and is only counted (:class:`~.limits.Throttled`).

A job past its timeout is taken from its thread (:meth:`JobPool.expire`): the thread is
abandoned and a new one takes its place, so the pool never shrinks. When the job was inside
its sync handler, the new thread first finishes it as a :class:`~glasswork.jobs.JobTimeoutError`
(see :mod:`.slots`); otherwise (stuck in a hook or step, or an async handler blocking the
event loop) it cannot be given an outcome, so its lease is left to run out.

Threads are daemons: a handler that never returns cannot keep the process alive.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ..context import JobContext
from ..drivers.records import ReceivedMessage
from ..errors import JobTimeoutError
from ..execution import Outcome
from .handoff import Handoff, take_all
from .limits import THROTTLED, FlowGate
from .logs import log_end, log_start, names_of
from .slots import ABANDONED, CURRENT_SLOT, Abandoned, Held, Slot, call_inline, drive, unwind
from .status import SKIPPED

if TYPE_CHECKING:
    from ..execution import Executor
    from .event_loop import AsyncJobs

#: A received job as its thread read it: its run's context, or the outcome of a body that
#: is no job envelope (a dead letter).
Prepared = JobContext | Outcome


class Finished(NamedTuple):
    """A job a thread ran: its outcome (None: the worker failed to run it), run time and
    context (None for a body that is no job, or a delivery not run)."""

    held: Held
    outcome: Outcome | None
    seconds: float
    ctx: JobContext | None = None


class JobPool:
    """``size`` daemon threads running received jobs; see the module docstring."""

    def __init__(
        self,
        size: int,
        *,
        new_executor: Callable[[], Executor],
        async_jobs: AsyncJobs | None,
        log: logging.Logger,
        wake: Callable[[], None],
        name: str,
        may_run: Callable[[ReceivedMessage], bool] | None = None,
        gate: FlowGate | None = None,
    ) -> None:
        self.size = size
        #: Asked before a limited job starts (None: the worker's jobs have no limits).
        self.gate = gate
        #: Asked before a delivery runs (the status store's ``record_start``), if set.
        self.may_run = may_run
        self.new_executor = new_executor
        self.async_jobs = async_jobs
        self.log = log
        self.wake = wake
        self.name = name
        #: Received jobs on their way to the threads. With async jobs, a thread is free again
        #: as soon as it handed one to the loop, so the jobs running are counted there.
        self.handoff = Handoff(size, counted=async_jobs is not None)
        #: Jobs run to an outcome, for the control thread to settle.
        self.finished: deque[Finished] = deque()
        self.slots: list[Slot] = []
        #: Async jobs running on the event loop, each with a slot of its own.
        self.async_slots: dict[Slot, None] = {}
        #: Threads left running a job that was taken from them.
        self.abandoned: list[threading.Thread] = []
        #: The control thread is woken when a job ends with at most this many waiting.
        self.refill_at = 0
        #: Jobs submitted whose outcome the control thread has not taken (nor the job
        #: itself, at shutdown or as lost): what the worker holds. Kept by the control
        #: thread alone, so a job a thread has popped but not yet started still counts.
        self.outstanding = 0
        self._spawned = 0
        self._loud = log.isEnabledFor(logging.INFO)

    # -- the control thread's side -------------------------------------------------------

    def start(self) -> None:
        for index in range(self.size):
            self.slots.append(self._spawn(Slot(index)))

    def submit(self, held: Sequence[Held], job_seconds: float | None, starting: int = 0) -> None:
        """Hand received jobs to the threads (see :meth:`Handoff.put`); the first
        ``starting`` must start at once (limited jobs, holding their start and slot)."""
        self.outstanding += len(held)
        self.handoff.put(held, job_seconds, starting)

    def running(self) -> list[Slot]:
        """Slots of the jobs running and still owned (by a thread, or the event loop)."""
        return [slot for slot in [*self.slots, *self.async_slots] if slot.running is not None]

    def holding(self) -> int:
        """Jobs the worker holds: waiting for a thread, running, or with an outcome not yet
        taken."""
        return self.outstanding

    def take_finished(self) -> list[Finished]:
        """Take the outcomes the threads reported so far."""
        taken = take_all(self.finished)
        self.outstanding -= len(taken)
        return taken

    def unstarted(self) -> list[Held]:
        """Take every job no thread has started (to release it at shutdown)."""
        taken = self.handoff.take_waiting()
        self.outstanding -= len(taken)
        return taken

    def next_deadline(self) -> float | None:
        deadlines = [s.deadline for s in self.running() if s.deadline]
        return min(deadlines) if deadlines else None

    def expire(self, now: float) -> list[Held]:
        """Take jobs past their deadline from their threads, which are replaced. Returns
        the jobs that could not be given an outcome (their leases are left to run out)."""
        lost: list[Held] = []
        for slot in self.running():
            if slot.deadline is None or now < slot.deadline or not slot.take(expired_at=now):
                continue
            held = slot.held
            assert held is not None
            self._abandon(slot, f"it ran past its {slot.limit:g}s timeout")
            if slot.call is not None and slot.coro is not None:
                error = JobTimeoutError(slot.job_name, slot.limit)
                self.slots[slot.index] = self._spawn(Slot(slot.index), (slot, error))
                continue
            where = "blocking the event loop" if slot.async_job else "outside its handler"
            self.log.error(
                "job %s %s ran past its %gs timeout %s, where it cannot be stopped; "
                "its lease is left to run out, so it will be delivered again",
                slot.job_name,
                held.received.message_id,
                slot.limit,
                where,
            )
            lost.append(held)
            self._let_go(slot)
        self.outstanding -= len(lost)
        return lost

    def take_running(self) -> list[Held]:
        """Take every running job from its thread (shutdown, after the grace period),
        ending what can be ended: an async job is cancelled, a sync one inside its handler
        unwound (see :func:`unwind`); the handler itself runs on, abandoned."""
        taken: list[Held] = []
        for slot in self.running():
            if not slot.take():
                continue
            assert slot.held is not None
            taken.append(slot.held)
            self._abandon(slot, "it was still running at shutdown")
            if not slot.async_job and slot.call is not None and slot.coro is not None:
                unwind(slot.coro, slot.call, slot.context)
            self._let_go(slot)
        self.outstanding -= len(taken)
        return taken

    def stop_async(self, slot: Slot) -> None:
        """Cancel the task of an async job asked to stop (see :meth:`AsyncJobs.stop_job`)."""
        if self.async_jobs is not None:
            self.async_jobs.stop_job(slot)

    def _let_go(self, slot: Slot) -> None:
        """A job taken without an outcome: its thread is replaced, or its task cancelled."""
        if slot.async_job:
            assert self.async_jobs is not None
            self.async_jobs.cancel(slot)
            self.async_slots.pop(slot, None)
        elif not self.handoff.closing():
            self.slots[slot.index] = self._spawn(Slot(slot.index))
        self.handoff.ended()

    def close(self) -> None:
        """Threads take no more jobs; idle ones exit now, busy ones after their job."""
        self.handoff.close()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the threads not abandoned to exit (after
        :meth:`close` and the release of what they ran)."""
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            thread = slot.thread
            if thread is not None and thread not in self.abandoned:
                thread.join(max(0.0, deadline - time.monotonic()))

    def alive_abandoned(self) -> int:
        """Abandoned threads still running their handler."""
        return sum(thread.is_alive() for thread in self.abandoned)

    def _abandon(self, slot: Slot, why: str) -> None:
        held = slot.held
        thread = slot.thread
        if thread is None:  # an async job: its task is cancelled
            self.log.warning(
                "giving up on async job %s %s: %s",
                slot.job_name,
                held.received.message_id if held is not None else "?",
                why,
            )
            return
        self.abandoned.append(thread)
        self.log.warning(
            "abandoning thread %s running job %s %s: %s; its late result will be ignored "
            "(%d abandoned thread(s) alive)",
            thread.name,
            slot.job_name,
            held.received.message_id if held is not None else "?",
            why,
            self.alive_abandoned(),
        )

    def _spawn(self, slot: Slot, takeover: tuple[Slot, BaseException] | None = None) -> Slot:
        self._spawned += 1
        thread = threading.Thread(
            target=self._work,
            args=(slot, takeover),
            name=f"{self.name}-{self._spawned}",
            daemon=True,
        )
        slot.thread = thread
        thread.start()
        return slot

    # -- the job threads' side -----------------------------------------------------------

    def _work(self, slot: Slot, takeover: tuple[Slot, BaseException] | None) -> None:
        CURRENT_SLOT.set(slot)
        executor = self.new_executor()  # its own: a private loop for async hooks per thread
        if takeover is not None and self._finish_taken(slot, *takeover) is ABANDONED:
            return
        job = self._next(executor)
        while job is not None:
            held, prepared = job
            if self._is_async(prepared):
                job = self._start_async(executor, held, prepared) or self._next(executor)
                continue
            if self._run(slot, executor, held, prepared) is ABANDONED:
                return
            job = self._next(executor)

    def _next(self, executor: Executor, block: bool = True) -> tuple[Held, Prepared] | None:
        """The next job for this thread, read; None when the pool is closing (or, with
        ``block`` False, when no job can start at once)."""
        while True:
            held = self.handoff.take(block)
            if held is None:
                return None
            received = held.received
            if self.may_run is None or self._may_run(held):
                prepared = executor.prepare(
                    received.body, received.attempt, None, received.attributes
                )
                if self.gate is None or self._may_start(held, prepared):
                    return held, prepared

    def _may_run(self, held: Held) -> bool:
        """Ask the status store whether ``held`` may run; if not, report it settled unrun
        (not run, or, when the store failed, with no outcome: its lease runs out and it
        is delivered again)."""
        assert self.may_run is not None
        outcome: Outcome | None = SKIPPED
        try:
            if self.may_run(held.received):
                return True
        except Exception:
            self.log.exception(
                "could not ask the driver whether message %s may run; it runs again when its "
                "lease runs out",
                held.received.message_id,
            )
            outcome = None
        self._report_unrun(held, outcome)
        return False

    def _may_start(self, held: Held, prepared: Prepared) -> bool:
        """Ask the flow gate whether ``held`` may start; if not (the driver put it back),
        report it throttled; if the driver failed, with no outcome (its lease runs out)."""
        assert self.gate is not None
        if isinstance(prepared, Outcome):
            return True
        outcome: Outcome | None = THROTTLED
        try:
            if self.gate.may_start(held.received, prepared):
                return True
        except Exception:
            self.log.exception(
                "could not ask the driver whether limited message %s may start; it runs "
                "again when its lease runs out",
                held.received.message_id,
            )
            outcome = None
        self._report_unrun(held, outcome)
        return False

    def _report_unrun(self, held: Held, outcome: Outcome | None) -> None:
        self.finished.append(Finished(held, outcome, 0.0))
        self.handoff.ended()
        if len(self.handoff.ready) <= self.refill_at:
            self.wake()

    def _is_async(self, prepared: Prepared) -> bool:
        if self.async_jobs is None or isinstance(prepared, Outcome):
            return False
        definition = prepared.definition
        return definition is not None and bool(definition.is_async)

    def _start_async(
        self, executor: Executor, held: Held, ctx: Prepared
    ) -> tuple[Held, Prepared] | None:
        """Hand this async job, and the async jobs right behind it that can start now, to
        the event loop in one go; returns the sync job found behind them, if any."""
        assert self.async_jobs is not None
        batch = [self._async_slot(held, ctx)]
        while (job := self._next(executor, block=False)) is not None and self._is_async(job[1]):
            batch.append(self._async_slot(*job))
        self.async_jobs.start(batch, self._async_ended)
        return job

    def _async_slot(self, held: Held, ctx: Prepared) -> tuple[Slot, JobContext]:
        assert isinstance(ctx, JobContext)
        slot = Slot(-1)
        slot.begin(held, *names_of(ctx, held.received), True, ctx)
        if self._loud:
            log_start(self.log, held.received, slot.job_name, slot.job_id)
        self.async_slots[slot] = None
        return slot, ctx

    def _async_ended(self, slot: Slot, outcome: Outcome | None) -> None:
        """An async job's task ended (on the event loop's thread)."""
        self.async_slots.pop(slot, None)
        held = slot.held
        if held is not None and slot.finish():
            self._report(slot, held, outcome, time.perf_counter() - slot.started)

    def _run(
        self, slot: Slot, executor: Executor, held: Held, prepared: Prepared
    ) -> Outcome | Abandoned | None:
        received = held.received
        ctx = prepared if isinstance(prepared, JobContext) else None
        slot.begin(held, *names_of(prepared, received), False, ctx)
        if self._loud:
            log_start(self.log, received, slot.job_name, slot.job_id)
        if isinstance(prepared, Outcome):  # not a job envelope: prepare() dead-lettered it
            return self._settled(slot, held, prepared)
        outcome: Outcome | Abandoned | None
        try:
            coro = executor.execute_prepared(prepared, call_inline)
            slot.coro = cast(Coroutine[Any, Any, Outcome], coro)  # an async def's, always
            slot.context = contextvars.copy_context()
            outcome = drive(slot.coro, slot)
        except BaseException:
            # execute() turns whatever a job does into an outcome: this is a fault of the
            # worker path. The job's lease runs out and it is delivered again.
            self.log.exception("could not run message %s", received.message_id)
            outcome = None
        return self._settled(slot, held, outcome)

    def _finish_taken(
        self, slot: Slot, old: Slot, error: BaseException
    ) -> Outcome | Abandoned | None:
        """Finish a job taken from ``old``'s thread inside its handler: its coroutine goes on
        as if the handler call had raised ``error``."""
        held, coro, call = old.held, old.coro, old.call
        assert held is not None
        assert coro is not None
        assert call is not None
        slot.begin(held, old.job_name, old.job_id, False, old.ctx)
        slot.started = old.started
        slot.context = old.context
        call.error = error
        outcome: Outcome | Abandoned | None
        try:
            outcome = drive(coro, slot)
        except BaseException:
            self.log.exception("could not settle timed-out message %s", held.received.message_id)
            outcome = None
        return self._settled(slot, held, outcome)

    def _settled(
        self, slot: Slot, held: Held, outcome: Outcome | Abandoned | None
    ) -> Outcome | Abandoned | None:
        seconds = time.perf_counter() - slot.started
        if isinstance(outcome, Abandoned) or not slot.finish():
            self.log.info(
                "abandoned thread %s: job %s %s returned after %.1f s; result ignored",
                threading.current_thread().name,
                slot.job_name,
                held.received.message_id,
                seconds,
            )
            return ABANDONED
        self._report(slot, held, outcome, seconds)
        return outcome

    def _report(self, slot: Slot, held: Held, outcome: Outcome | None, seconds: float) -> None:
        self.finished.append(Finished(held, outcome, seconds, slot.ctx))
        self.handoff.ended()
        if self._loud and outcome is not None:
            log_end(self.log, held.received, slot.job_name, slot.job_id, outcome, seconds)
        if len(self.handoff.ready) <= self.refill_at:
            self.wake()
