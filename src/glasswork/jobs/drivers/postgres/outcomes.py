"""The PostgreSQL driver's outcome counts per minute (the driver's
:class:`~glasswork.jobs.drivers.contract.OutcomeStore`, which the dashboard charts), in one
small table added by schema version 2::

    glasswork_outcomes(minute, queue, job_name, outcome, count)   # minute: timestamptz

Every worker on the driver records into it through its
:class:`~glasswork.jobs.metrics.outcome_log.OutcomeLog` (one upsert every few seconds per worker
process); recording drops rows older than the driver's ``outcome_retention`` seconds, so the
table holds a day of minutes by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..records import OutcomeCount

if TYPE_CHECKING:
    import psycopg

    from .connections import Connections
    from .statements import Statements


class OutcomeCounts:
    """The outcome table of one driver, on its ``connections`` with its statements."""

    def __init__(self, connections: Connections, statements: Statements) -> None:
        self.connections = connections
        self.sql = statements

    def record(self, counts: Sequence[OutcomeCount], retention: float) -> None:
        """Add outcome counts (one statement; counts of the same key add up), then drop
        minutes older than ``retention`` seconds."""
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
            conn.execute(self.sql.prune_outcomes, {"seconds": retention})

        self.connections.run("record outcome counts", record)

    def history(self, since: datetime) -> list[OutcomeCount]:
        """Outcome counts of the minutes from ``since`` on, oldest first."""
        rows = self.connections.run(
            "read outcome counts",
            lambda conn, _: conn.execute(
                self.sql.outcome_history, {"since": _minute(since)}
            ).fetchall(),
        )
        return [OutcomeCount(m.astimezone(UTC), q, n, o, c) for m, q, n, o, c in rows]


def _minute(moment: datetime) -> datetime:
    """The UTC minute ``moment`` falls in (as the SQLite driver counts it)."""
    return datetime.fromtimestamp(int(moment.timestamp()) // 60 * 60, UTC)
