"""SQLiteQueueDriver: a durable queue in one SQLite file, shared safely by several processes.

Schema (version 4, ``PRAGMA user_version``; older files are upgraded when opened)::

    glasswork_jobs(id INTEGER PRIMARY KEY, queue, job_name, job_id, unique_key, body,
                   attempts, leased, lost, visible_at, enqueued_at)
    glasswork_dead_letters(id INTEGER PRIMARY KEY AUTOINCREMENT, queue, job_name, job_id,
                           body, reason, failed_at, traceback)  # v3: traceback; v4: ids
    glasswork_periodic(job_name PRIMARY KEY, last_fire)   # which periodic fires happened
    glasswork_outcomes(minute, queue, job_name, outcome, count)   # v2: sqlite_inspection.py
    glasswork_workers(id PRIMARY KEY, host, pid, ...)  # v4: heartbeats, sqlite_workers.py

A job row lives from enqueue until ack. ``visible_at`` is when it may next be claimed: its due
time while it waits, the end of its lease while a worker holds it. Claiming bumps
``attempts`` and pushes ``visible_at`` out by the visibility timeout inside one
``BEGIN IMMEDIATE`` transaction (``UPDATE ... RETURNING``), so two workers never hold one job;
a worker that dies simply lets its lease run out and the job is claimed again. The receipt is
``(id, attempts)``: a worker whose lease expired and was re-claimed cannot ack or release
the new holder's delivery (ids are AUTOINCREMENT, never reused, for the same reason; so are
dead-letter ids, which operators copy into tickets).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ...durations import setting_seconds
from ...errors import ConfigurationError, DuplicateJobError, EnqueueError
from ...message import JobMessage, identify
from ..contract import (
    BatchAck,
    BatchNack,
    Closing,
    Consuming,
    DeadLetterAdmin,
    DeadLetterSearch,
    HandBack,
    Heartbeats,
    IdempotencyProvider,
    JobFinder,
    LeaseExtension,
    OutcomeStore,
    PendingCount,
    PeriodicClaims,
    QueueCounts,
    QueueDriver,
)
from ..records import DeadLetterRecord, EnqueueResult, QueueStats, ReceivedMessage
from .dead_letters import SQLiteDeadLetterSearch, never_reuse_ids
from .files import check_synchronous, file_path, open_file
from .inspection import OUTCOMES_SCHEMA, SQLiteInspection
from .reserve import DEFAULT_RESERVE, DiskReserve
from .workers import WORKERS_SCHEMA, SQLiteWorkerHeartbeats

if TYPE_CHECKING:
    from ...idempotency.sqlite import SQLiteIdempotencyStore

T = TypeVar("T")

logger = logging.getLogger("glasswork.jobs")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS glasswork_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    job_name TEXT,
    job_id TEXT,
    unique_key TEXT,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    leased INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    enqueued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS glasswork_jobs_due ON glasswork_jobs (queue, visible_at);
CREATE UNIQUE INDEX IF NOT EXISTS glasswork_jobs_unique
    ON glasswork_jobs (job_name, unique_key) WHERE unique_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS glasswork_dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT,
    job_name TEXT,
    job_id TEXT,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS glasswork_dead_letters_queue
    ON glasswork_dead_letters (queue, id);
CREATE TABLE IF NOT EXISTS glasswork_periodic (
    job_name TEXT PRIMARY KEY,
    last_fire REAL NOT NULL
);
"""

#: The traceback of each dead letter's failure (NULL for none, and for older rows).
_TRACEBACKS = "ALTER TABLE glasswork_dead_letters ADD COLUMN traceback TEXT"


def _version_4(conn: sqlite3.Connection) -> None:
    """Dead-letter ids never reused, the dead-letter search indexes, worker heartbeats."""
    never_reuse_ids(conn)
    conn.execute(WORKERS_SCHEMA)


