"""SQLiteQueueDriver: a durable queue in one SQLite file, shared safely by several processes.

Schema (version 2, ``PRAGMA user_version``; older files are upgraded when opened)::

    glasswork_jobs(id INTEGER PRIMARY KEY, queue, job_name, job_id, unique_key, body,
                   attempts, leased, lost, visible_at, enqueued_at)
    glasswork_dead_letters(id INTEGER PRIMARY KEY, queue, job_name, job_id, body, reason,
                           failed_at)
    glasswork_periodic(job_name PRIMARY KEY, last_fire)   # which periodic fires happened
    glasswork_outcomes(minute, queue, job_name, outcome, count)   # v2: sqlite_inspection.py

A job row lives from enqueue until ack. ``visible_at`` is when it may next be claimed: its due
time while it waits, the end of its lease while a worker holds it. Claiming bumps
``attempts`` and pushes ``visible_at`` out by the visibility timeout inside one
``BEGIN IMMEDIATE`` transaction (``UPDATE ... RETURNING``), so two workers never hold one job;
a worker that dies simply lets its lease run out and the job is claimed again. The receipt is
``(id, attempts)``: a worker whose lease expired and was re-claimed cannot ack or release
the new holder's delivery (ids are AUTOINCREMENT, never reused, for the same reason).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, DuplicateJobError
from ..message import JobMessage
from .base import DeadLetterRecord, EnqueueResult, QueueDriver, QueueStats, ReceivedMessage
from .sqlite_files import check_synchronous, file_path, open_file
from .sqlite_inspection import OUTCOMES_SCHEMA, SQLiteInspection

if TYPE_CHECKING:
    from ..idempotency.sqlite import SQLiteIdempotencyStore

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

# Script i takes a file from schema version i to i + 1 (a new file runs them all).
_MIGRATIONS = (_SCHEMA, OUTCOMES_SCHEMA)
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
RETURNING id, queue, body, attempts, lost
"""

# Distinct queue names by skipping through the index: a few lookups, not a table scan.
_QUEUES = """
WITH RECURSIVE q(name) AS (
    SELECT MIN(queue) FROM glasswork_jobs
    UNION ALL
    SELECT (SELECT MIN(queue) FROM glasswork_jobs WHERE queue > q.name) FROM q
    WHERE q.name IS NOT NULL
)
SELECT name FROM q WHERE name IS NOT NULL
"""


