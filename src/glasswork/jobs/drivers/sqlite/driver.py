"""SQLiteQueueDriver: a durable queue in one SQLite file, shared safely by several processes.

A job row lives from enqueue until ack. ``visible_at`` is when it may next be claimed: its due
time while it waits, the end of its lease while a worker holds it. A claim leases the row in
one write transaction, so two workers never hold one job; a worker that dies simply lets its
lease run out and the job is claimed again. The receipt is ``(id, attempts)``: a worker
whose lease expired and was re-claimed cannot ack or release the new holder's delivery (ids
are AUTOINCREMENT, never reused, for the same reason; so are dead-letter ids, which operators
copy into tickets).

The driver is its settings and the parts it owns, each given what it needs: the file
(:class:`~.connections.QueueFile`: connections, write transactions, the disk reserve),
:mod:`.producing`, :class:`~.claims.Claims`, :mod:`.settling`,
:class:`~.dead_letters.DeadLetters`, :class:`~.outcomes.OutcomeCounts`,
:mod:`.inspection` and :class:`~.workers.WorkerRows`; a job's life is
:class:`~.status.StatusRows`' (with :mod:`.results`); the tables are :mod:`.schema`'s.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from ...durations import setting_seconds
from ...errors import ConfigurationError
from ...limits import JobLimits
from ...message import JobMessage
from ...workflows.advancing import dead_end
from ..contract import (
    BatchAck,
    BatchNack,
    ClaimLimits,
    Closing,
    Consuming,
    DeadLetterAdmin,
    DeadLetterSearch,
    Debounce,
    FlowLimits,
    HandBack,
    Heartbeats,
    IdempotencyProvider,
    JobFinder,
    LeaseExtension,
    OutcomeStore,
    PendingCount,
    PeriodicClaims,
    PeriodicFire,
    QueueCounts,
    QueueDriver,
)
from ..records import (
    DeadLetterPage,
    DeadLetterQuery,
    DeadLetterRecord,
    EnqueueResult,
    FoundJob,
    OutcomeCount,
    QueueStats,
    ReceivedMessage,
)
from . import inspection, limits, periodic, settling
from .claims import Claims
from .connections import QueueFile
from .dead_letters import DeadLetters, add_dead
from .files import check_synchronous, file_path
from .limited_claims import LimitedClaims
from .outcomes import OutcomeCounts
from .producing import debounce, insert
from .reserve import DEFAULT_RESERVE, DiskReserve
from .schema import SCHEMA_VERSION
from .status import StatusRows
from .workers import WorkerRows
from .workflows import WorkflowRows

if TYPE_CHECKING:
    from ...idempotency.sqlite import SQLiteIdempotencyStore

__all__ = ["SCHEMA_VERSION", "SQLiteQueueDriver"]


class SQLiteQueueDriver(
    QueueDriver,
    Consuming,
    BatchAck,
    BatchNack,
    HandBack,
    LeaseExtension,
    PeriodicClaims,
    QueueCounts,
    PendingCount,
    DeadLetterAdmin,
    DeadLetterSearch,
    OutcomeStore,
    JobFinder,
    Heartbeats,
    IdempotencyProvider,
    Closing,
    FlowLimits,
    Debounce,
    ClaimLimits,
    WorkflowRows,
    StatusRows,
):
    """A durable queue in a SQLite file: no server, delays of any length, safe across processes.

    >>> driver = SQLiteQueueDriver("jobs.db", visibility_timeout=30)   # doctest: +SKIP

    * ``visibility_timeout``: seconds a claimed job stays hidden before it is delivered again
      (the worker extends the lease of jobs that run longer);
    * ``max_lost_leases``: deliveries whose lease ran out (the worker died or stalled) before
      the job is dead-lettered instead of crashing workers forever;
    * ``busy_timeout``: seconds to wait for another process's write lock;
    * ``synchronous``: ``"NORMAL"`` survives process crashes (WAL); ``"FULL"`` also survives
      power loss, at some cost per commit;
    * ``poll_interval``: how often a waiting :meth:`receive` looks for new jobs;
    * ``create``: make the file if it does not exist (False: a missing file is a
      :class:`ConfigurationError`, for tools that only inspect a queue);
    * ``disk_reserve``: bytes held in ``<path>-reserve`` (at most a 16th of the file
      system), given back when the disk fills so workers can still claim and finish the
      jobs already stored (0: none).

    Jobs are claimed highest ``priority`` first, then oldest due. Each job's life is kept
    (:class:`~glasswork.jobs.drivers.contract.StatusStore`, see :mod:`.status`): a queued
    job's state is read off its row, an ended one's is written with its removal and kept for
    its ``result_ttl``.

    A file that cannot be used (a directory, a read-only mount) raises
    :class:`ConfigurationError` saying why, at construction. Each thread gets its own
    connection; the object may be shared between threads.
    """

    name = "sqlite"
    claims_by_priority = True
    fairness = "round-robin"
    #: Seconds of outcome history kept.
    outcome_retention: float = 86400.0
    #: Whether workers on this driver record outcome counts (set False before building a
    #: worker to leave the outcome log out of its chain; the dashboard then has no chart).
    records_outcomes: bool = True

    def __init__(
        self,
        path: str | os.PathLike[str] = "glasswork.db",
        *,
        visibility_timeout: float = 30.0,
        max_lost_leases: int = 5,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
        poll_interval: float = 0.05,
        create: bool = True,
        disk_reserve: int = DEFAULT_RESERVE,
    ) -> None:
        self.path = file_path(path, "SQLiteQueueDriver")
        visibility_timeout = setting_seconds(visibility_timeout, "visibility_timeout")
        busy_timeout = setting_seconds(busy_timeout, "busy_timeout", zero=True)
        poll_interval = setting_seconds(poll_interval, "poll_interval")
        if max_lost_leases < 1:
            raise ConfigurationError(f"max_lost_leases must be at least 1, got {max_lost_leases}")
        if isinstance(disk_reserve, bool) or not isinstance(disk_reserve, int) or disk_reserve < 0:
            raise ConfigurationError(
                f"disk_reserve must be a number of bytes (0 for none), got {disk_reserve!r}"
            )
        self.synchronous = check_synchronous(synchronous)
        self.visibility_timeout = float(visibility_timeout)
        self.max_lost_leases = max_lost_leases
        self.busy_timeout = float(busy_timeout)
        self.poll_interval = poll_interval
        self.create = create
        reserve = DiskReserve(self.path, disk_reserve)
        self.file = QueueFile(
            self.path,
            busy_timeout=self.busy_timeout,
            synchronous=self.synchronous,
            create=create,
            reserve=reserve,
        )
        self._claims = Claims(self.file, max_lost_leases=max_lost_leases)
        self._dead_letters = DeadLetters(self.file)
        self._outcomes = OutcomeCounts(self.file)
        self._workers = WorkerRows(self.file)
        self.file.conn()  # create the file and schema now, so errors show at construction
        if create:
            reserve.keep()

    def __repr__(self) -> str:
        return f"SQLiteQueueDriver({str(self.path)!r})"

    def close(self) -> None:
        """Close every connection this driver opened (in all threads)."""
        self.file.close()

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (for tests and tools that read the file directly)."""
        return self.file.conn()

    def _transaction(
        self, conn: sqlite3.Connection | None = None
    ) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction (for tests and tools that write the file directly)."""
        return self.file.transaction(conn)

    # -- producing: see .producing ---------------------------------------------------------

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        return insert(self.file, [message], time.time())[0]

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return insert(self.file, [message], time.time() + max(0.0, delay_seconds))[0]

    def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        return insert(self.file, [message], run_at.timestamp())[0]

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        """Insert every message in one transaction: all are stored, or (on a duplicate unique
        key) none."""
        return insert(self.file, messages, time.time() + max(0.0, delay_seconds))

    def enqueue_debounced(self, message: JobMessage, window_seconds: float) -> EnqueueResult:
        """Store ``message`` due ``window_seconds`` from now, superseding the debounced job
        that holds its unique key, in one write transaction (see :func:`.producing.debounce`)."""
        return debounce(self.file, message, max(0.0, window_seconds))

    # -- consuming: see .claims and .settling ----------------------------------------------

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """Claim up to ``max_messages`` due jobs, oldest due first, leasing each for
        ``visibility_timeout`` seconds; polls every ``poll_interval`` up to ``wait_seconds``."""
        deadline = time.monotonic() + wait_seconds
        while True:
            received, next_due = self._claims.claim(queues, max_messages, self.visibility_timeout)
            remaining = deadline - time.monotonic()
            if received or remaining <= 0:
                return received
            pause = self.poll_interval
            if next_due is not None:
                pause = min(pause, max(0.001, next_due - time.time()))
            time.sleep(min(pause, remaining))

    def ack(self, received: ReceivedMessage) -> None:
        settling.ack(self.file, [received])

    def ack_many(self, received: Sequence[ReceivedMessage]) -> None:
        """Remove finished jobs in one transaction (deliveries whose lease another worker
        has since taken are left alone)."""
        settling.ack(self.file, received)

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        settling.nack(self.file, [received], delay_seconds)

    def nack_many(self, received: Sequence[ReceivedMessage], delay_seconds: float = 0.0) -> None:
        """Release jobs to be delivered again after ``delay_seconds``, in one transaction."""
        settling.nack(self.file, received, delay_seconds)

    def release_many(self, received: Sequence[ReceivedMessage]) -> None:
        """Hand back jobs a worker could not finish (it is shutting down): due again at once,
        and this delivery does not count as an attempt, so a job is not dead-lettered for
        clean shutdowns."""
        settling.hand_back(self.file, received)

    def acquire(
        self, received: ReceivedMessage, job_name: str, key: str | None, job_limits: JobLimits
    ) -> float | None:
        """Start a limited job, or put it back until it may: a transaction of its own (see
        :mod:`.limits`; workers on this driver take limits in the claim instead)."""
        return limits.acquire(self.file, received, job_name, key, job_limits)

    def limited_claims(self, job_limits: Mapping[str, JobLimits]) -> LimitedClaims:
        """Claims that admit the deliveries of these limited jobs in the claim's own
        transaction (see :mod:`.limited_claims`)."""
        return LimitedClaims(self, job_limits)

    def throttle_counts(self) -> dict[str, int]:
        """Deliveries each job's limits held back, by every worker on this file."""
        return limits.throttle_counts(self.file.conn())

    def extend_leases(self, received: Sequence[ReceivedMessage], seconds: float) -> int:
        """Keep jobs hidden for ``seconds`` more (the worker calls this for long-running jobs).
        Returns how many leases were still held."""
        return settling.extend(self.file, received, seconds)

    def claim_periodic(self, job_name: str, fire_at: datetime) -> bool:
        """Claim the firing of periodic job ``job_name`` due at ``fire_at``: True for exactly
        one caller across every worker sharing this file."""
        return periodic.claim(self.file, job_name, fire_at)

    def last_periodic_fire(self, job_name: str) -> datetime | None:
        """The latest claimed fire of periodic job ``job_name`` (None: never)."""
        return periodic.last_fire(self.file, job_name)

    def fire_periodic(
        self, job_name: str, fire_at: datetime, message: JobMessage, *, overlap: bool = True
    ) -> PeriodicFire:
        """Claim the fire and enqueue ``message`` in one transaction (see
        :class:`~glasswork.jobs.drivers.contract.PeriodicClaims`)."""
        return periodic.fire(self.file, job_name, fire_at, message, overlap)

    def idempotency_store(self) -> SQLiteIdempotencyStore:
        """Idempotency keys in this queue's file (table ``glasswork_idempotency``)."""
        from ...idempotency.sqlite import SQLiteIdempotencyStore

        return SQLiteIdempotencyStore(
            self.path, busy_timeout=self.busy_timeout, synchronous=self.synchronous
        )

    # -- dead letters: see .dead_letters ----------------------------------------------------

    def dead_letter(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool:
        step = dead_end(body, reason)
        if step is None:
            self._dead_letters.add(body, reason, queue, traceback)
            return True

        def keep(conn: sqlite3.Connection) -> None:
            # A workflow step: its workflow learns of it with the dead letter, at once.
            add_dead(conn, body, reason, queue, time.time(), traceback)
            self.advance_workflows(conn, [step])

        self.file.write(keep)
        return True

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetterRecord]:
        """Dead letters, oldest first (``queue`` filters)."""
        return self._dead_letters.records(queue, limit)

    def redrive(self, ids: Sequence[int | str] | None = None, *, queue: str | None = None) -> int:
        """Move dead letters back onto their queues to run again now, with a fresh attempt
        count: the given ``ids``, or all (of ``queue``, when given). A job whose unique key is
        held by a pending job stays in the dead letter. Returns how many moved."""
        return self._dead_letters.redrive(ids, queue=queue)

    def purge_dead_letters(
        self, ids: Sequence[int | str] | None = None, *, queue: str | None = None
    ) -> int:
        """Delete dead letters (the given ``ids``, or all; of ``queue``, when given). Returns
        how many."""
        return self._dead_letters.purge(ids, queue=queue)

    def dead_letter_page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """The dead letters ``query`` matches, newest first, after ``cursor``; their count and
        groups come from the same snapshot."""
        return self._dead_letters.page(query, cursor, limit)

    def find_dead_letter(self, record_id: str) -> DeadLetterRecord | None:
        """The dead letter with this id (None: there is none, or the id is not a number)."""
        return self._dead_letters.find(record_id)

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """Move every dead letter ``query`` matches back onto its queue, in one transaction;
        one whose unique key a pending job holds stays. Returns how many moved."""
        return self._dead_letters.redrive_matching(query)

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """Delete every dead letter ``query`` matches, in one transaction; returns how many."""
        return self._dead_letters.purge_matching(query)

    # -- inspecting: see .inspection, .outcomes, .workers ----------------------------------

    def stats(self) -> dict[str, QueueStats]:
        """Counts per queue, sorted by queue name."""
        return inspection.stats(self.file.conn())

    def pending_count(self, queues: Sequence[str] | None = None) -> int:
        """Jobs not yet finished (ready, delayed or in flight) in ``queues`` (None: all)."""
        return inspection.pending_count(self.file.conn(), queues)

    def find_job(self, job_id: str) -> list[FoundJob]:
        """The pending and dead-lettered copies of job ``job_id`` (a table scan: job ids are
        not indexed, so that enqueueing pays nothing for lookups)."""
        return inspection.find_job(self.file.conn(), job_id)

    def record_outcomes(self, counts: Sequence[OutcomeCount]) -> None:
        """Add outcome counts (one transaction), dropping minutes past the retention."""
        self._outcomes.record(counts, self.outcome_retention)

    def outcome_history(self, since: datetime) -> list[OutcomeCount]:
        """Outcome counts of the minutes from ``since`` on, oldest first."""
        return self._outcomes.history(since)

    def heartbeat_store(self) -> WorkerRows:
        """Where workers beat: a table in this driver's file."""
        return self._workers
