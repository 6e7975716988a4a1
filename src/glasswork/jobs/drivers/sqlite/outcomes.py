"""The SQLite driver's outcome counts per minute (its
:class:`~glasswork.jobs.drivers.contract.OutcomeStore`, which the dashboard charts), in one
small table added by schema version 2 (:data:`.schema.OUTCOMES_SCHEMA`)::

    glasswork_outcomes(minute, queue, job_name, outcome, count)   # minute: Unix time

Recording adds to the row of its key (an upsert) and drops rows older than the driver's
``outcome_retention`` seconds, so the table holds at most a day of minutes by default.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from ..records import OutcomeCount
from .connections import QueueFile

_UPSERT = (
    "INSERT INTO glasswork_outcomes (minute, queue, job_name, outcome, count) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (minute, queue, job_name, outcome) "
    "DO UPDATE SET count = count + excluded.count"
)


class OutcomeCounts:
    """The outcome table of one queue ``file``."""

    def __init__(self, file: QueueFile) -> None:
        self.file = file

    def record(self, counts: Sequence[OutcomeCount], retention: float) -> None:
        """Add outcome counts (one transaction), dropping minutes older than ``retention``
        seconds."""
        rows = [
            (int(c.minute.timestamp()) // 60 * 60, c.queue, c.job_name, c.outcome, c.count)
            for c in counts
        ]
        with self.file.transaction() as conn:
            conn.executemany(_UPSERT, rows)
            conn.execute(
                "DELETE FROM glasswork_outcomes WHERE minute < ?", (time.time() - retention,)
            )

    def history(self, since: datetime) -> list[OutcomeCount]:
        """Outcome counts of the minutes from ``since`` on, oldest first."""
        rows = self.file.conn().execute(
            "SELECT minute, queue, job_name, outcome, count FROM glasswork_outcomes "
            "WHERE minute >= ? ORDER BY minute, queue, job_name, outcome",
            (int(since.timestamp()) // 60 * 60,),
        )
        return [OutcomeCount(datetime.fromtimestamp(m, UTC), q, n, o, c) for m, q, n, o, c in rows]
