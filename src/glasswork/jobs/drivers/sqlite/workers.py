"""The SQLite driver's worker heartbeats (see :mod:`glasswork.jobs.drivers.heartbeats`), in
one small table added by schema version 4::

    glasswork_workers(id PRIMARY KEY, host, pid, queues, concurrency, in_flight, every,
                      started_at, last_seen)        # times: Unix seconds; queues: JSON

A beat is one upsert of the worker's row (and a delete of rows silent for a day).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..records import FORGET_AFTER, WorkerBeat

WORKERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS glasswork_workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    queues TEXT,
    concurrency INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    every REAL NOT NULL,
    started_at REAL NOT NULL,
    last_seen REAL NOT NULL
)
"""

_UPSERT = (
    "INSERT INTO glasswork_workers (id, host, pid, queues, concurrency, in_flight, every, "
    "started_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "in_flight = excluded.in_flight, every = excluded.every, last_seen = excluded.last_seen"
)


class SQLiteWorkerHeartbeats:
    """The heartbeat store of :class:`~glasswork.jobs.drivers.sqlite.SQLiteQueueDriver` (a
    mixin: it uses the driver's connections)."""

    if TYPE_CHECKING:  # the driver's

        def _conn(self) -> sqlite3.Connection: ...

        def _transaction(
            self, conn: sqlite3.Connection | None = None
        ) -> AbstractContextManager[sqlite3.Connection]: ...

    def heartbeat_store(self) -> SQLiteWorkerHeartbeats:
        """This driver: workers beat in its file."""
        return self

    def record_worker(self, beat: WorkerBeat) -> None:
        """Write ``beat``, now; forget workers silent for :data:`FORGET_AFTER` seconds."""
        now = time.time()
        queues = json.dumps(list(beat.queues)) if beat.queues is not None else None
        row = (
            beat.worker_id,
            beat.host,
            beat.pid,
            queues,
            beat.concurrency,
            beat.in_flight,
            beat.every,
            beat.started_at.timestamp(),
            now,
        )
        with self._transaction() as conn:
            conn.execute(_UPSERT, row)
            conn.execute("DELETE FROM glasswork_workers WHERE last_seen < ?", (now - FORGET_AFTER,))

    def remove_worker(self, worker_id: str) -> None:
        """Delete the row of a worker that stopped."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM glasswork_workers WHERE id = ?", (worker_id,))

    def workers(self) -> list[WorkerBeat]:
        """Every worker with a row, the most recently started first."""
        now = time.time()
        rows = self._conn().execute(
            "SELECT id, host, pid, queues, concurrency, in_flight, every, started_at, "
            "last_seen FROM glasswork_workers ORDER BY started_at DESC, id"
        )
        return [_beat(now, *row) for row in rows]


def _beat(
    now: float,
    worker_id: str,
    host: str,
    pid: int,
    queues: str | None,
    concurrency: int,
    in_flight: int,
    every: float,
    started_at: float,
    last_seen: float,
) -> WorkerBeat:
    return WorkerBeat(
        worker_id,
        host,
        pid,
        tuple(json.loads(queues)) if queues is not None else None,
        concurrency,
        in_flight,
        datetime.fromtimestamp(started_at, UTC),
        every,
        datetime.fromtimestamp(last_seen, UTC),
        max(0.0, now - last_seen),
    )
