"""What the control loop asks the driver for: how many jobs to receive now (with a little
prefetch for fast jobs), and receiving with a backoff while the driver fails; with flow
limits taken in the claim, no more deliveries of limited jobs than the worker can start
soon (see :mod:`.limits`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ..drivers.contract import Consuming
from ..drivers.records import ReceivedMessage
from .limits import LimitedReceiver
from .pool import JobPool

#: Jobs that take less than this on average (seconds) let the worker hold extra messages.
PREFETCH_MAX_JOB_SECONDS = 0.05
#: Longest pause between receives after the driver failed (say, a full disk or a network
#: outage): short, so jobs are picked up again soon after it recovers.
MAX_RECEIVE_BACKOFF = 2.0


class Receiver:
    """Receives for one worker: sizes each receive and backs off after failures."""

    def __init__(
        self,
        driver: Consuming,
        queues: Sequence[str] | None,
        concurrency: int,
        batch_size: int,
        poll_interval: float,
        log: logging.Logger,
        limited: LimitedReceiver | None = None,
    ) -> None:
        self.driver = driver
        #: Receives holding the worker's flow limits in the claim (None: plain receives).
        self.limited = limited
        #: How many deliveries the last receive returned first that must start at once
        #: (those of limited jobs: they hold their start and slot from the claim on).
        self.starting = 0
        #: Whether the last receive left deliveries of limited jobs due for want of free
        #: threads: no prefetching until they have one.
        self.waiting = False
        #: How many deliveries of limited jobs the next receive may take (see wanted()).
        self.limited_room = 0
        self.queues = queues
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.log = log
        #: No receive before this (monotonic time): set after a failure.
        self.due_at = 0.0
        self._failures = 0

    def wanted(
        self, pool: JobPool, job_seconds: float | None, limited_seconds: float | None = None
    ) -> int:
        """How many jobs to receive now: none while the worker holds enough. Fast jobs
        (under 50 ms on average) get extra messages held so a thread that ends a job starts
        the next at once; slow ones do not, so one worker never sits on jobs another worker
        could run.

        With limits taken in the claim, deliveries of limited jobs are held to
        :attr:`limited_room`: the threads free now, and for limited jobs that are fast
        themselves (``limited_seconds`` on average) about one poll interval of their work
        per thread more, since each holds its start and slot from the claim on."""
        holding = pool.holding()
        if self.limited is not None:
            self.limited_room = max(0, self.concurrency + self._prefetch(limited_seconds) - holding)
            if self.waiting:
                # Limited deliveries wait at the head of the queue (the last claim left
                # some): claim only what they may take.
                pool.refill_at = self._prefetch(limited_seconds) // 2
                return min(self.limited_room, self.batch_size)
        prefetch = self._prefetch(job_seconds)
        pool.refill_at = prefetch // 2
        room = self.concurrency + prefetch - holding
        if room <= 0:
            return 0
        # A thread is idle: fetch at once. Otherwise wait for room for half a batch, so
        # claims and acks go to the driver in batches rather than one job at a time.
        low_water = max(1, min(self.batch_size, self.concurrency + prefetch) // 2)
        if holding < self.concurrency or room >= low_water:
            return min(room, self.batch_size)
        return 0

    def _prefetch(self, job_seconds: float | None) -> int:
        """Messages held beyond the threads for jobs taking ``job_seconds`` on average:
        about one poll interval's worth of work per thread, within two batches; none for
        jobs of 50 ms or more."""
        if job_seconds is None or job_seconds >= PREFETCH_MAX_JOB_SECONDS:
            return 0
        per_thread = self.poll_interval / max(job_seconds, 1e-6)
        return min(2 * self.batch_size, int(self.concurrency * per_thread))

    def receive(self, count: int, wait: float) -> list[ReceivedMessage] | None:
        """Up to ``count`` jobs, long-polling up to ``wait`` seconds (at most
        :attr:`limited_room` of limited jobs); None when the driver failed (logged, with the
        traceback the first time), and no receive is due before :attr:`due_at`."""
        self.starting = 0
        try:
            if self.limited is None:
                batch = self.driver.receive(self.queues, count, wait)
            else:
                claimed = self.limited.receive(self.queues, count, wait, self.limited_room)
                batch, self.starting = claimed.received, claimed.limited
                # Limited deliveries still wait at the head of the queue: it left some, or
                # (claiming only for the threads free) took nothing else.
                full = claimed.limited == len(batch) == count
                self.waiting = claimed.left > 0 or (self.waiting and full)
        except Exception as exc:
            self._failures += 1
            pause = min(MAX_RECEIVE_BACKOFF, 0.05 * 2**self._failures)
            if self._failures == 1:
                self.log.exception("receive failed; trying again in %.1fs", pause)
            else:
                self.log.error(
                    "receive failed again (%d times): %s; trying again in %.1fs",
                    self._failures,
                    exc,
                    pause,
                )
            self.due_at = time.monotonic() + pause
            return None
        self._failures = 0
        return batch