class SQLiteQueueDriver(SQLiteInspection, QueueDriver):
    """A durable queue in a SQLite file: no server, delays of any length, safe across processes.

    >>> driver = SQLiteQueueDriver("jobs.db", visibility_timeout=30)   # doctest: +SKIP

    * ``visibility_timeout``: seconds a claimed job stays hidden before it is delivered again
      (the worker extends the lease of jobs that run longer);
    * ``max_lost_leases``: deliveries whose lease ran out (the worker died or stalled) before
      the job is dead-lettered instead of crashing workers forever;
    * ``busy_timeout``: seconds to wait for another process's write lock;
    * ``synchronous``: ``"NORMAL"`` survives process crashes (WAL); ``"FULL"`` also survives
      power loss, at some cost per commit;
    * ``poll_interval``: how often a waiting :meth:`receive` looks for new jobs.

    Each thread gets its own connection; the object may be shared between threads.
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
    ) -> None:
        self.path = file_path(path, "SQLiteQueueDriver")
        if visibility_timeout <= 0:
            raise ConfigurationError(
                f"visibility_timeout must be positive seconds, got {visibility_timeout!r}"
            )
        if max_lost_leases < 1:
            raise ConfigurationError(f"max_lost_leases must be at least 1, got {max_lost_leases}")
        self.synchronous = check_synchronous(synchronous)
        self.visibility_timeout = float(visibility_timeout)
        self.max_lost_leases = max_lost_leases
        self.busy_timeout = float(busy_timeout)
        self.poll_interval = poll_interval
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Owned] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._rotation = 0
        self._conn()  # create the file and schema now, so errors show at construction

    def __repr__(self) -> str:
        return f"SQLiteQueueDriver({str(self.path)!r})"

    # -- connections ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        owned: _Owned | None = getattr(self._local, "owned", None)
        # A connection must not cross fork(): the child opens its own.
        if owned is not None and owned.pid == os.getpid():
            return owned.conn
        owned = self._local.owned = _Owned(self._connect())
        with self._lock:
            self._connections.add(owned)
        return owned.conn

    def _connect(self) -> sqlite3.Connection:
        conn = open_file(self.path, self.busy_timeout, self.synchronous)
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
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

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
        rows = [
            (m.queue, m.job_name, m.job_id, m.unique_key, m.encode(), visible_at) for m in messages
        ]
        now = time.time()
        scheduled = datetime.fromtimestamp(visible_at, UTC) if visible_at > now + 0.001 else None
        results = []
        conn = self._conn()
        try:
            with self._transaction(conn):
                for m, row in zip(messages, rows, strict=True):
                    cursor = conn.execute(_INSERT, (*row, now))
                    results.append(
                        EnqueueResult(str(cursor.lastrowid), m.job_id, m.queue, scheduled)
                    )
        except sqlite3.IntegrityError:
            raise self._duplicate(conn, messages) from None
        return results

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
        names = list(queues) if queues else [r[0] for r in conn.execute(_QUEUES)]
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
            if row[0] <= now:
                due.append(queue)
            elif next_due is None or row[0] < next_due:
                next_due = row[0]
        if not due or limit <= 0:
            return [], next_due
        # Rotate the starting queue so one busy queue cannot starve the others.
        self._rotation += 1
        start = self._rotation % len(due)
        due = due[start:] + due[:start]
        received: list[ReceivedMessage] = []
        with self._transaction(conn):
            now = time.time()
            lease_until = now + self.visibility_timeout
            for queue in due:
                if len(received) >= limit:
                    break
                rows = conn.execute(_CLAIM, (lease_until, queue, now, limit - len(received)))
                for row_id, row_queue, body, attempts, lost in rows.fetchall():
                    if lost >= self.max_lost_leases:
                        self._bury_lost(conn, row_id, row_queue, body, attempts, lost, now)
                        continue
                    received.append(
                        ReceivedMessage(body, (row_id, attempts), attempts, row_queue, str(row_id))
                    )
        received.sort(key=lambda r: int(r.message_id))
        return received, next_due

    def _bury_lost(
        self,
        conn: sqlite3.Connection,
        row_id: int,
        queue: str,
        body: str,
        attempts: int,
        lost: int,
        now: float,
    ) -> None:
        reason = (
            f"delivered {attempts} times; {lost} times its lease "
            f"({self.visibility_timeout:g}s) ran out before a worker finished it: the worker "
            "died or stalled while running it"
        )
        self._insert_dead(conn, body, reason, queue, now)
        conn.execute("DELETE FROM glasswork_jobs WHERE id = ?", (row_id,))

    def ack(self, received: ReceivedMessage) -> None:
        self.ack_many([received])

    def ack_many(self, received: Sequence[ReceivedMessage]) -> None:
        """Remove finished jobs in one transaction (deliveries whose lease another worker
        has since taken are left alone)."""
        if not received:
            return
        with self._transaction() as conn:
            conn.executemany(
                "DELETE FROM glasswork_jobs WHERE id = ? AND attempts = ?",
                [r.receipt for r in received],
            )

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        self.nack_many([received], delay_seconds)

    def nack_many(self, received: Sequence[ReceivedMessage], delay_seconds: float = 0.0) -> None:
        """Release jobs to be delivered again after ``delay_seconds``, in one transaction."""
        if not received:
            return
        visible_at = time.time() + max(0.0, delay_seconds)
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE glasswork_jobs SET leased = 0, visible_at = ? "
                "WHERE id = ? AND attempts = ?",
                [(visible_at, *r.receipt) for r in received],
            )

    def extend_leases(self, received: Sequence[ReceivedMessage], seconds: float) -> int:
        """Keep jobs hidden for ``seconds`` more (the worker calls this for long-running jobs).
        Returns how many leases were still held."""
        if not received:
            return 0
        visible_at = time.time() + seconds
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE glasswork_jobs SET visible_at = ? "
                "WHERE id = ? AND attempts = ? AND leased = 1",
                [(visible_at, *r.receipt) for r in received],
            )
            return conn.total_changes - before

    def dead_letter(self, body: str, reason: str, *, queue: str | None = None) -> bool:
        with self._transaction() as conn:
            self._insert_dead(conn, body, reason, queue, time.time())
        return True

    def _insert_dead(
        self, conn: sqlite3.Connection, body: str, reason: str, queue: str | None, now: float
    ) -> None:
        job_name, job_id, _ = _identify(body)
        conn.execute(
            "INSERT INTO glasswork_dead_letters (queue, job_name, job_id, body, reason, "
            "failed_at) VALUES (?, ?, ?, ?, ?, ?)",
            (queue, job_name, job_id, body, reason, now),
        )

    def idempotency_store(self) -> SQLiteIdempotencyStore:
        """Idempotency keys in this queue's file (table ``glasswork_idempotency``)."""
        from ..idempotency.sqlite import SQLiteIdempotencyStore

        return SQLiteIdempotencyStore(
            self.path, busy_timeout=self.busy_timeout, synchronous=self.synchronous
        )

    def claim_periodic(self, job_name: str, fire_at: datetime) -> bool:
        """Claim the firing of periodic job ``job_name`` due at ``fire_at``: True for exactly
        one caller across every worker sharing this file."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO glasswork_periodic (job_name, last_fire) VALUES (?, ?) "
                "ON CONFLICT (job_name) DO UPDATE SET last_fire = excluded.last_fire "
                "WHERE last_fire < excluded.last_fire",
                (job_name, fire_at.timestamp()),
            )
            return cursor.rowcount == 1

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
            "SELECT id, queue, job_name, job_id, body, reason, failed_at "
            "FROM glasswork_dead_letters"
        )
        params: list[Any] = []
        if queue is not None:
            sql += " WHERE queue = ?"
            params.append(queue)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [
            DeadLetterRecord(str(i), q, n, j, b, r, datetime.fromtimestamp(t, UTC))
            for i, q, n, j, b, r, t in self._conn().execute(sql, params)
        ]

    def redrive(self, ids: Sequence[int | str] | None = None, *, queue: str | None = None) -> int:
        """Move dead letters back onto their queues to run again now, with a fresh attempt
        count: the given ``ids``, or all (of ``queue``, when given). A job whose unique key is
        held by a pending job stays in the dead letter. Returns how many moved."""
        sql = "SELECT id, queue, body FROM glasswork_dead_letters"
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
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        moved = 0
        with self._transaction() as conn:
            now = time.time()
            for dead_id, dead_queue, body in conn.execute(sql, params).fetchall():
                job_name, job_id, unique_key = _identify(body)
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

    def purge_dead_letters(self, ids: Sequence[int | str] | None = None) -> int:
        """Delete dead letters (the given ``ids``, or all). Returns how many."""
        with self._transaction() as conn:
            if ids is None:
                return conn.execute("DELETE FROM glasswork_dead_letters").rowcount
            return sum(
                conn.execute("DELETE FROM glasswork_dead_letters WHERE id = ?", (i,)).rowcount
                for i in _row_ids(ids)
            )


def _migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` (inside the caller's transaction);
    returns the version the file now has (a newer one is left alone)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return version
    for script in _MIGRATIONS[version:]:
        for statement in script.split(";"):
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


def _identify(body: str) -> tuple[str | None, str | None, str | None]:
    """Best-effort job name, job id and unique key of a body (None for malformed ones)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    return text("jobName"), text("jobId"), text("uniqueKey")
