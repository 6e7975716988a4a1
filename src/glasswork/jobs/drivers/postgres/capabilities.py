"""What the PostgreSQL driver offers beyond the queue contract: outcome history and job
lookup (the optional capabilities of :mod:`glasswork.jobs.drivers.inspection`, which the dashboard
uses).

Outcome counts live in one small table, added by schema version 2::

    glasswork_outcomes(minute, queue, job_name, outcome, count)   # minute: timestamptz

Every worker on the driver records into it through its
:class:`~glasswork.jobs.metrics.outcome_log.OutcomeLog` (one upsert every few seconds per worker
process); recording drops rows older than ``outcome_retention`` seconds, so the table holds
a day of minutes by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..records import FoundJob, OutcomeCount
from .inspection import dead_letter_record

if TYPE_CHECKING:
    import psycopg

    from .connections import Connections
    from .statements import Statements


class InspectionCapabilities:
    """Outcome history and job lookup for :class:`~glasswork.jobs.drivers.postgres.
    PostgresQueueDriver` (a mixin: it uses the driver's connections and statements)."""

    #: Seconds of outcome history kept.
    outcome_retention: float = 86400.0
    #: Whether workers on this driver record outcome counts (set False before building a
    #: worker to leave the outcome log out of its chain; the dashboard then has no chart).
    records_outcomes: bool = True

    if TYPE_CHECKING:  # the driver's
        sql: Statements
        _connections: Connections

    def record_outcomes(self, counts: Sequence[OutcomeCount]) -> None:
        """Add outcome counts (one statement; counts of the same key add up), then drop
        minutes past the retention."""
        if not counts:
            return
        minutes = [_minute(c.minute) for c in counts]
        params = {
            "minutes": minutes,
            "queues": [c.queue for c in counts],
            "names": [c.job_name for c in counts],
            "outcomes": [c.outcome for c in counts],
            "counts": [c.count for c in counts],
        }

        def record(conn: psycopg.Connection, _: bool) -> None:
            # A retry after a connection lost at commit may count a batch twice: the chart
            # is a picture, not an account (the dead letters are the account).
            conn.execute(self.sql.record_outcomes, params)
            conn.execute(self.sql.prune_outcomes, {"seconds": self.outcome_retention})

        self._connections.run("record outcome counts", record)

    def outcome_history(self, since: datetime) -> list[OutcomeCount]:
        """Outcome counts of the minutes from ``since`` on, oldest first."""
        rows = self._connections.run(
            "read outcome counts",
            lambda conn, _: conn.execute(
                self.sql.outcome_history, {"since": _minute(since)}
            ).fetchall(),
        )
        return [OutcomeCount(m.astimezone(UTC), q, n, o, c) for m, q, n, o, c in rows]

    def find_job(self, job_id: str) -> list[FoundJob]:
        """The pending and dead-lettered copies of job ``job_id``, read in one snapshot (a
        scan: job ids are not indexed, so that enqueueing pays nothing for lookups)."""
        rows = self._connections.run(
            "look up a job",
            lambda conn, _: conn.execute(self.sql.find_job, {"job_id": job_id}).fetchall(),
        )
        return [_found(job_id, *row) for row in rows]


def _found(
    job_id: str,
    dead: int,
    row_id: int,
    queue: str | None,
    job_name: str | None,
    body: str,
    attempts: int | None,
    state: str,
    visible_at: datetime | None,
    enqueued_at: datetime | None,
    reason: str | None,
    failed_at: datetime | None,
    traceback: str | None,
) -> FoundJob:
    if dead:
        assert reason is not None  # NOT NULL columns of the dead letters
        assert failed_at is not None
        record = dead_letter_record(
            row_id, queue, job_name, job_id, body, reason, failed_at, traceback
        )
        return FoundJob(job_id, "dead", queue, job_name, body, dead_letter=record)
    return FoundJob(
        job_id, state, queue, job_name, body, attempts, _utc(visible_at), _utc(enqueued_at)
    )


def _minute(moment: datetime) -> datetime:
    """The UTC minute ``moment`` falls in (as the SQLite driver counts it)."""
    return datetime.fromtimestamp(int(moment.timestamp()) // 60 * 60, UTC)


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None
