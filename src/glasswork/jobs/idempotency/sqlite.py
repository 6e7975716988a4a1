"""SQLiteIdempotencyStore: keys in a SQLite file, by default the queue's own.

Table ``glasswork_idempotency(key PRIMARY KEY, status, expires_at, token)``, created on
first use beside the queue's tables. A claim is one ``INSERT ... ON CONFLICT DO UPDATE ...
WHERE expires_at <= now``, so two processes never both claim a live key.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from ..drivers.sqlite.files import check_synchronous, file_path, open_file
from .store import COMPLETED, IN_PROGRESS, IdempotencyRecord, IdempotencyStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS glasswork_idempotency (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    expires_at REAL NOT NULL,
    token TEXT NOT NULL
) WITHOUT ROWID
"""

_CLAIM = """
INSERT INTO glasswork_idempotency (key, status, expires_at, token) VALUES (?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE
SET status = excluded.status, expires_at = excluded.expires_at, token = excluded.token
WHERE glasswork_idempotency.expires_at <= ?
RETURNING token
"""

#: Expired records are deleted at most this often (seconds), by whichever claim comes next.
PURGE_INTERVAL = 300.0


class SQLiteIdempotencyStore(IdempotencyStore):
    """Idempotency keys in the SQLite file at ``path``, shared by every worker on the machine.

    >>> store = SQLiteIdempotencyStore("jobs.db")   # doctest: +SKIP

    ``SQLiteQueueDriver`` workers use one on the queue's file by default, with the driver's
    ``busy_timeout`` and ``synchronous``: ``"NORMAL"`` survives a process crash (WAL);
    ``"FULL"`` also power loss, at an fsync per write.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = file_path(path, "SQLiteIdempotencyStore")
        self.busy_timeout = busy_timeout
        self.synchronous = check_synchronous(synchronous)
        self._local = threading.local()
        self._next_purge = 0.0
        self._conn()  # create the table now, so a bad path fails at bootstrap

    def __repr__(self) -> str:
        return f"SQLiteIdempotencyStore({str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread (and per process: none crosses fork()).
        held: tuple[int, sqlite3.Connection] | None = getattr(self._local, "conn", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        conn = open_file(self.path, self.busy_timeout, self.synchronous)
        conn.execute(_SCHEMA)
        self._local.conn = (os.getpid(), conn)
        return conn

    def claim(self, key: str, token: str, until: float) -> IdempotencyRecord | None:
        conn = self._conn()
        now = time.time()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_INTERVAL
            conn.execute("DELETE FROM glasswork_idempotency WHERE expires_at <= ?", (now,))
        for _ in range(3):
            if conn.execute(_CLAIM, (key, IN_PROGRESS, until, token, now)).fetchone():
                return None
            held = self.get(key)
            if held is not None:
                return held
            # Released between the two statements: try the claim again.
        raise RuntimeError(f"could not claim idempotency key {key!r}: it keeps changing")

    def complete(self, key: str, token: str, expires_at: float) -> bool:
        cursor = self._conn().execute(
            "UPDATE glasswork_idempotency SET status = ?, expires_at = ? "
            "WHERE key = ? AND token = ?",
            (COMPLETED, expires_at, key, token),
        )
        return cursor.rowcount == 1

    def release(self, key: str, token: str) -> bool:
        cursor = self._conn().execute(
            "DELETE FROM glasswork_idempotency WHERE key = ? AND token = ?", (key, token)
        )
        return cursor.rowcount == 1

    def get(self, key: str) -> IdempotencyRecord | None:
        row = (
            self._conn()
            .execute(
                "SELECT status, expires_at, token FROM glasswork_idempotency WHERE key = ?",
                (key,),
            )
            .fetchone()
        )
        return None if row is None else IdempotencyRecord(key, row[0], row[1], row[2])
