"""AsyncJobs: the one event loop every ``async def`` job of a worker runs on.

One loop for all of them, so services holding loop-bound clients (an asyncpg pool, an
httpx ``AsyncClient``) work across jobs: the caller's loop under :meth:`Worker.serve`,
otherwise a daemon thread of its own. A job thread that takes async jobs hands them over in
a batch and goes on; ``concurrency`` counts them with the sync jobs running. A handler that
blocks this loop (``time.sleep`` in an ``async def``) holds up the other async jobs, but
never the worker's control thread: signals, leases and shutdown carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .slots import CURRENT_SLOT, Slot

logger = logging.getLogger("glasswork.worker")

if TYPE_CHECKING:
    from ..context import JobContext
    from ..execution import Executor, Outcome


class AsyncJobs:
    """Runs async jobs on ``loop``, or on a loop in a thread of its own (made on first use)."""

    def __init__(self, executor: Executor, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.executor = executor
        self._loop = loop
        self._owned: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(
        self,
        jobs: list[tuple[Slot, JobContext]],
        done: Callable[[Slot, Outcome | None], None],
    ) -> None:
        """Start ``jobs`` on the loop (one hand-over for the lot); ``done(slot, outcome)`` is
        called on the loop's thread as each ends (outcome None: it could not be run)."""
        self._ensure_loop().call_soon_threadsafe(self._start, jobs, done)

    def cancel(self, slot: Slot) -> None:
        """Cancel a job given up on (it ends as a cancellation from outside: no outcome)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel, slot)

    def stop_job(self, slot: Slot) -> None:
        """Cancel the task of a job asked to stop (its context says so already): it ends
        with a :class:`~glasswork.jobs.execution.Cancelled` outcome."""
        loop = self._loop
        if loop is not None:
            # Scheduled from the loop, behind the task's first step if it has not run yet:
            # a task cancelled before it starts would never run the code giving it its end.
            loop.call_soon_threadsafe(loop.call_soon, self._cancel, slot)

    def _start(
        self, jobs: list[tuple[Slot, JobContext]], done: Callable[[Slot, Outcome | None], None]
    ) -> None:
        for slot, ctx in jobs:
            if slot.taken:  # given up on before the loop got to it
                continue
            task = asyncio.ensure_future(self._execute(slot, ctx))
            slot.task = task
            task.add_done_callback(functools.partial(_ended, slot, done))

    @staticmethod
    def _cancel(slot: Slot) -> None:
        if slot.task is not None:
            slot.task.cancel()

    async def _execute(self, slot: Slot, ctx: JobContext) -> Outcome:
        CURRENT_SLOT.set(slot)  # this task's copy of the context: for SlotWatch
        executor = self.executor
        if ctx.cancelled:  # asked to stop before it started
            return await executor.cancelled(ctx)
        try:
            return await executor.execute_prepared(ctx)
        except asyncio.CancelledError as exc:
            # Asked to stop outside the handler (in a step): the end of the job all the
            # same. Given up on (taken), it is no outcome of ours. (The flag is read
            # afresh: the control thread set it meanwhile.)
            if ctx.cancel_reason is None or slot.taken:
                raise
            return await executor.cancelled(ctx, exc)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="glasswork-async-jobs", daemon=True
                )
                thread.start()
                self._loop, self._owned = loop, thread
            return self._loop

    def close(self) -> None:
        """Stop the loop this object started (a blocked one is left to the daemon thread)."""
        with self._lock:
            loop, thread = self._loop, self._owned
            if thread is None or loop is None:
                return
            self._loop = self._owned = None
        # Jobs released at shutdown were cancelled: let them unwind, then stop.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_settle_tasks(), loop).result(1.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(1.0)
        if not thread.is_alive():
            loop.close()


def _ended(
    slot: Slot, done: Callable[[Slot, Outcome | None], None], task: asyncio.Task[Outcome]
) -> None:
    done(slot, _outcome(task))


def _outcome(task: asyncio.Task[Outcome]) -> Outcome | None:
    if task.cancelled():
        return None  # given up on: nobody takes this outcome
    error = task.exception()
    if error is not None:
        # execute() turns whatever a job does into an outcome: a fault of the worker path.
        logger.error("could not run an async job", exc_info=error)
        return None
    return task.result()


async def _settle_tasks() -> None:
    """Cancel what still runs on this loop (besides this) and wait for it to end."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