# Step i takes a file from schema version i to i + 1 (a new file runs them all): a script,
# or a function of the connection, inside the migration's transaction.
_MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    _SCHEMA,
    OUTCOMES_SCHEMA,
    _TRACEBACKS,
    _version_4,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_INSERT = (
    "INSERT INTO glasswork_jobs (queue, job_name, job_id, unique_key, body, visible_at, "
    "enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# The inner SELECT walks the (queue, visible_at) index in order and stops after LIMIT rows;
# `lost` counts deliveries whose lease ran out (the row was still leased when re-claimed).
_CLAIM = """
UPDATE glasswork_jobs
SET attempts = attempts + 1, lost = lost + leased, leased = 1, visible_at = ?
WHERE id IN (
    SELECT id FROM glasswork_jobs WHERE queue = ? AND visible_at <= ?
    ORDER BY visible_at LIMIT ?
)
RETURNING id, CAST(body AS BLOB), attempts, lost
"""

# Distinct queue names by skipping through the index: a few lookups, not a table scan.
_QUEUES = """
WITH RECURSIVE q(name) AS (
    SELECT MIN(queue) FROM glasswork_jobs
    UNION ALL
    SELECT (SELECT MIN(queue) FROM glasswork_jobs WHERE queue > q.name) FROM q
    WHERE q.name IS NOT NULL
)
SELECT typeof(name), CAST(name AS BLOB) FROM q WHERE name IS NOT NULL
"""
#: Receipts per DELETE statement of :meth:`SQLiteQueueDriver.ack_many`.
_ACK_CHUNK = 128
# Text and blobs sort after every number in SQLite: a row whose visible_at is not a number
# (a corrupt row) is found at the far end of the (queue, visible_at) index.
_NOT_A_TIME = "visible_at >= ''"
#: The latest time a job may be due: datetime's limit.
_LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


class SQLiteQueueDriver(
    SQLiteInspection,
    SQLiteDeadLetterSearch,
    SQLiteWorkerHeartbeats,
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

    A file that cannot be used (a directory, a read-only mount) raises
    :class:`ConfigurationError` saying why, at construction. Each thread gets its own
    connection; the object may be shared between threads.
    """

    name = "sqlite"

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
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Owned] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._rotation = 0
        self._reserve = DiskReserve(self.path, disk_reserve)
        #: A write failed for a full disk with no reserve left to give (said once).
        self._stalled = False
        self._conn()  # create the file and schema now, so errors show at construction
        if create:
            self._reserve.keep()

    def __repr__(self) -> str:
        return f"SQLiteQueueDriver({str(self.path)!r})"

    # -- connections ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        owned: _Owned | None = getattr(self._local, "owned", None)
        # A connection must not cross fork(): the child opens its own.
        if owned is not None and owned.pid == os.getpid():
            return owned.conn
        owned = self._local.owned = _Owned(self._open())
        with self._lock:
            self._connections.add(owned)
        return owned.conn

    def _open(self) -> sqlite3.Connection:
        """A new connection; what stops one is a :class:`ConfigurationError` saying why."""
        if not self.create and not self.path.exists():
            raise ConfigurationError(
                f"{self.path} does not exist: no queue was created there (check the path; "
                "enqueueing a job or starting a worker creates it)"
            )
        if not self.create and _schema_version(self.path) == 0:
            raise ConfigurationError(
                f"{self.path} holds no Glasswork queue (an empty or another SQLite file): "
                "check the path; enqueueing a job or starting a worker creates the tables"
            )
        try:
            return self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigurationError(
                f"cannot use {self.path} as a queue file: {_why_unusable(self.path, exc)}"
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        conn = open_file(self.path, self.busy_timeout, self.synchronous)
        pages = self._reserve.checkpoint_pages(conn.execute("PRAGMA page_size").fetchone()[0])
        if pages is not None:
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        # Zero deleted jobs only in pages written anyway: a build whose default is ON
        # (Debian's) writes every freed page of a large job again on ack, which a full
        # disk refuses.
        conn.execute("PRAGMA secure_delete = FAST")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            # Another process may be creating or upgrading the schema too: decide under the
            # write lock.
            with self._transaction(conn):
                version = _migrate(conn)
        if version != SCHEMA_VERSION:
            conn.close()
            raise ConfigurationError(
                f"{self.path} has Glasswork queue schema version {version}; this version of "
                f"glasswork reads version {SCHEMA_VERSION}"
            )
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        conn = conn or self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (a full disk) leaves the transaction open, and some errors roll
            # it back themselves: either way the connection must end up outside one.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in a write transaction: what workers do to jobs already stored. On a full
        disk the WAL cannot grow: :meth:`_make_room`, and try once more. (Enqueues do not:
        on a full disk they fail at once, leaving that room to the workers.)"""
        conn = self._conn()
        try:
            with self._transaction(conn):
                result = fn(conn)
        except sqlite3.OperationalError as exc:
            if not _disk_full(exc) or not self._make_room(conn):
                raise
            with self._transaction(conn):
                result = fn(conn)
        self._stalled = False
        self._reserve.tend()
        return result

    def _make_room(self, conn: sqlite3.Connection) -> bool:
        """Copy the WAL into the database file, so the next write reuses the WAL's space from
        its start; when the disk has no room for that either, release the disk reserve
        first. True when the whole WAL was copied."""
        try:
            return _checkpoint(conn)
        except sqlite3.Error as exc:
            if not _disk_full(exc):
                return False
        self._reserve.release()  # False: none left, or another process just released it
        try:
            return _checkpoint(conn)
        except sqlite3.Error as exc:
            if _disk_full(exc) and not self._stalled:
                self._stalled = True
                logger.error(
                    "the disk holding %s is full and its disk reserve is used up: workers "
                    "cannot claim or finish jobs (a claim or an ack is a write) until space "
                    "is freed there; stored jobs are kept and run once it is",
                    self.path,
                )
            return False

    def close(self) -> None:
        """Close every connection this driver opened (in all threads)."""
        with self._lock:
            owned, self._connections = list(self._connections), weakref.WeakSet()
        for o in owned:
            o.close()
        self._local = threading.local()

    # -- producing -------------------------------------------------------------------------

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        return self._insert([message], time.time())[0]

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self._insert([message], time.time() + max(0.0, delay_seconds))[0]

    def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        return self._insert([message], run_at.timestamp())[0]

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        """Insert every message in one transaction: all are stored, or (on a duplicate unique
        key) none."""
        return self._insert(messages, time.time() + max(0.0, delay_seconds))

    def _insert(self, messages: Sequence[JobMessage], visible_at: float) -> list[EnqueueResult]:
        if not visible_at <= _LATEST:
            raise ValueError(
                f"job {messages[0].job_name!r} would be due after the year 9999: the delay "
                "is too long; nothing was stored"
            )
        now = time.time()
        rows = [
            (m.queue, m.job_name, m.job_id, m.unique_key, m.encode(), visible_at, now)
            for m in messages
        ]
        conn = self._conn()
        try:
            if len(rows) == 1:
                # One statement is a transaction of its own (it takes the write lock before
                # reading, waiting on busy_timeout like BEGIN IMMEDIATE): no BEGIN, no COMMIT.
                ids = [conn.execute(_INSERT, rows[0]).lastrowid]
            else:
                with self._transaction(conn):
                    ids = [conn.execute(_INSERT, row).lastrowid for row in rows]
        except sqlite3.IntegrityError:
            raise self._duplicate(conn, messages) from None
        except sqlite3.Error as exc:
            raise self._store_error(messages, exc) from exc
        scheduled = datetime.fromtimestamp(visible_at, UTC) if visible_at > now + 0.001 else None
        return [
            EnqueueResult(str(row_id), m.job_id, m.queue, scheduled)
            for row_id, m in zip(ids, messages, strict=True)
        ]

    def _store_error(self, messages: Sequence[JobMessage], error: sqlite3.Error) -> EnqueueError:
        """An enqueue the database refused (a full disk, a read-only file, a lock held past
        ``busy_timeout``), naming the file and SQLite's reason; nothing was stored."""
        first = messages[0]
        what = (
            f"job {first.job_name!r} (id {first.job_id})"
            if len(messages) == 1
            else f"{len(messages)} jobs"
        )
        return EnqueueError(f"could not store {what} in {self.path}: {error}; nothing was stored")

    def _duplicate(self, conn: sqlite3.Connection, messages: Sequence[JobMessage]) -> Exception:
        seen: dict[tuple[str, str], str] = {}
        for m in messages:
            if m.unique_key is None:
                continue
            key = (m.job_name, m.unique_key)
            held = conn.execute(
                "SELECT job_id FROM glasswork_jobs WHERE job_name = ? AND unique_key = ?", key
            ).fetchone()
            if held is not None:
                return DuplicateJobError(m.job_name, m.unique_key, held[0])
            if key in seen:  # two messages of this batch share the key
                return DuplicateJobError(m.job_name, m.unique_key, seen[key])
            seen[key] = m.job_id
        return sqlite3.IntegrityError("unique constraint failed on glasswork_jobs")

    # -- consuming -------------------------------------------------------------------------

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """Claim up to ``max_messages`` due jobs, oldest due first, leasing each for
        ``visibility_timeout`` seconds; polls every ``poll_interval`` up to ``wait_seconds``."""
        deadline = time.monotonic() + wait_seconds
        while True:
            received, next_due = self._claim(queues, max_messages)
            remaining = deadline - time.monotonic()
            if received or remaining <= 0:
                return received
            pause = self.poll_interval
            if next_due is not None:
                pause = min(pause, max(0.001, next_due - time.time()))
            time.sleep(min(pause, remaining))

    def _claim(
        self, queues: Sequence[str] | None, limit: int
    ) -> tuple[list[ReceivedMessage], float | None]:
        conn = self._conn()
        names = list(queues) if queues else self._queue_names(conn)
        now = time.time()
        # Look before locking: an idle worker polling must not take the write lock.
        due: list[str] = []
        next_due: float | None = None
        for queue in names:
            row = conn.execute(
                "SELECT visible_at FROM glasswork_jobs WHERE queue = ? ORDER BY visible_at LIMIT 1",
                (queue,),
            ).fetchone()
            if row is None:
                continue
            first = row[0]
            if not isinstance(first, int | float):  # only corrupt rows are left in this queue
                self._bury_where(
                    f"queue = ? AND {_NOT_A_TIME}", (queue,), "its visible_at is not a number"
                )
            elif first <= now:
                due.append(queue)
            elif next_due is None or first < next_due:
                next_due = first
        if not due or limit <= 0:
            return [], next_due
        # Rotate the starting queue so one busy queue cannot starve the others.
        self._rotation += 1
        start = self._rotation % len(due)
        received = self._write(lambda c: self._claim_due(c, due[start:] + due[:start], limit))
        received.sort(key=lambda r: int(r.message_id))
        return received, next_due

    def _claim_due(
        self, conn: sqlite3.Connection, queues: list[str], limit: int
    ) -> list[ReceivedMessage]:
        received: list[ReceivedMessage] = []
        now = time.time()
        lease_until = now + self.visibility_timeout
        for queue in queues:
            if len(received) >= limit:
                break
            rows = conn.execute(_CLAIM, (lease_until, queue, now, limit - len(received)))
            for row_id, raw, attempts, lost in rows.fetchall():
                try:
                    body, attempt = _read_row(raw, attempts)
                except ValueError as exc:
                    # A corrupt row must not fail every claim: it goes to the dead letters.
                    self._bury(conn, row_id, queue, raw, f"the row is corrupt: {exc}")
                    continue
                if lost >= self.max_lost_leases:
                    self._bury(conn, row_id, queue, body, self._lost_reason(attempts, lost))
                    continue
                received.append(
                    ReceivedMessage(body, (row_id, attempts), attempt, queue, str(row_id))
                )
        return received

    def _queue_names(self, conn: sqlite3.Connection) -> list[str]:
        names = []
        for kind, raw in conn.execute(_QUEUES).fetchall():
            try:
                if kind != "text":
                    raise ValueError(f"it is {kind}, not text")
                names.append(raw.decode("utf-8"))
            except ValueError as exc:  # UnicodeDecodeError included
                why = f"its queue name {raw!r} is not usable: {_describe(exc)}"
                self._bury_where("CAST(queue AS BLOB) = ?", (raw,), why)
        return names

    def _bury_where(self, where: str, params: tuple[Any, ...], why: str) -> None:
        """Dead-letter the corrupt rows ``where`` selects."""
        sql = (
            f"SELECT id, CAST(queue AS BLOB), CAST(body AS BLOB) FROM glasswork_jobs WHERE {where}"
        )

        def bury(conn: sqlite3.Connection) -> None:
            for row_id, queue, body in conn.execute(sql, params).fetchall():
                name = queue.decode("utf-8", "backslashreplace") if queue is not None else None
                self._bury(conn, row_id, name, body, f"the row is corrupt: {why}")

        self._write(bury)

    def _bury(
        self, conn: sqlite3.Connection, row_id: int, queue: str | None, body: Any, reason: str
    ) -> None:
        """Move a job row to the dead letters (a body that is not text is kept readable,
        invalid bytes as ``\\x`` escapes)."""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "backslashreplace")
        self._insert_dead(conn, str(body), reason, queue, time.time())
        conn.execute("DELETE FROM glasswork_jobs WHERE id = ?", (row_id,))

    def _lost_reason(self, attempts: Any, lost: Any) -> str:
        return (
            f"delivered {attempts} times; {lost} times its lease "
            f"({self.visibility_timeout:g}s) ran out before a worker finished it: the worker "
            "died or stalled while running it"
        )

    def ack(self, received: ReceivedMessage) -> None:
        self.ack_many([received])

    def ack_many(self, received: Sequence[ReceivedMessage]) -> None:
        """Remove finished jobs in one transaction (deliveries whose lease another worker
        has since taken are left alone)."""
        if not received:
            return
        receipts = [r.receipt for r in received]

        def delete(conn: sqlite3.Connection) -> None:
            for start in range(0, len(receipts), _ACK_CHUNK):
                conn.execute(*_delete_receipts(receipts[start : start + _ACK_CHUNK]))

        self._write(delete)

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        self.nack_many([received], delay_seconds)

    def nack_many(self, received: Sequence[ReceivedMessage], delay_seconds: float = 0.0) -> None:
        """Release jobs to be delivered again after ``delay_seconds``, in one transaction."""
        if not received:
            return
        visible_at = time.time() + max(0.0, delay_seconds)
        rows = [(visible_at, *r.receipt) for r in received]
        self._write(
            lambda c: c.executemany(
                "UPDATE glasswork_jobs SET leased = 0, visible_at = ? "
                "WHERE id = ? AND attempts = ?",
                rows,
            )
        )

    def release_many(self, received: Sequence[ReceivedMessage]) -> None:
        """Hand back jobs a worker could not finish (it is shutting down): due again at once,
        and this delivery does not count as an attempt, so a job is not dead-lettered for
        clean shutdowns."""
        if not received:
            return
        # The next claim brings attempts back up, so this delivery's receipt (id, attempts)
        # would match that one: harmless, as a worker never uses a receipt it released.
        rows = [(time.time(), *r.receipt) for r in received]
        self._write(
            lambda c: c.executemany(
                "UPDATE glasswork_jobs SET leased = 0, visible_at = ?, attempts = attempts - 1 "
                "WHERE id = ? AND attempts = ? AND attempts > 0",
                rows,
            )
        )

    def extend_leases(self, received: Sequence[ReceivedMessage], seconds: float) -> int:
        """Keep jobs hidden for ``seconds`` more (the worker calls this for long-running jobs).
        Returns how many leases were still held."""
        if not received:
            return 0
        visible_at = time.time() + seconds
        rows = [(visible_at, *r.receipt) for r in received]

        def extend(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "UPDATE glasswork_jobs SET visible_at = ? "
                "WHERE id = ? AND attempts = ? AND leased = 1",
                rows,
            )
            return conn.total_changes - before

        return self._write(extend)

    def dead_letter(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool:
        self._write(lambda c: self._insert_dead(c, body, reason, queue, time.time(), traceback))
        return True

    def _insert_dead(
        self,
        conn: sqlite3.Connection,
        body: str,
        reason: str,
        queue: str | None,
        now: float,
        traceback: str | None = None,
    ) -> None:
        job_name, job_id, _ = identify(body)
        conn.execute(
            "INSERT INTO glasswork_dead_letters (queue, job_name, job_id, body, reason, "
            "failed_at, traceback) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (queue, job_name, job_id, body, reason, now, traceback),
        )

    def idempotency_store(self) -> SQLiteIdempotencyStore:
        """Idempotency keys in this queue's file (table ``glasswork_idempotency``)."""
        from ...idempotency.sqlite import SQLiteIdempotencyStore

        return SQLiteIdempotencyStore(
            self.path, busy_timeout=self.busy_timeout, synchronous=self.synchronous
        )

    def claim_periodic(self, job_name: str, fire_at: datetime) -> bool:
        """Claim the firing of periodic job ``job_name`` due at ``fire_at``: True for exactly
        one caller across every worker sharing this file."""
        claimed: bool = self._write(
            lambda c: (
                c.execute(
                    "INSERT INTO glasswork_periodic (job_name, last_fire) VALUES (?, ?) "
                    "ON CONFLICT (job_name) DO UPDATE SET last_fire = excluded.last_fire "
                    "WHERE last_fire < excluded.last_fire",
                    (job_name, fire_at.timestamp()),
                ).rowcount
                == 1
            )
        )
        return claimed

    # -- inspecting ------------------------------------------------------------------------

    def stats(self) -> dict[str, QueueStats]:
        """Counts per queue, sorted by queue name."""
        conn = self._conn()
        now = time.time()
        counts: dict[str, dict[str, int]] = {}
        for queue, ready, delayed, in_flight in conn.execute(
            "SELECT queue, SUM(visible_at <= ?), SUM(leased = 0 AND visible_at > ?), "
            "SUM(leased = 1 AND visible_at > ?) FROM glasswork_jobs GROUP BY queue",
            (now, now, now),
        ):
            counts[queue] = {"ready": ready, "delayed": delayed, "in_flight": in_flight}
        for queue, dead in conn.execute(
            "SELECT COALESCE(queue, 'default'), COUNT(*) FROM glasswork_dead_letters GROUP BY 1"
        ):
            counts.setdefault(queue, {})["dead"] = dead
        return {q: QueueStats(q, **counts[q]) for q in sorted(counts)}

    def pending_count(self, queues: Sequence[str] | None = None) -> int:
        """Jobs not yet finished (ready, delayed or in flight) in ``queues`` (None: all)."""
        conn = self._conn()
        if not queues:
            return int(conn.execute("SELECT COUNT(*) FROM glasswork_jobs").fetchone()[0])
        marks = ",".join("?" * len(queues))
        sql = f"SELECT COUNT(*) FROM glasswork_jobs WHERE queue IN ({marks})"
        return int(conn.execute(sql, list(queues)).fetchone()[0])

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetterRecord]:
        """Dead letters, oldest first (``queue`` filters)."""
        sql = (
            "SELECT id, queue, job_name, job_id, body, reason, failed_at, traceback "
            "FROM glasswork_dead_letters"
        )
        params: list[Any] = []
        if queue is not None:
            sql += " WHERE queue = ?"
            params.append(queue)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [
            DeadLetterRecord(str(i), q, n, j, b, r, datetime.fromtimestamp(t, UTC), tb)
            for i, q, n, j, b, r, t, tb in self._conn().execute(sql, params)
        ]

    def redrive(self, ids: Sequence[int | str] | None = None, *, queue: str | None = None) -> int:
        """Move dead letters back onto their queues to run again now, with a fresh attempt
        count: the given ``ids``, or all (of ``queue``, when given). A job whose unique key is
        held by a pending job stays in the dead letter. Returns how many moved."""
        clauses: list[str] = []
        params: list[Any] = []
        if ids is not None:
            if not ids:
                return 0
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            params.extend(_row_ids(ids))
        if queue is not None:
            clauses.append("queue = ?")
            params.append(queue)
        return self._redrive_where(f"WHERE {' AND '.join(clauses)}" if clauses else "", params)

    def _redrive_where(self, clause: str, params: list[Any]) -> int:
        """Redrive the dead letters ``clause`` (``WHERE ...`` or empty) selects."""
        sql = f"SELECT id, queue, body FROM glasswork_dead_letters {clause}"
        moved = 0
        with self._transaction() as conn:
            now = time.time()
            for dead_id, dead_queue, body in conn.execute(sql, params).fetchall():
                job_name, job_id, unique_key = identify(body)
                try:
                    conn.execute(
                        _INSERT,
                        (dead_queue or "default", job_name, job_id, unique_key, body, now, now),
                    )
                except sqlite3.IntegrityError:
                    continue  # a pending job holds its unique key; leave it dead
                conn.execute("DELETE FROM glasswork_dead_letters WHERE id = ?", (dead_id,))
                moved += 1
        return moved

    def purge_dead_letters(
        self, ids: Sequence[int | str] | None = None, *, queue: str | None = None
    ) -> int:
        """Delete dead letters (the given ``ids``, or all; of ``queue``, when given). Returns
        how many."""
        of_queue, params = ("", []) if queue is None else (" AND queue = ?", [queue])
        with self._transaction() as conn:
            if ids is None:
                where = "" if queue is None else " WHERE queue = ?"
                return conn.execute(f"DELETE FROM glasswork_dead_letters{where}", params).rowcount
            sql = f"DELETE FROM glasswork_dead_letters WHERE id = ?{of_queue}"
            return sum(conn.execute(sql, [i, *params]).rowcount for i in _row_ids(ids))


def _migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` (inside the caller's transaction);
    returns the version the file now has (a newer one is left alone)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return version
    for step in _MIGRATIONS[version:]:
        if callable(step):
            step(conn)
            continue
        for statement in step.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION


class _Owned:
    """One thread's connection. It lives in that thread's ``threading.local``, so it is
    closed when the thread ends (a worker's driver thread, say) rather than leaking."""

    __slots__ = ("__weakref__", "conn", "pid")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()

    def close(self) -> None:
        # Closing a connection inherited over fork() could disturb the parent's locks.
        if self.pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()

    def __del__(self) -> None:
        self.close()


def _row_ids(ids: Sequence[int | str]) -> list[int]:
    """Dead-letter ids as rows: the ints of :attr:`DeadLetterRecord.id` strings."""
    try:
        return [int(i) for i in ids]
    except ValueError:
        raise ConfigurationError(f"SQLite dead-letter ids are numbers, got {list(ids)}") from None


def _disk_full(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == sqlite3.SQLITE_FULL
    return "disk is full" in str(error)


def _checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database file; True when all of it was, so the next write
    starts the WAL over in the space it already has. Raises what SQLite raised (a full
    disk: the database file cannot grow)."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return bool(busy == 0 and frames == copied)


def _schema_version(path: Path) -> int | None:
    """The file's ``PRAGMA user_version``, read without changing it (None: unreadable, for
    the real open to explain)."""
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _why_unusable(path: Path, error: BaseException) -> str:
    """SQLite's reason a file cannot be opened, with the likely cause spelled out."""
    if path.is_dir():
        return f"it is a directory, not a database file ({error})"
    folder = path.parent
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"it is on a read-only file system ({error})"
    if folder.exists() and not os.access(folder, os.W_OK):
        return f"its directory {folder} is not writable ({error})"
    return str(error)


def _delete_receipts(receipts: Sequence[tuple[Any, Any]]) -> tuple[str, list[Any]]:
    """One DELETE of the rows of these receipts (id, attempts): a single statement, so the
    whole batch is one step into SQLite (a worker's job threads then wait for the GIL once,
    not once a row). The id list finds the rows by primary key; the (id, attempts) pairs
    spare deliveries another worker has since taken. Lists are padded to a power of two
    with receipts no row has (id 0), so a handful of statements are ever prepared."""
    size = 1 << max(0, len(receipts) - 1).bit_length()
    padded = [*receipts, *[(0, 0)] * (size - len(receipts))]
    sql = (
        f"DELETE FROM glasswork_jobs WHERE id IN ({','.join('?' * size)}) "
        f"AND (id, attempts) IN (VALUES {','.join(['(?, ?)'] * size)})"
    )
    return sql, [row_id for row_id, _ in padded] + [v for receipt in padded for v in receipt]


def _read_row(raw: Any, attempts: Any) -> tuple[str, int]:
    """A claimed row's body as text and its attempt count; ValueError saying what is wrong."""
    if not isinstance(raw, bytes):
        raise ValueError(f"its body is {raw!r}, not text")
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"its body is not UTF-8 text ({exc})") from None
    try:
        return body, int(attempts)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"its attempt count {attempts!r} is not a number") from None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
