"""JobStatuses: the long-running worker's side of a driver's status store
(:class:`~glasswork.jobs.drivers.contract.StatusStore`), for drivers that keep one.

* Before a delivery runs, :meth:`JobStatuses.may_run` asks the store (``record_start``): a
  job cancelled, or ended already, is acknowledged without running (:class:`Skipped`).
* How a job ended is handed to the store with its acknowledgement (:meth:`final`, for the
  settler's ``finish_many``).
* About once a second, on the control thread, :meth:`JobStatuses.tick` asks which running
  jobs were cancelled (``cancel_requested``: their contexts' ``cancelled`` turns true, and
  an ``async def`` handler's task is cancelled) and hands their changed progress to the
  store (``record_progress``), so ``ctx.progress`` itself costs a tuple.

A worker on a driver without a status store has none of this, and pays nothing for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from ..context import JobContext
from ..drivers.contract import StatusStore
from ..drivers.records import ReceivedMessage
from ..execution import Outcome
from .slots import Slot

#: Seconds between two looks at the running jobs' cancellations and progress.
TICK_SECONDS = 1.0


class Skipped(Outcome):
    """A delivery the status store said must not run (cancelled, or ended before): it is
    acknowledged without running, hooks or a status write."""

    __slots__ = ()
    kind: ClassVar[str] = "skipped"


SKIPPED = Skipped(None)


class JobStatuses:
    """The worker's use of ``store``; see the module docstring."""

    def __init__(self, store: StatusStore, log: logging.Logger) -> None:
        self.store = store
        self.log = log
        self._next = 0.0
        self._flushed: dict[str, tuple[float, str | None]] = {}  # job id -> progress sent
        self._failing = False

    def may_run(self, received: ReceivedMessage) -> bool:
        """Whether ``received`` may run (called on a job thread, before it does)."""
        return self.store.record_start(received)

    def due_at(self) -> float:
        """When :meth:`tick` next has something to do (monotonic)."""
        return self._next

    def tick(self, running: Sequence[Slot], cancel_task: Callable[[Slot], Any], now: float) -> None:
        """Pass cancellations to the running jobs (``cancel_task`` cancels an async job's
        task) and their changed progress to the store; at most every
        :data:`TICK_SECONDS`."""
        if now < self._next:
            return
        self._next = now + TICK_SECONDS
        jobs = [(slot, ctx) for slot in running if (ctx := slot.ctx) is not None]
        try:
            self._cancel(jobs, cancel_task)
            self._flush_progress(jobs)
        except Exception:
            if not self._failing:  # once per outage
                self.log.exception("could not exchange running jobs' status with the driver")
            self._failing = True
            return
        self._failing = False

    def _cancel(
        self, jobs: list[tuple[Slot, JobContext]], cancel_task: Callable[[Slot], Any]
    ) -> None:
        asked = [slot.job_id for slot, ctx in jobs if not ctx.cancelled]
        if not asked:
            return
        cancelled = self.store.cancel_requested(asked)
        if not cancelled:
            return
        for slot, ctx in jobs:
            if slot.job_id in cancelled and not ctx.cancelled:
                ctx.request_cancel()
                self.log.info(
                    "job %s %s was cancelled: asking it to stop", slot.job_name, slot.job_id
                )
                if slot.async_job:
                    cancel_task(slot)

    def _flush_progress(self, jobs: list[tuple[Slot, JobContext]]) -> None:
        flushed = self._flushed
        seen = {}
        for slot, ctx in jobs:
            progress = ctx.last_progress
            if progress is None:
                continue
            job_id = slot.job_id
            seen[job_id] = progress
            if flushed.get(job_id) != progress:
                self.store.record_progress(job_id, *progress)
                flushed[job_id] = progress
        if len(flushed) > len(seen):  # forget jobs no longer running
            self._flushed = {k: v for k, v in flushed.items() if k in seen}
