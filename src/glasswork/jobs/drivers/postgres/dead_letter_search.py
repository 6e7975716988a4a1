"""Searching the PostgreSQL driver's dead letters (pages newest first, groups by reason, one
by id) and acting on every match of a search: the driver's
:class:`~glasswork.jobs.drivers.contract.DeadLetterSearch`, in SQL
(:mod:`glasswork.jobs.drivers.dead_letter_search`).

Ids come from an identity column, so they are never reused and pages are keyset pages on
the id. Schema version 4 adds the indexes ``(job_name, id)`` and ``(failed_at)``.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

from ..dead_letter_search import POSTGRES, row_id, where
from ..records import GROUPS, DeadLetterGroup, DeadLetterPage, DeadLetterQuery, DeadLetterRecord
from . import inspection

if TYPE_CHECKING:
    import psycopg

    from .connections import Connections
    from .statements import Statements

_COLUMNS = "id, queue, job_name, job_id, body, reason, failed_at"


class DeadLetterTable:
    """The dead-letter table of one driver, searched on its ``connections``."""

    def __init__(self, connections: Connections, statements: Statements) -> None:
        self._connections = connections
        self.sql = statements

    def page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """The dead letters ``query`` matches, newest first, after ``cursor``; their count and
        groups come from the same snapshot."""
        table = self.sql.dead_letter_table
        clause, params = where(query, POSTGRES, before=cursor)
        every, every_params = where(query, POSTGRES)

        def read(conn: psycopg.Connection, _: bool) -> tuple[Any, Any, Any]:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM {table} {clause} ORDER BY id DESC LIMIT %s",
                    [*params, limit + 1],
                ).fetchall()
                counts = conn.execute(
                    f"SELECT count(*), max(id), count(DISTINCT reason) FROM {table} {every}",
                    every_params,
                ).fetchone()
                groups = conn.execute(
                    f"SELECT reason, count(*), max(id), max(failed_at) FROM {table} {every} "
                    "GROUP BY reason ORDER BY count(*) DESC, max(id) DESC LIMIT %s",
                    [*every_params, GROUPS],
                ).fetchall()
            return rows, counts, groups

        rows, (total, newest, distinct), groups = self._connections.run("list dead letters", read)
        records = [inspection.dead_letter_record(*row) for row in rows[:limit]]
        return DeadLetterPage(
            records,
            records[-1].id if len(rows) > limit else None,
            total,
            None if newest is None else str(newest),
            [DeadLetterGroup(r, n, str(i), t.astimezone(UTC)) for r, n, i, t in groups],
            distinct,
        )

    def find(self, record_id: str) -> DeadLetterRecord | None:
        """The dead letter with this id (None: there is none, or the id is not a number)."""
        try:
            number = row_id(record_id, POSTGRES)
        except ValueError:
            return None
        row = self._connections.run(
            "read a dead letter",
            lambda conn, _: conn.execute(
                f"SELECT {_COLUMNS} FROM {self.sql.dead_letter_table} WHERE id = %s", (number,)
            ).fetchone(),
        )
        return inspection.dead_letter_record(*row) if row is not None else None

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """Move every dead letter ``query`` matches back onto its queue, in one transaction;
        one whose unique key a pending job holds stays. Returns how many moved."""
        clause, params = where(query, POSTGRES)
        candidates = (
            f"SELECT id, queue, body FROM {self.sql.dead_letter_table} {clause} "
            "ORDER BY id FOR UPDATE"
        )
        return self._connections.run(
            "redrive dead letters",
            lambda conn, _: inspection.redrive_rows(conn, self.sql, candidates, params),
        )

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """Delete every dead letter ``query`` matches; returns how many."""
        clause, params = where(query, POSTGRES)
        return self._connections.run(
            "purge dead letters",
            lambda conn, _: (
                conn.execute(f"DELETE FROM {self.sql.dead_letter_table} {clause}", params).rowcount
            ),
        )
