"""PeriodicFirer: enqueue periodic jobs on their schedules, from a thread of its own.

Each fire enqueues the job on the worker's ``periodic_queue``, so it runs with the usual
retries and dead letters. Drivers with periodic claims
(:class:`~glasswork.jobs.drivers.contract.PeriodicClaims`: SQLite, PostgreSQL) let exactly
one of many workers fire each time, record the last fire (so a worker that starts after an
outage catches up as the job's ``catchup`` says) and enqueue in the claim's transaction (so
``overlap=False`` holds across workers); with others, run one worker with ``periodic=True``.
A thread of its own, so a long poll or a slow settle on the control thread never delays a
fire. Missed and skipped fires are logged (WARNING) and counted by the metrics sinks that
count fires (:class:`~glasswork.jobs.metrics.PeriodicFireSink`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..drivers.contract import PeriodicClaims, PeriodicFire, QueueDriver
from ..errors import ConfigurationError
from ..message import JobMessage
from ..metrics.sink import PeriodicFireSink
from ..schedules import PeriodicPolicy, catch_up
from .summary import WorkerSummary

if TYPE_CHECKING:
    from ..execution import JobRegistry
    from ..schedules import CatchUp, CronSchedule, RateSchedule

#: Fire times listed in one log line at most (the first and last ones are always named).
_LISTED = 10


@dataclass(frozen=True, slots=True)
class PeriodicPlan:
    """One periodic job as the firer sees it: when it fires, and its catch-up and overlap."""

    schedule: RateSchedule | CronSchedule
    policy: PeriodicPolicy


def schedules_of(
    registry: JobRegistry, claims: PeriodicClaims | None = None
) -> dict[str, PeriodicPlan]:
    """The plans of the registry's periodic jobs (a bad schedule raises, naming its job).

    Without ``claims`` (the driver records no fire), a job asking for catch-up or for no
    overlap raises :class:`ConfigurationError`: the worker could not honour either."""
    from ..schedules import schedule_of

    found = {}
    for job in registry:
        schedule = schedule_of(job) if job.periodic else None
        if schedule is None:
            continue
        policy = job.periodic_policy or PeriodicPolicy()
        if claims is None and (policy.catchup != "none" or not policy.overlap):
            asked = f"catchup={policy.catchup!r}" if policy.catchup != "none" else "overlap=False"
            raise ConfigurationError(
                f"periodic job {job.name!r}: {asked} needs a driver that records periodic "
                "fires (SQLite, PostgreSQL); this one cannot. On Lambda, EventBridge fires "
                "periodic jobs and misses none."
            )
        found[job.name] = PeriodicPlan(schedule, policy)
    return found


class PeriodicFirer:
    """Fires ``plans`` until :meth:`stop`; counts fires in ``summary.fired``."""

    def __init__(
        self,
        driver: QueueDriver,
        plans: Mapping[str, PeriodicPlan],
        queue: str,
        summary: WorkerSummary,
        log: logging.Logger,
        claims: PeriodicClaims | None = None,
        metrics: Sequence[object] = (),
    ) -> None:
        """``claims``: the driver as :class:`PeriodicClaims` (None: it cannot claim fires,
        so every worker firing fires). ``metrics``: the worker's sinks; those that are
        :class:`PeriodicFireSink` count the fires."""
        self.driver = driver
        self.claims = claims
        self.plans = dict(plans)
        self.queue = queue
        self.summary = summary
        self.log = log
        self.sinks = [sink for sink in metrics if isinstance(sink, PeriodicFireSink)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="glasswork-periodic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        now = datetime.now(UTC)
        upcoming = {name: self._catch_up(name, plan, now) for name, plan in self.plans.items()}
        while not self._stop.is_set():
            name, fire_at = min(upcoming.items(), key=lambda item: item[1])
            delay = (fire_at - datetime.now(UTC)).total_seconds()
            if delay > 0:
                self._stop.wait(min(delay, 60.0))  # re-check: clocks can jump
                continue
            upcoming[name] = self.plans[name].schedule.next_after(fire_at)
            if self._fire(name, fire_at) == "fired":
                self._count(name, "fired", 1)
                self.log.info(
                    "fired periodic job %s (due %s, next %s)",
                    name,
                    fire_at.isoformat(),
                    upcoming[name].isoformat(),
                )

    def _catch_up(self, name: str, plan: PeriodicPlan, now: datetime) -> datetime:
        """Handle the fires missed since the job's last recorded fire; returns its next
        fire. Only the worker whose claim wins logs and counts each missed fire."""
        if self.claims is None:
            return plan.schedule.next_after(now)
        try:
            missed = catch_up(plan.schedule, plan.policy, self.claims.last_periodic_fire(name), now)
        except Exception:
            self.log.exception("could not tell which fires of periodic job %s were missed", name)
            return plan.schedule.next_after(now)
        if missed.dropped_last is not None and self._claim(name, missed.dropped_last):
            self._count(name, "missed", missed.dropped)
            self.log.warning(
                "periodic job %s missed %d %s while no worker ran (due %s; catchup=%r): not run",
                name,
                missed.dropped,
                "fire" if missed.dropped == 1 else "fires",
                _span(missed),
                plan.policy.catchup,
            )
        ran = [fire_at for fire_at in missed.run if self._fire(name, fire_at) == "fired"]
        if ran:
            self._count(name, "caught_up", len(ran))
            self.log.warning(
                "periodic job %s: running %d %s missed while no worker ran (due %s; catchup=%r)",
                name,
                len(ran),
                "fire" if len(ran) == 1 else "fires",
                _listed(ran),
                plan.policy.catchup,
            )
        return missed.resume

    def _claim(self, name: str, dropped_last: datetime) -> bool:
        """Claim the latest dropped fire: the winner reports the dropped ones."""
        if self.claims is None:
            return False
        try:
            return self.claims.claim_periodic(name, dropped_last)
        except Exception:
            self.log.exception("could not record the missed fires of periodic job %s", name)
            return False

    def _fire(self, name: str, fire_at: datetime) -> PeriodicFire | None:
        """Claim and enqueue one fire; None when it could not be done (logged)."""
        message = JobMessage.create(name, None, queue=self.queue)
        try:
            if self.claims is None:
                self.driver.enqueue(message)
                result: PeriodicFire = "fired"
            else:
                overlap = self.plans[name].policy.overlap
                result = self.claims.fire_periodic(name, fire_at, message, overlap=overlap)
        except Exception:
            self.log.exception("could not fire periodic job %s due at %s", name, fire_at)
            return None
        if result == "fired":
            self.summary.fired += 1
        elif result == "skipped":
            self._count(name, "skipped", 1)
            self.log.warning(
                "skipped periodic job %s due at %s: its previous run has not finished "
                "(overlap=False)",
                name,
                fire_at.isoformat(),
            )
        return result

    def _count(self, name: str, outcome: str, count: int) -> None:
        for sink in self.sinks:
            try:
                sink.record_fires(name, self.queue, outcome, count)
            except Exception:
                self.log.exception("metrics sink %r failed to count periodic fires", sink)


def _span(missed: CatchUp) -> str:
    first, last = missed.dropped_first, missed.dropped_last
    if missed.dropped == 1 or first is None or last is None:
        return last.isoformat() if last is not None else "?"
    return f"{first.isoformat()} to {last.isoformat()}"


def _listed(fires: Sequence[datetime]) -> str:
    if len(fires) <= _LISTED:
        return ", ".join(f.isoformat() for f in fires)
    shown = [f.isoformat() for f in fires[: _LISTED - 1]]
    return f"{', '.join(shown)}, ... {fires[-1].isoformat()}"
