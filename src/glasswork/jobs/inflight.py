"""The enqueues an :class:`~glasswork.jobs.AsyncJobService` has in flight, and what
cancelling one or closing the service guarantees.

* **Cancelled.** Each enqueue runs in a task of its own, shielded from its caller. A caller
  that is cancelled (``asyncio.wait_for``, a client gone) gets ``CancelledError`` at once,
  while the enqueue goes on and settles exactly as if it had been awaited: the job is sent
  and keeps its unique key, or it is refused or fails and leaves nothing behind (on SQS, the
  key it took is given back). Nobody awaits that outcome any more, so it is logged.
* **Retried.** An enqueue whose job has a unique key first waits for any enqueue in flight
  with the same key to settle, so the retry of a cancelled enqueue is refused as a
  duplicate exactly when the first one was sent, and goes through when it was not.
* **Closed.** :meth:`InFlight.close` refuses new enqueues (:class:`EnqueueError`, nothing
  sent), waits up to its timeout for those in flight, then cancels the rest; their callers
  get an :class:`EnqueueError` saying the outcome is unknown (the driver gives back what it
  cannot tell was sent). Only then does the service close its clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .errors import EnqueueError
from .message import JobMessage

R = TypeVar("R")
logger = logging.getLogger("glasswork.jobs")

#: Seconds enqueues cancelled by :meth:`InFlight.close` get to give back what they took.
CANCEL_GRACE = 5.0


class InFlight:
    """The enqueue tasks of one service (see the module docstring)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keys: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._closing: float | None = None  # the timeout of the close under way

    async def run(self, job_name: str, enqueue: Callable[[], Awaitable[R]]) -> R:
        """``await enqueue()`` in a task shielded from the caller's cancellation."""
        if self._closing is not None:
            raise EnqueueError(f"the AsyncJobService is closing: job {job_name!r} was not enqueued")
        task = asyncio.ensure_future(self._settle(job_name, enqueue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_unawaited(job_name))
            raise

    async def _settle(self, job_name: str, enqueue: Callable[[], Awaitable[R]]) -> R:
        try:
            return await enqueue()
        except asyncio.CancelledError:
            if self._closing is None:  # the loop is being torn down
                raise
            raise EnqueueError(
                f"the AsyncJobService closed before the enqueue of job {job_name!r} finished "
                f"(it waited {self._closing:g}s): whether the job reached its queue is unknown"
            ) from None

    async def hold_keys(self, messages: Sequence[JobMessage]) -> None:
        """Wait for enqueues in flight with the unique keys of ``messages``, then mark them
        as this task's until it settles. Called from within :meth:`run`'s task."""
        keys = {(m.job_name, m.unique_key) for m in messages if m.unique_key is not None}
        if not keys:
            return
        me = asyncio.current_task()
        assert me is not None
        while earlier := {t for k in keys if (t := self._keys.get(k)) is not None}:
            await asyncio.wait(earlier)
        for key in keys:
            self._keys[key] = me

        def forget(task: asyncio.Task[Any]) -> None:
            for key in keys:
                if self._keys.get(key) is task:
                    del self._keys[key]

        me.add_done_callback(forget)

    async def close(self, timeout: float) -> None:
        """Refuse new enqueues, wait up to ``timeout`` seconds for those in flight, cancel
        the rest and give them :data:`CANCEL_GRACE` seconds to settle."""
        self._closing = timeout
        try:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=timeout)
            late = set(self._tasks)
            if late:
                logger.warning(
                    "AsyncJobService closing: %d enqueues still in flight after %gs are "
                    "cancelled; whether their jobs reached their queues is unknown",
                    len(late),
                    timeout,
                )
                for task in late:
                    task.cancel()
                await asyncio.wait(late, timeout=CANCEL_GRACE)
        finally:
            self._closing = None


def _log_unawaited(job_name: str) -> Callable[[asyncio.Task[Any]], None]:
    """What to do with the outcome of an enqueue whose caller was cancelled: log it."""

    def log(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            logger.warning("the enqueue of job %r was cancelled with its event loop", job_name)
            return
        error = task.exception()
        if error is not None:
            logger.warning(
                "the enqueue of job %r, whose caller was cancelled, failed: %s: %s",
                job_name,
                type(error).__name__,
                error,
            )
            return
        result = task.result()
        ids = [r.job_id for r in result] if isinstance(result, list) else [result.job_id]
        logger.info(
            "job %r (job ids %s), whose caller was cancelled, is enqueued",
            job_name,
            ", ".join(ids),
        )

    return log
