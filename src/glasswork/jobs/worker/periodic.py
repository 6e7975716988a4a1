"""PeriodicFirer: enqueue periodic jobs on their schedules, from a thread of its own.

Each fire enqueues the job on the worker's ``periodic_queue``, so it runs with the usual
retries and dead letters. Drivers with periodic claims
(:class:`~glasswork.jobs.drivers.contract.PeriodicClaims`: SQLite, PostgreSQL) let exactly
one of many workers fire each time; with others, run one worker with ``periodic=True``. A
thread of its own, so a long poll or a slow settle on the control thread never delays a
fire.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..drivers.contract import PeriodicClaims, QueueDriver
from ..message import JobMessage
from .summary import WorkerSummary

if TYPE_CHECKING:
    from ..execution import JobRegistry
    from ..schedules import CronSchedule, RateSchedule


def schedules_of(registry: JobRegistry) -> dict[str, RateSchedule | CronSchedule]:
    """The schedules of the registry's periodic jobs (a bad one raises, naming its job)."""
    from ..schedules import schedule_of

    found = {}
    for job in registry:
        schedule = schedule_of(job) if job.periodic else None
        if schedule is not None:
            found[job.name] = schedule
    return found


class PeriodicFirer:
    """Fires ``schedules`` until :meth:`stop`; counts fires in ``summary.fired``."""

    def __init__(
        self,
        driver: QueueDriver,
        schedules: Mapping[str, RateSchedule | CronSchedule],
        queue: str,
        summary: WorkerSummary,
        log: logging.Logger,
        claims: PeriodicClaims | None = None,
    ) -> None:
        """``claims``: the driver as :class:`PeriodicClaims` (None: it cannot claim fires,
        so every worker firing fires)."""
        self.driver = driver
        self.claims = claims
        self.schedules = dict(schedules)
        self.queue = queue
        self.summary = summary
        self.log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="glasswork-periodic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        claim = self.claims.claim_periodic if self.claims is not None else None
        now = datetime.now(UTC)
        upcoming = {name: s.next_after(now) for name, s in self.schedules.items()}
        while not self._stop.is_set():
            name, fire_at = min(upcoming.items(), key=lambda item: item[1])
            delay = (fire_at - datetime.now(UTC)).total_seconds()
            if delay > 0:
                self._stop.wait(min(delay, 60.0))  # re-check: clocks can jump
                continue
            upcoming[name] = self.schedules[name].next_after(fire_at)
            try:
                if claim is not None and not claim(name, fire_at):
                    continue  # another worker fired this one
                self.driver.enqueue(JobMessage.create(name, None, queue=self.queue))
            except Exception:
                self.log.exception("could not fire periodic job %s due at %s", name, fire_at)
                continue
            self.summary.fired += 1
            self.log.info(
                "fired periodic job %s (due %s, next %s)",
                name,
                fire_at.isoformat(),
                upcoming[name].isoformat(),
            )
