"""Settler: turns finished jobs' outcomes into driver calls, in batches, on the control thread.

Done/Discard → ack, Retry → nack(delay), DeadLetter → the driver's dead letter, then ack;
acks go in batches where the driver can (:class:`~glasswork.jobs.drivers.contract.BatchAck`).
With a status store (:class:`~glasswork.jobs.drivers.contract.StatusStore`), how a job ended
goes with its acknowledgement: Done/Discard/Cancelled → ``finish_many`` (in batches, instead
of the ack), Retry → ``record_retry`` then nack, DeadLetter → dead letter, ack, then
``finish_many`` records it (only); a delivery not run (:class:`~.status.Skipped`) → ack;
a delivery its flow limits held back (:class:`~.limits.Throttled`) → nothing (the driver
put it back); released jobs (shutdown) → ``release_many`` where the driver can hand jobs back
(:class:`~glasswork.jobs.drivers.contract.HandBack`: the delivery does not count as an
attempt), else ``nack_many`` (:class:`~glasswork.jobs.drivers.contract.BatchNack`), else
nack one by one with no delay. Every count of the run's
:class:`WorkerSummary` is kept here, on one thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..drivers.contract import Consuming, QueueDriver, capabilities_of
from ..drivers.records import FinalStatus, ReceivedMessage
from ..errors import ConfigurationError
from ..execution import DeadLetter, DeadLetterSender, Retry, send_to_dead_letter
from ..idempotency.step import Duplicate
from ..outcomes import final_status, retry_note
from .limits import Throttled
from .pool import Finished
from .slots import Held
from .status import Skipped
from .summary import WorkerSummary

Batch = Callable[[Sequence[ReceivedMessage]], Any]
#: Longest pause before settling again after the driver refused.
MAX_RETRY_PAUSE = 2.0
#: Seconds to keep trying refused outcomes when the lease length is unknown.
DEFAULT_GIVE_UP = 30.0


class Retries:
    """When the retries a run scheduled come due (monotonic times), so a run until empty
    can wait for the ones due soon and count the others."""

    def __init__(self) -> None:
        self._due: list[float] = []

    def add(self, due: float) -> None:
        self._due.append(due)

    def clear(self) -> None:
        self._due.clear()

    def drop_due(self, by: float) -> None:
        """Forget the retries due by ``by``: a receive after that found (or ran) them."""
        self._due = [d for d in self._due if d > by]

    def due_within(self, until: float) -> bool:
        return any(d <= until for d in self._due)

    def __len__(self) -> int:
        return len(self._due)


class Settler:
    """Collects outcomes from the job threads and settles them with the driver."""

    def __init__(self, driver: QueueDriver, summary: WorkerSummary, log: logging.Logger) -> None:
        self.driver = driver
        self.summary = summary
        self.log = log
        # Whether the driver's dead_letter takes the traceback: decided once, here.
        self._dead_letters = DeadLetterSender(driver)
        #: Moving average of job run time in seconds (None until a job finished).
        self.job_seconds: float | None = None
        #: The same of jobs with flow limits, kept when ``times_limited_jobs`` is set.
        self.limited_seconds: float | None = None
        self.times_limited_jobs = False
        caps = capabilities_of(driver)
        if caps.consuming is None:
            raise ConfigurationError(cannot_consume(driver))
        self._consuming: Consuming = caps.consuming
        self._ack_many: Batch | None = caps.batch_ack.ack_many if caps.batch_ack else None
        self._release_many: Batch | None = (
            caps.hand_back.release_many
            if caps.hand_back
            else caps.batch_nack.nack_many
            if caps.batch_nack
            else None
        )
        self._status = caps.status
        self._acks: list[ReceivedMessage] = []
        self._nacks: list[tuple[ReceivedMessage, float, tuple[str, str | None] | None]] = []
        self._dead: list[tuple[ReceivedMessage, DeadLetter, FinalStatus | None]] = []
        #: Ended jobs for ``finish_many``; ``_records`` only record (dead-lettered, acked).
        self._finishes: list[tuple[ReceivedMessage, FinalStatus]] = []
        self._records: list[tuple[ReceivedMessage, FinalStatus]] = []
        #: The retries this run scheduled, by when they come due.
        self.retries = Retries()
        #: Seconds to keep trying outcomes the driver refuses (the worker sets it to the
        #: lease length once known).
        self.give_up_after = DEFAULT_GIVE_UP
        self._tries = 0
        self._failing_since = 0.0
        self._retry_at = 0.0

    def collect(self, finished: Sequence[Finished]) -> None:
        """Count finished jobs and queue their driver calls."""
        if self.times_limited_jobs:
            self._time_limited(finished)
        if self._status is not None:
            self._collect_with_status(finished)
            return
        counts = self.summary.counts
        average = self.job_seconds
        for held, outcome, seconds, _ in finished:
            average = seconds if average is None else 0.8 * average + 0.2 * seconds
            if outcome is None:
                counts["errors"] += 1
                continue
            counts[outcome.kind] += 1
            if isinstance(outcome, Throttled):
                continue  # put back by the driver already: nothing to settle
            if isinstance(outcome, Retry):
                self._nacks.append((held.received, outcome.delay, None))
            elif isinstance(outcome, DeadLetter):
                self._dead.append((held.received, outcome, None))
            else:  # Done, Discard, Cancelled, Skipped
                self._acks.append(held.received)
        self.job_seconds = average

    def _collect_with_status(self, finished: Sequence[Finished]) -> None:
        counts = self.summary.counts
        average = self.job_seconds
        for held, outcome, seconds, ctx in finished:
            if outcome is None:
                counts["errors"] += 1
                continue
            counts[outcome.kind] += 1
            received = held.received
            if isinstance(outcome, Throttled):
                continue  # put back by the driver already, its status untouched
            if isinstance(outcome, Skipped):
                self._acks.append(received)  # not run: its state was recorded already
                continue
            average = seconds if average is None else 0.8 * average + 0.2 * seconds
            if isinstance(outcome, Retry):
                self._nacks.append((received, outcome.delay, retry_note(outcome.error)))
            elif isinstance(outcome, DeadLetter):
                # A body that is no job has no status to record.
                final = final_status(outcome, ctx) if outcome.message is not None else None
                self._dead.append((received, outcome, final))
            elif isinstance(outcome, Duplicate):
                self._acks.append(received)  # the run that completed its key recorded it
            else:  # Done, Discard, Cancelled
                self._finishes.append((received, final_status(outcome, ctx)))
        self.job_seconds = average

    def _time_limited(self, finished: Sequence[Finished]) -> None:
        average = self.limited_seconds
        for _, outcome, seconds, ctx in finished:
            definition = ctx.definition if ctx is not None else None
            if outcome is not None and definition is not None and definition.limits is not None:
                average = seconds if average is None else 0.8 * average + 0.2 * seconds
        self.limited_seconds = average

    def lose(self, held: Sequence[Held]) -> None:
        """Jobs that got no outcome: their leases run out and they are delivered again."""
        self.summary.counts["errors"] += len(held)

    @property
    def pending(self) -> bool:
        """Outcomes not yet handed to the driver (new ones, or ones it refused so far)."""
        return bool(self._acks or self._nacks or self._dead or self._finishes or self._records)

    def flush(self) -> None:
        """Dead letters, then acks, then nacks. What the driver refuses (a full disk, a
        network outage) is kept and tried again on later turns, backing off up to
        :data:`MAX_RETRY_PAUSE`, rather than left for its lease to run out and the job to
        run a second time; after ``give_up_after`` seconds (the lease by then has run out
        anyway) it is dropped, and the jobs are delivered again."""
        now = time.monotonic()
        if not self.pending or now < self._retry_at:
            return
        sends = [self._send_dead(), self._send_acks()]
        if self._status is not None:
            sends.append(self._send_finishes())
        sends.append(self._send_nacks())
        errors = [e for e in sends if e]
        if not errors:
            self._tries = 0
            return
        self._tries += 1
        if self._tries == 1:
            self._failing_since = now
        held = len(self._acks) + len(self._nacks) + len(self._dead) + len(self._finishes)
        if now - self._failing_since >= self.give_up_after:
            self.log.error(
                "giving up settling %d finished job(s) after %.0fs of refusals (%s); they "
                "will be delivered again when their leases run out",
                held,
                now - self._failing_since,
                errors[0],
            )
            self._acks, self._nacks, self._dead = [], [], []
            self._finishes, self._records = [], []
            self._tries = 0
            return
        pause = min(MAX_RETRY_PAUSE, 0.05 * 2**self._tries)
        self._retry_at = now + pause
        self.log.error(
            "could not settle %d finished job(s) with the driver (%s); trying again in %.1fs",
            held,
            errors[0],
            pause,
            exc_info=errors[0] if self._tries == 1 else None,
        )

    def _send_dead(self) -> Exception | None:
        dead, self._dead = self._dead, []
        for received, outcome, final in dead:
            # False: the send failed (and was logged): keep the job, unacknowledged.
            if send_to_dead_letter(
                self._dead_letters, received.body, outcome, received.queue, self.log
            ):
                self._acks.append(received)
                if final is not None:
                    self._records.append((received, final))
            else:
                self._dead.append((received, outcome, final))
        return RuntimeError("the dead-letter send failed") if self._dead else None

    def _send_finishes(self) -> Exception | None:
        """Ended jobs' statuses, with their acknowledgements (dead-lettered ones', acked
        already, only recorded: after their acks, so the store never acks them again)."""
        assert self._status is not None
        finishes = self._finishes
        if self._records and not self._acks:
            finishes = finishes + self._records
            self._records = []
        if not finishes:
            return None
        self._finishes = []
        try:
            self._status.finish_many(finishes)
        except Exception as exc:
            self._finishes = finishes
            return exc
        return None

    def _send_acks(self) -> Exception | None:
        acks, self._acks = self._acks, []
        if not acks:
            return None
        try:
            if self._ack_many is not None:
                self._ack_many(acks)
            else:
                while acks:
                    self._consuming.ack(acks[-1])
                    acks.pop()
        except Exception as exc:
            self._acks = acks
            return exc
        return None

    def _send_nacks(self) -> Exception | None:
        nacks, self._nacks = self._nacks, []
        while nacks:
            received, delay, note = nacks[-1]
            try:
                if note is not None:
                    assert self._status is not None
                    self._status.record_retry(received, *note)
                self._consuming.nack(received, delay)
            except Exception as exc:
                self._nacks = nacks
                return exc
            nacks.pop()
            self.retries.add(time.monotonic() + delay)  # due no earlier than this
        return None

    def release(self, held: Sequence[Held], why: str) -> None:
        """Hand jobs back to run again at once (shutdown); not counted as attempts where the
        driver can tell a release from a failure."""
        if not held:
            return
        messages = [h.received for h in held]
        try:
            if self._release_many is not None:
                self._release_many(messages)
            else:
                for received in messages:
                    self._consuming.nack(received, 0.0)
        except Exception:
            self.log.exception(
                "could not release %d job(s); they run again when their leases run out",
                len(messages),
            )
            return
        self.summary.counts["released"] += len(messages)
        self.log.warning("released %d job(s) to run again: %s", len(messages), why)


def cannot_consume(driver: QueueDriver) -> str:
    """Why no worker can run on ``driver``."""
    return (
        f"the {driver.name} driver cannot receive jobs (it has no receive, ack and nack: "
        "see docs/drivers.md), so no worker can run on it"
    )
