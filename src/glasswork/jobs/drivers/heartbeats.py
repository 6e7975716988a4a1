"""Worker heartbeats: which long-running workers are alive, for the dashboard's workers panel.

Every :attr:`WorkerBeat.every` seconds a worker writes its row in the driver's store (the
SQLite file, the PostgreSQL schema: see :meth:`~glasswork.jobs.drivers.base.QueueDriver.
heartbeat_store`) from a thread of its own, off the path of its jobs; a worker that stops
cleanly deletes its row. One that died stops beating: it is shown as gone once
:data:`MISSED_BEATS` beats are missing, and its row is deleted :data:`FORGET_AFTER` seconds
after its last beat (by whichever worker beats next).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

#: Seconds between two beats of a worker, unless it is told otherwise.
BEAT_SECONDS = 10.0
#: Beats missed before a worker is shown as gone.
MISSED_BEATS = 3
#: Seconds after its last beat that a gone worker's row is deleted.
FORGET_AFTER = 86400.0


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """One worker as its last beat described it.

    ``queues`` are the queues it receives from (None: all); ``in_flight`` the jobs it held
    then; ``every`` its seconds between beats. Read back from a store, ``last_seen`` is when
    it last beat and ``silent_for`` the seconds since, by the store's clock (the server's,
    on PostgreSQL), so a dashboard on another machine is not misled by its own clock.
    """

    worker_id: str
    host: str
    pid: int
    queues: tuple[str, ...] | None
    concurrency: int
    in_flight: int
    started_at: datetime
    every: float = BEAT_SECONDS
    last_seen: datetime | None = None
    silent_for: float = 0.0

    @property
    def gone(self) -> bool:
        """Whether :data:`MISSED_BEATS` beats are missing: it died, or cannot reach the
        store."""
        return self.silent_for > self.every * MISSED_BEATS


class HeartbeatStore(Protocol):
    """Where workers beat (the SQLite and PostgreSQL drivers are their own)."""

    def record_worker(self, beat: WorkerBeat) -> None:
        """Write ``beat`` (now is its ``last_seen``), and delete the rows of workers silent
        for :data:`FORGET_AFTER` seconds."""
        ...

    def remove_worker(self, worker_id: str) -> None:
        """Delete the row of a worker that stopped."""
        ...

    def workers(self) -> Sequence[WorkerBeat]:
        """Every worker with a row, the most recently started first."""
        ...
