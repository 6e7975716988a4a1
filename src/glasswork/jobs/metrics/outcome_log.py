"""The outcome log: a metrics sink that counts outcomes per minute for the dashboard.

Each run's outcome is tallied in memory per (minute, queue, job name, outcome); a background
thread hands the tallies to the driver's :meth:`~glasswork.jobs.drivers.inspection.OutcomeStore.
record_outcomes` every ``flush_every`` seconds, at the end of each Lambda invocation, and
once more when the process exits. A run costs the metrics step and a dictionary increment
(1 to 4 µs; ``bench/outcome_log.py``); the driver sees one small write per interval, off
the worker's event loop.

:func:`~glasswork.jobs.metrics.metric_sinks` adds it to every worker whose driver can store
outcomes (the SQLite driver can). Counts of the last interval before a hard kill (SIGKILL,
``os._exit``) are lost: the log is for charts, not accounting.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import Counter
from datetime import UTC, datetime

from ..drivers.contract import OutcomeStore
from ..drivers.records import OutcomeCount
from ..execution import JobRun, Outcome

logger = logging.getLogger("glasswork.jobs")

Key = tuple[int, str, str, str]  # (minute as Unix time, queue, job name, outcome kind)

#: Tallies older than this (seconds) are dropped while the store keeps refusing them.
KEEP_UNFLUSHED = 3600.0
#: Flush intervals without a count after which the flushing thread ends.
IDLE_INTERVALS = 3

_live: weakref.WeakSet[OutcomeLog] = weakref.WeakSet()


class OutcomeLog:
    """Metrics sink that records each run's outcome kind into ``store`` (a driver with
    ``record_outcomes``), in per-minute counts flushed every ``flush_every`` seconds.

    >>> Worker(module=App, driver=driver, metrics=[OutcomeLog(driver)])   # doctest: +SKIP

    (Workers add one by themselves when their driver can store outcomes.)
    """

    def __init__(self, store: OutcomeStore, *, flush_every: float = 5.0) -> None:
        if not flush_every > 0:
            raise ValueError(f"flush_every must be positive seconds, got {flush_every!r}")
        self.store = store
        self.flush_every = float(flush_every)
        self._counts: Counter[Key] = Counter()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time: the thread's, or atexit's
        self._thread: threading.Thread | None = None
        self._failing = False
        _live.add(self)

    def __repr__(self) -> str:
        return f"OutcomeLog({self.store!r}, flush_every={self.flush_every:g})"

    def record(self, run: JobRun, outcome: Outcome, seconds: float) -> None:
        """Count ``outcome`` in the current minute."""
        key = (int(time.time()) // 60 * 60, run.queue, run.job_name, outcome.kind)
        with self._lock:
            self._counts[key] += 1
        if self._thread is None:
            self._start()

    def pending(self) -> dict[Key, int]:
        """Counts not yet handed to the store."""
        with self._lock:
            return dict(self._counts)

    def flush(self) -> int:
        """Hand the counts so far to the store now; returns how many keys were written. On a
        store error the counts are kept for the next flush and the error is logged."""
        with self._flushing:
            with self._lock:
                taken, self._counts = self._counts, Counter()
            if not taken:
                return 0
            rows = [
                OutcomeCount(datetime.fromtimestamp(minute, UTC), queue, name, kind, count)
                for (minute, queue, name, kind), count in sorted(taken.items())
            ]
            try:
                self.store.record_outcomes(rows)
            except Exception:
                self._keep(taken)
                if not self._failing:  # once per outage, not once per interval
                    logger.warning(
                        "could not record outcome counts (kept for the next try)", exc_info=True
                    )
                self._failing = True
                return 0
            self._failing = False
            return len(rows)

    def _keep(self, taken: Counter[Key]) -> None:
        oldest = time.time() - KEEP_UNFLUSHED
        with self._lock:
            for key, count in taken.items():
                if key[0] >= oldest:
                    self._counts[key] += count

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._flush_periodically, name="glasswork-outcome-log", daemon=True
            )
        self._thread.start()

    def _flush_periodically(self) -> None:
        # The thread ends once nothing was counted for a few intervals (the next count starts
        # it again), so a log nobody uses any more (a finished worker's) can be collected.
        idle = 0
        while True:
            time.sleep(self.flush_every)
            idle = 0 if self.flush() else idle + 1
            if idle >= IDLE_INTERVALS:
                with self._lock:
                    if not self._counts:
                        self._thread = None
                        return


@atexit.register
def _flush_all() -> None:
    for log in list(_live):
        log.flush()


def _forget_threads() -> None:
    # A forked child has none of its parent's threads: each log starts its own again.
    for log in list(_live):
        log._thread = None
        log._lock = threading.Lock()
        log._flushing = threading.Lock()


os.register_at_fork(after_in_child=_forget_threads)
