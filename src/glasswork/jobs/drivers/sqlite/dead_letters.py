"""Searching the SQLite driver's dead letters (pages newest first, groups by reason, one by
id) and acting on every match of a search; see :mod:`glasswork.jobs.drivers.dead_letter_query`.

Schema version 4 makes dead-letter ids never reused: the table is rebuilt with
``AUTOINCREMENT`` (without it SQLite hands the highest id out again after that row is
deleted, so an id copied into a ticket could later name another job), and indexes
``(job_name, id)`` and ``(failed_at)`` serve the filters.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..dead_letter_search import SQLITE, row_id, where
from ..records import GROUPS, DeadLetterGroup, DeadLetterPage, DeadLetterQuery, DeadLetterRecord

_TABLE = "glasswork_dead_letters"
_COLUMNS = "id, queue, job_name, job_id, body, reason, failed_at"
_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS glasswork_dead_letters_job ON {_TABLE} (job_name, id)",
    f"CREATE INDEX IF NOT EXISTS glasswork_dead_letters_failed ON {_TABLE} (failed_at)",
)


def never_reuse_ids(conn: sqlite3.Connection) -> None:
    """Schema step: rebuild the dead-letter table with ``AUTOINCREMENT`` (its columns and
    indexes as they are, whatever earlier steps added), then add the search indexes. Runs
    inside the migration's transaction."""
    (create,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (_TABLE,)
    ).fetchone()
    if "AUTOINCREMENT" not in create.upper():
        rebuilt = re.sub(
            r"\bid\s+INTEGER\s+PRIMARY\s+KEY\b",
            "id INTEGER PRIMARY KEY AUTOINCREMENT",
            create,
            count=1,
            flags=re.IGNORECASE,
        ).replace(_TABLE, f"{_TABLE}_v3", 1)
        indexes = [
            sql
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                (_TABLE,),
            )
        ]
        conn.execute(rebuilt)
        # Same columns in the same order; sqlite_sequence starts at the highest id kept.
        conn.execute(f"INSERT INTO {_TABLE}_v3 SELECT * FROM {_TABLE}")
        conn.execute(f"DROP TABLE {_TABLE}")
        conn.execute(f"ALTER TABLE {_TABLE}_v3 RENAME TO {_TABLE}")
        for sql in indexes:
            conn.execute(sql)
    for sql in _INDEXES:
        conn.execute(sql)


class SQLiteDeadLetterSearch:
    """Dead-letter search for :class:`~glasswork.jobs.drivers.sqlite.SQLiteQueueDriver` (a
    mixin: it uses the driver's connections and its redrive)."""

    if TYPE_CHECKING:  # the driver's

        def _conn(self) -> sqlite3.Connection: ...

        def _transaction(
            self, conn: sqlite3.Connection | None = None
        ) -> AbstractContextManager[sqlite3.Connection]: ...

        def _redrive_where(self, clause: str, params: list[Any]) -> int: ...

    def dead_letter_page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """The dead letters ``query`` matches, newest first, after ``cursor``; their count and
        groups come from the same snapshot."""
        clause, params = where(query, SQLITE, before=cursor)
        every, every_params = where(query, SQLITE)
        with self._snapshot() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM {_TABLE} {clause} ORDER BY id DESC LIMIT ?",
                [*params, limit + 1],
            ).fetchall()
            total, newest, distinct = conn.execute(
                f"SELECT count(*), max(id), count(DISTINCT reason) FROM {_TABLE} {every}",
                every_params,
            ).fetchone()
            groups = conn.execute(
                f"SELECT reason, count(*), max(id), max(failed_at) FROM {_TABLE} {every} "
                "GROUP BY reason ORDER BY count(*) DESC, max(id) DESC LIMIT ?",
                [*every_params, GROUPS],
            ).fetchall()
        records = [_record(*row) for row in rows[:limit]]
        return DeadLetterPage(
            records,
            records[-1].id if len(rows) > limit else None,
            total,
            None if newest is None else str(newest),
            [DeadLetterGroup(r, n, str(i), _time(t)) for r, n, i, t in groups],
            distinct,
        )

    def find_dead_letter(self, record_id: str) -> DeadLetterRecord | None:
        """The dead letter with this id (None: there is none, or the id is not a number)."""
        try:
            number = row_id(record_id, SQLITE)
        except ValueError:
            return None
        row = (
            self._conn()
            .execute(f"SELECT {_COLUMNS} FROM {_TABLE} WHERE id = ?", (number,))
            .fetchone()
        )
        return _record(*row) if row is not None else None

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """Move every dead letter ``query`` matches back onto its queue, in one transaction;
        one whose unique key a pending job holds stays. Returns how many moved."""
        return self._redrive_where(*where(query, SQLITE))

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """Delete every dead letter ``query`` matches, in one transaction; returns how many."""
        clause, params = where(query, SQLITE)
        with self._transaction() as conn:
            return conn.execute(f"DELETE FROM {_TABLE} {clause}", params).rowcount

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: its statements see one state of the file."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")


def _record(
    number: int,
    queue: str | None,
    job_name: str | None,
    job_id: str | None,
    body: str,
    reason: str,
    failed_at: float,
) -> DeadLetterRecord:
    return DeadLetterRecord(str(number), queue, job_name, job_id, body, reason, _time(failed_at))


def _time(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None
