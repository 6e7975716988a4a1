"""Handoff: the queue of received jobs the job threads take from, and their wake-ups.

Handing a job over costs a deque append and a pop. Threads sleep on a condition only when
there is nothing for them, and are woken sparingly: a batch of fast jobs wakes only the
threads it needs, since every thread woken for nothing costs a context switch and a turn
at the GIL.

With async jobs, a thread that hands one to the event loop is free again at once, so the
jobs running are counted here (at most ``size``, sync and async together) and a thread
takes a job only when there is room.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import TypeVar

from .slots import Held

T = TypeVar("T")

#: Fast jobs wake only enough threads to run a batch in about this many seconds.
WAKE_FOR_SECONDS = 0.001


class Handoff:
    """Received jobs waiting for one of ``size`` threads; ``counted``: bound the jobs
    running (see the module docstring)."""

    def __init__(self, size: int, *, counted: bool) -> None:
        self.size = size
        #: Jobs received and not yet taken by a thread.
        self.ready: deque[Held] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._idle = 0  # threads waiting on the condition
        self._waiting = 0  # jobs left in ``ready`` at the control thread's last look
        self._closing = False
        self._counted = counted
        self._running = 0

    # -- the control thread's side -------------------------------------------------------

    def put(self, held: Sequence[Held], job_seconds: float | None, starting: int = 0) -> None:
        """Queue received jobs and wake the threads they need: all of them for slow jobs;
        for fast ones (``job_seconds`` on average), enough to get through the batch in
        about :data:`WAKE_FOR_SECONDS`. The first ``starting`` must start at once (limited
        jobs, holding their start and slot): they go ahead of the jobs waiting already, and
        wake a thread each."""
        if starting:
            self.ready.extendleft(reversed(held[:starting]))
            self.ready.extend(held[starting:])
        else:
            self.ready.extend(held)
        wanted = len(held)
        if job_seconds is not None:
            wanted = min(wanted, max(starting, 1 + int(len(held) * job_seconds / WAKE_FOR_SECONDS)))
        self._wake(wanted)
        self._waiting = len(self.ready)

    def nudge(self) -> None:
        """Wake idle threads for waiting jobs that made no progress since the last look (a
        batch of fast jobs that turned out slow)."""
        waiting = len(self.ready)
        if waiting and waiting >= self._waiting:
            self._wake(waiting)
        self._waiting = waiting

    def take_waiting(self) -> list[Held]:
        """Take every job no thread has taken (to release it at shutdown)."""
        return take_all(self.ready)

    def close(self) -> None:
        """Threads take no more jobs; idle ones are woken to exit."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def closing(self) -> bool:
        """Whether :meth:`close` was called (read afresh: other threads set it)."""
        return self._closing

    def _wake(self, wanted: int) -> None:
        with self._cond:
            if self._idle:
                self._cond.notify(min(self._idle, wanted))

    # -- the job threads' side -----------------------------------------------------------

    def take(self, block: bool = True) -> Held | None:
        """The next job, waiting for one if ``block``; None once closing (or, not
        blocking, when none can start now)."""
        ready = self.ready
        if not self._counted:  # the threads alone bound what runs: pop without a lock
            while not self.closing():
                try:
                    return ready.popleft()
                except IndexError:
                    pass
                with self._cond:
                    if self.closing():
                        break
                    if not ready:
                        self._sleep()
            return None
        with self._cond:
            while not self.closing():
                if ready and self._running < self.size:
                    self._running += 1
                    return ready.popleft()
                if not block:
                    break
                self._sleep()
        return None

    def ended(self) -> None:
        """A job taken ended, or was let go: with counting, room for one more."""
        if self._counted:
            with self._cond:
                self._running -= 1
                if self.ready and self._idle:
                    self._cond.notify()

    def _sleep(self) -> None:
        self._idle += 1
        try:
            self._cond.wait()
        finally:
            self._idle -= 1


def take_all(queue: deque[T]) -> list[T]:
    """Everything in ``queue``, popped one at a time (other threads append meanwhile)."""
    taken: list[T] = []
    while True:
        try:
            taken.append(queue.popleft())
        except IndexError:
            return taken
