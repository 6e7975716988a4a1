"""The SQLite driver's dead letters: keeping one, listing, redriving and purging them
(:class:`~glasswork.jobs.drivers.contract.DeadLetterAdmin`), and searching them a page at a
time, newest first, grouped by reason, acting on every match
(:class:`~glasswork.jobs.drivers.contract.DeadLetterSearch`, in SQL:
:mod:`glasswork.jobs.drivers.dead_letter_search`).

Dead-letter ids are never reused (``AUTOINCREMENT``, schema version 4), so an id copied into
a ticket always names the same dead letter, and pages are keyset pages on the id.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ...errors import ConfigurationError
from ...message import identify
from ..dead_letter_search import SQLITE, row_id, where
from ..lifecycle import fairness_of, wire_fields
from ..records import GROUPS, DeadLetterGroup, DeadLetterPage, DeadLetterQuery, DeadLetterRecord
from .connections import QueueFile
from .producing import INSERT

_TABLE = "glasswork_dead_letters"
_COLUMNS = "id, queue, job_name, job_id, body, reason, failed_at"


def add_dead(
    conn: sqlite3.Connection,
    body: str,
    reason: str,
    queue: str | None,
    now: float,
    traceback: str | None = None,
) -> None:
    """Keep ``body`` as a dead letter (inside the caller's transaction)."""
    job_name, job_id, _ = identify(body)
    conn.execute(
        f"INSERT INTO {_TABLE} (queue, job_name, job_id, body, reason, failed_at, traceback) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (queue, job_name, job_id, body, reason, now, traceback),
    )


class DeadLetters:
    """The dead letters of one queue ``file``."""

    def __init__(self, file: QueueFile) -> None:
        self.file = file

    def add(self, body: str, reason: str, queue: str | None, traceback: str | None = None) -> None:
        """Keep ``body`` as a dead letter, with the reason and the failure's traceback."""
        self.file.write(lambda c: add_dead(c, body, reason, queue, time.time(), traceback))

    # -- listing, redriving, purging ---------------------------------------------------------

    def records(self, queue: str | None = None, limit: int = 100) -> list[DeadLetterRecord]:
        """Dead letters, oldest first (``queue`` filters)."""
        sql = (
            f"SELECT id, queue, job_name, job_id, body, reason, failed_at, traceback FROM {_TABLE}"
        )
        params: list[Any] = []
        if queue is not None:
            sql += " WHERE queue = ?"
            params.append(queue)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [
            DeadLetterRecord(str(i), q, n, j, b, r, datetime.fromtimestamp(t, UTC), tb)
            for i, q, n, j, b, r, t, tb in self.file.conn().execute(sql, params)
        ]

    def redrive(self, ids: Sequence[int | str] | None = None, *, queue: str | None = None) -> int:
        """Move dead letters back onto their queues to run again now, with a fresh attempt
        count: the given ``ids``, or all (of ``queue``, when given). A job whose unique key is
        held by a pending job stays in the dead letter. Returns how many moved."""
        clauses: list[str] = []
        params: list[Any] = []
        if ids is not None:
            if not ids:
                return 0
            clauses.append(f"id IN ({','.join('?' * len(ids))})")
            params.extend(_row_ids(ids))
        if queue is not None:
            clauses.append("queue = ?")
            params.append(queue)
        return self._redrive_where(f"WHERE {' AND '.join(clauses)}" if clauses else "", params)

    def _redrive_where(self, clause: str, params: list[Any]) -> int:
        """Redrive the dead letters ``clause`` (``WHERE ...`` or empty) selects."""
        sql = f"SELECT id, queue, body FROM {_TABLE} {clause}"
        moved = 0
        with self.file.transaction() as conn:
            now = time.time()
            for dead_id, dead_queue, body in conn.execute(sql, params).fetchall():
                job_name, job_id, unique_key = identify(body)
                row = (dead_queue or "default", job_name, job_id, unique_key, body, now, now)
                try:
                    conn.execute(INSERT, (*row, wire_fields(body)[3], now, fairness_of(body)))
                except sqlite3.IntegrityError:
                    continue  # a pending job holds its unique key; leave it dead
                conn.execute(f"DELETE FROM {_TABLE} WHERE id = ?", (dead_id,))
                moved += 1
        return moved

    def purge(self, ids: Sequence[int | str] | None = None, *, queue: str | None = None) -> int:
        """Delete dead letters (the given ``ids``, or all; of ``queue``, when given). Returns
        how many."""
        of_queue, params = ("", []) if queue is None else (" AND queue = ?", [queue])
        with self.file.transaction() as conn:
            if ids is None:
                where = "" if queue is None else " WHERE queue = ?"
                return conn.execute(f"DELETE FROM {_TABLE}{where}", params).rowcount
            sql = f"DELETE FROM {_TABLE} WHERE id = ?{of_queue}"
            return sum(conn.execute(sql, [i, *params]).rowcount for i in _row_ids(ids))

    # -- searching ---------------------------------------------------------------------------

    def page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """The dead letters ``query`` matches, newest first, after ``cursor``; their count and
        groups come from the same snapshot."""
        clause, params = where(query, SQLITE, before=cursor)
        every, every_params = where(query, SQLITE)
        with self.file.snapshot() as conn:
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

    def find(self, record_id: str) -> DeadLetterRecord | None:
        """The dead letter with this id (None: there is none, or the id is not a number)."""
        try:
            number = row_id(record_id, SQLITE)
        except ValueError:
            return None
        row = (
            self.file.conn()
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
        with self.file.transaction() as conn:
            return conn.execute(f"DELETE FROM {_TABLE} {clause}", params).rowcount


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


def _row_ids(ids: Sequence[int | str]) -> list[int]:
    """Dead-letter ids as rows: the ints of :attr:`DeadLetterRecord.id` strings."""
    try:
        return [int(i) for i in ids]
    except ValueError:
        raise ConfigurationError(f"SQLite dead-letter ids are numbers, got {list(ids)}") from None
