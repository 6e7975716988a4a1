"""BatchWatch: while a batch runs on a driver that keeps statuses, about once a second a
thread asks the status store which of the batch's jobs were cancelled
(``cancel_requested``) and hands their changed progress on (``record_progress``).

A cancelled job's context says so (``ctx.cancelled``), and an ``async def`` handler's task
is cancelled; a job of the batch that has not started yet does not start (it ends
``cancelled``). A batch over within the first second costs a thread start and no request;
the last progress of each job goes with its end (``record_ends``), not through here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from ..context import JobContext
from ..drivers.contract import StatusStore

#: Seconds between two looks at the batch's cancellations and progress.
TICK_SECONDS = 1.0


class BatchWatch:
    """Watches one batch at a time for ``store``; see the module docstring."""

    def __init__(self, store: StatusStore, log: logging.Logger) -> None:
        self.store = store
        self.log = log
        self.tick_seconds = TICK_SECONDS
        self._stop: threading.Event | None = None
        # The tasks of the async handlers running now; changed on their loop's thread only.
        self._tasks: dict[JobContext, asyncio.Task[object]] = {}
        self._failing = False

    def begin(self, contexts: Sequence[JobContext]) -> None:
        """Start watching the jobs of a batch (until :meth:`end`)."""
        if not contexts:  # bodies that are no jobs: nothing to watch
            return
        stop = self._stop = threading.Event()
        thread = threading.Thread(
            target=self._watch,
            args=(list(contexts), stop),
            name="glasswork-lambda-watch",
            daemon=True,
        )
        thread.start()

    def end(self) -> None:
        """The batch is over: the thread makes no further request for it."""
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    def running(self, ctx: JobContext) -> None:
        """An ``async def`` handler's run starts, in its own task (called from that task)."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks[ctx] = task

    def stopped(self, ctx: JobContext) -> None:
        """That run is over (called from its task)."""
        self._tasks.pop(ctx, None)

    def _watch(self, contexts: list[JobContext], stop: threading.Event) -> None:
        flushed: dict[str, tuple[float, str | None]] = {}
        while not stop.wait(self.tick_seconds):
            try:
                self._cancel([c for c in contexts if not c.cancelled], stop)
                self._flush_progress(contexts, flushed, stop)
            except Exception:
                if not self._failing:  # once per outage
                    self.log.exception("could not exchange running jobs' status with the driver")
                self._failing = True
                continue
            self._failing = False

    def _cancel(self, contexts: list[JobContext], stop: threading.Event) -> None:
        if not contexts:
            return
        cancelled = self.store.cancel_requested([_job_id(c) for c in contexts])
        if not cancelled or stop.is_set():
            return
        for ctx in contexts:
            if _job_id(ctx) in cancelled:
                ctx.request_cancel()
                ctx.logger.info("cancelled: asking it to stop")
                task = self._tasks.get(ctx)
                if task is not None:
                    task.get_loop().call_soon_threadsafe(self._cancel_task, ctx, task)

    def _cancel_task(self, ctx: JobContext, task: asyncio.Task[object]) -> None:
        if self._tasks.get(ctx) is task:  # still in its handler (or its steps)
            task.cancel()

    def _flush_progress(
        self,
        contexts: list[JobContext],
        flushed: dict[str, tuple[float, str | None]],
        stop: threading.Event,
    ) -> None:
        for ctx in contexts:
            progress = ctx.last_progress
            if progress is None or stop.is_set():
                continue
            job_id = _job_id(ctx)
            if flushed.get(job_id) != progress:
                self.store.record_progress(job_id, *progress)
                flushed[job_id] = progress


def _job_id(ctx: JobContext) -> str:
    return str(ctx._fields["job_id"])
