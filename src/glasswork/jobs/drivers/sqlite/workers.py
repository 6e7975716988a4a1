"""The SQLite driver's worker heartbeats (its
:class:`~glasswork.jobs.drivers.contract.HeartbeatStore`), in one small table added by schema
version 4 (:data:`.schema.WORKERS_SCHEMA`)::

    glasswork_workers(id PRIMARY KEY, host, pid, queues, concurrency, in_flight, every,
                      started_at, last_seen)        # times: Unix seconds; queues: JSON

A beat is one upsert of the worker's row (and a delete of rows silent for a day).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from ..records import FORGET_AFTER, WorkerBeat
from .connections import QueueFile

_UPSERT = (
    "INSERT INTO glasswork_workers (id, host, pid, queues, concurrency, in_flight, every, "
    "started_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "in_flight = excluded.in_flight, every = excluded.every, last_seen = excluded.last_seen"
)


class WorkerRows:
    """The heartbeat store of one queue ``file``."""

    def __init__(self, file: QueueFile) -> None:
        self.file = file

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
        with self.file.transaction() as conn:
            conn.execute(_UPSERT, row)
            conn.execute("DELETE FROM glasswork_workers WHERE last_seen < ?", (now - FORGET_AFTER,))

    def remove_worker(self, worker_id: str) -> None:
        """Delete the row of a worker that stopped."""
        with self.file.transaction() as conn:
            conn.execute("DELETE FROM glasswork_workers WHERE id = ?", (worker_id,))

    def workers(self) -> list[WorkerBeat]:
        """Every worker with a row, the most recently started first."""
        now = time.time()
        rows = self.file.conn().execute(
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
