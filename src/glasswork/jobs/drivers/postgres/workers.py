"""The PostgreSQL driver's worker heartbeats (:class:`~glasswork.jobs.drivers.records.WorkerBeat`),
in one small table added by schema version 4::

    glasswork_workers(id, host, pid, queues, concurrency, in_flight, every, started_at,
                      last_seen)              # last_seen: the server's now() at each beat

A beat is one upsert of the worker's row, then a delete of rows silent for a day.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from ..records import FORGET_AFTER, WorkerBeat

if TYPE_CHECKING:
    import psycopg

    from .connections import Connections
    from .statements import Statements


class WorkerRows:
    """The heartbeat store of one driver
    (:class:`~glasswork.jobs.drivers.contract.HeartbeatStore`), on its ``connections``."""

    def __init__(self, connections: Connections, statements: Statements) -> None:
        self._connections = connections
        self.sql = statements

    def record_worker(self, beat: WorkerBeat) -> None:
        """Write ``beat`` at the server's now; forget workers silent for
        :data:`FORGET_AFTER` seconds."""
        params = {
            "id": beat.worker_id,
            "host": beat.host,
            "pid": beat.pid,
            "queues": list(beat.queues) if beat.queues is not None else None,
            "concurrency": beat.concurrency,
            "in_flight": beat.in_flight,
            "every": beat.every,
            "started_at": beat.started_at,
        }

        def record(conn: psycopg.Connection, _: bool) -> None:
            conn.execute(self.sql.record_worker, params)
            conn.execute(self.sql.forget_workers, {"seconds": FORGET_AFTER})

        self._connections.run("record a worker heartbeat", record)

    def remove_worker(self, worker_id: str) -> None:
        """Delete the row of a worker that stopped."""
        self._connections.run(
            "remove a worker heartbeat",
            lambda conn, _: conn.execute(self.sql.remove_worker, {"id": worker_id}),
        )

    def workers(self) -> list[WorkerBeat]:
        """Every worker with a row, the most recently started first."""
        rows = self._connections.run(
            "read worker heartbeats", lambda conn, _: conn.execute(self.sql.workers).fetchall()
        )
        return [
            WorkerBeat(
                worker_id,
                host,
                pid,
                tuple(queues) if queues is not None else None,
                concurrency,
                in_flight,
                started_at.astimezone(UTC),
                every,
                last_seen.astimezone(UTC),
                silent_for,
            )
            for (
                worker_id,
                host,
                pid,
                queues,
                concurrency,
                in_flight,
                every,
                started_at,
                last_seen,
                silent_for,
            ) in rows
        ]
