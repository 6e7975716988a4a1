"""What the SQLite driver offers beyond the queue contract: outcome history and job lookup
(see :mod:`glasswork.jobs.drivers.inspection`).

Outcome counts live in one small table, added by schema version 2::

    glasswork_outcomes(minute, queue, job_name, outcome, count)   # minute: Unix time

Recording adds to the row of its key (an upsert) and drops rows older than
``outcome_retention`` seconds, so the table holds at most a day of minutes by default.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..records import DeadLetterRecord, FoundJob, OutcomeCount

#: Schema version 1 → 2.
OUTCOMES_SCHEMA = """
CREATE TABLE IF NOT EXISTS glasswork_outcomes (
    minute INTEGER NOT NULL,
    queue TEXT NOT NULL,
    job_name TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (minute, queue, job_name, outcome)
) WITHOUT ROWID
"""

_UPSERT = (
    "INSERT INTO glasswork_outcomes (minute, queue, job_name, outcome, count) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (minute, queue, job_name, outcome) "
    "DO UPDATE SET count = count + excluded.count"
)


class SQLiteInspection:
    """Outcome history and job lookup for :class:`~glasswork.jobs.drivers.sqlite.
    SQLiteQueueDriver` (a mixin: it uses the driver's connections)."""

    #: Seconds of outcome history kept.
    outcome_retention: float = 86400.0
    #: Whether workers on this driver record outcome counts (set False before building a
    #: worker to leave the outcome log out of its chain; the dashboard then has no chart).
    records_outcomes: bool = True

    if TYPE_CHECKING:  # the driver's

        def _conn(self) -> sqlite3.Connection: ...

        def _transaction(
            self, conn: sqlite3.Connection | None = None
        ) -> AbstractContextManager[sqlite3.Connection]: ...

    def record_outcomes(self, counts: Sequence[OutcomeCount]) -> None:
        """Add outcome counts (one transaction), dropping minutes past the retention."""
        rows = [
            (int(c.minute.timestamp()) // 60 * 60, c.queue, c.job_name, c.outcome, c.count)
            for c in counts
        ]
        with self._transaction() as conn:
            conn.executemany(_UPSERT, rows)
            conn.execute(
                "DELETE FROM glasswork_outcomes WHERE minute < ?",
                (time.time() - self.outcome_retention,),
            )

    def outcome_history(self, since: datetime) -> list[OutcomeCount]:
        """Outcome counts of the minutes from ``since`` on, oldest first."""
        rows = self._conn().execute(
            "SELECT minute, queue, job_name, outcome, count FROM glasswork_outcomes "
            "WHERE minute >= ? ORDER BY minute, queue, job_name, outcome",
            (int(since.timestamp()) // 60 * 60,),
        )
        return [OutcomeCount(datetime.fromtimestamp(m, UTC), q, n, o, c) for m, q, n, o, c in rows]

    def find_job(self, job_id: str) -> list[FoundJob]:
        """The pending and dead-lettered copies of job ``job_id`` (a table scan: job ids are
        not indexed, so that enqueueing pays nothing for lookups)."""
        conn = self._conn()
        now = time.time()
        found = [
            FoundJob(
                job_id,
                _state(leased, visible_at, now),
                queue,
                name,
                body,
                attempts,
                _time(visible_at),
                _time(enqueued_at),
            )
            for queue, name, body, attempts, leased, visible_at, enqueued_at in conn.execute(
                "SELECT queue, job_name, body, attempts, leased, visible_at, enqueued_at "
                "FROM glasswork_jobs WHERE job_id = ? ORDER BY id",
                (job_id,),
            )
        ]
        found.extend(_dead(conn, job_id))
        return found


def _dead(conn: sqlite3.Connection, job_id: str) -> Iterator[FoundJob]:
    rows: Any = conn.execute(
        "SELECT id, queue, job_name, body, reason, failed_at, traceback "
        "FROM glasswork_dead_letters WHERE job_id = ? ORDER BY id",
        (job_id,),
    )
    for row_id, queue, name, body, reason, failed_at, trace in rows:
        record = DeadLetterRecord(
            str(row_id), queue, name, job_id, body, reason, _time(failed_at), trace
        )
        yield FoundJob(job_id, "dead", queue, name, body, dead_letter=record)


def _state(leased: int, visible_at: float, now: float) -> str:
    if visible_at <= now:
        return "ready"
    return "in_flight" if leased else "delayed"


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
