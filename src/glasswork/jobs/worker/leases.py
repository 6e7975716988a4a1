"""Leases: keep the jobs a worker holds hidden from other workers while they run.

A received job is leased for the driver's ``visibility_timeout`` (SQLite: its setting; SQS:
the queue's ``VisibilityTimeout``). Drivers with lease extension
(:class:`~glasswork.jobs.drivers.contract.LeaseExtension`) let the worker renew it:
every third of the lease, jobs held that long are extended by a full lease, so a job longer
than its lease is not delivered to a second worker. A job taken from its thread (timed out,
released) is no longer held, so its lease is no longer renewed.
"""

from __future__ import annotations

import logging

from ..drivers.contract import LeaseExtension, lease_seconds
from .pool import JobPool

#: Seconds before trying again to read a lease length that could not be read (SQS).
RETRY_LOOKUP = 5.0


class Leases:
    """The worker's lease keeper; :meth:`keep_alive` runs on every turn of its loop."""

    def __init__(self, driver: LeaseExtension | None, log: logging.Logger) -> None:
        """``driver``: the driver as :class:`LeaseExtension`, None when it cannot extend."""
        self.driver = driver
        self.log = log
        self._extend = driver.extend_leases if driver is not None else None
        self.seconds: float | None = None
        self._next = 0.0

    def due_at(self) -> float | None:
        """When :meth:`keep_alive` next has something to do (None: never)."""
        return self._next if self._extend is not None else None

    def keep_alive(self, pool: JobPool, now: float) -> None:
        if self._extend is None or now < self._next:
            return
        if self.seconds is None and not self._look_up(now):
            return
        assert self.seconds is not None
        every = self.seconds / 3
        self._next = now + every
        cutoff = now - every
        held = [s.running for s in pool.slots]
        held += list(pool.handoff.ready)  # a C-level copy: threads pop from it meanwhile
        due = [h for h in held if h is not None and h.leased_at <= cutoff]
        if not due:
            return
        try:
            kept = self._extend([h.received for h in due], self.seconds)
        except Exception:
            self.log.exception("could not extend the leases of %d job(s)", len(due))
            return
        for h in due:
            h.leased_at = now
        if kept < len(due):
            self.log.warning(
                "%d running job(s) lost their lease (it ran out before it could be extended); "
                "another worker may run them again",
                len(due) - kept,
            )

    def _look_up(self, now: float) -> bool:
        assert self.driver is not None
        try:
            seconds = lease_seconds(self.driver)
        except Exception:
            self.log.exception(
                "could not read the driver's lease length; trying again in %.0fs", RETRY_LOOKUP
            )
            self._next = now + RETRY_LOOKUP
            return False
        if not isinstance(seconds, int | float) or seconds <= 0:
            self._extend = None  # nothing to renew by
            return False
        self.seconds = float(seconds)
        return True
