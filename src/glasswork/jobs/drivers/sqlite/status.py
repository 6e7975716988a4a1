"""A job's life in the SQLite queue (:class:`~glasswork.jobs.drivers.contract.StatusStore`).

A live job's status is read off its row (``scheduled``, ``pending``, ``running``,
``retrying``: :func:`~glasswork.jobs.drivers.lifecycle.live_state`), with the last error,
progress and a cancel request the row gains in schema version 5. An ended job's status is
written with the removal of its row, in one transaction (:mod:`.results`), and kept for its
``keep_for`` seconds; with ``keep_for`` 0 nothing is written and finishing is the plain
acknowledgement. A dead-lettered job whose end was not kept is found in the dead letters.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ...workflows.advancing import ends_of
from ..contract import StatusStore
from ..lifecycle import (
    CANCELLED,
    LIVE_STATES,
    check_state,
    live_state,
    load_result,
    newest_first,
)
from ..records import FinalStatus, JobStatus, ReceivedMessage
from . import results, settling
from .connections import QueueFile

_LIVE_COLUMNS = (
    "job_id, job_name, queue, leased, attempts, visible_at, priority, last_error, "
    "last_traceback, progress, progress_note, enqueued_at, COALESCE(updated_at, enqueued_at)"
)
_DEAD_COLUMNS = "job_id, job_name, COALESCE(queue, 'default'), reason, traceback, failed_at"


class StatusRows(StatusStore):
    """The :class:`StatusStore` methods of the SQLite driver, on its ``file``."""

    file: QueueFile
    #: Counts workflow steps' ends in a transaction (:class:`~.workflows.WorkflowRows`).
    advance_workflows: Callable[[sqlite3.Connection, Sequence[FinalStatus]], None]
    #: Counts a workflow step cancelled while it waited (:class:`~.workflows.WorkflowRows`).
    cancel_workflow_step: Callable[[sqlite3.Connection, str, str], None]
    _purge_lock = threading.Lock()
    _next_purge = 0.0
    _written = 0

    # -- reading ---------------------------------------------------------------------------

    def job_status(self, job_id: str) -> JobStatus | None:
        """The job's row while it is queued, then its kept end, then its dead letter; read
        in one snapshot, so a job moving between them meanwhile is still found. (Job ids
        of waiting jobs are not indexed, so that enqueueing pays nothing: the queued rows
        are scanned, as :meth:`find_job` does; kept ends are found by key.)"""
        now = time.time()
        with self.file.snapshot() as conn:
            row = conn.execute(
                f"SELECT {_LIVE_COLUMNS} FROM glasswork_jobs WHERE job_id = ? "
                "ORDER BY id DESC LIMIT 1",
                (job_id,),
            ).fetchone()
            if row is not None:
                return _live(row, now)
            row = conn.execute(
                f"SELECT {results.COLUMNS} FROM {results.TABLE} "
                "WHERE job_id = ? AND expires_at > ?",
                (job_id, now),
            ).fetchone()
            if row is not None:
                return _ended(row)
            row = conn.execute(
                f"SELECT {_DEAD_COLUMNS} FROM glasswork_dead_letters WHERE job_id = ? "
                "ORDER BY id DESC LIMIT 1",
                (job_id,),
            ).fetchone()
        return None if row is None else _dead(row)

    def job_history(
        self,
        *,
        state: str | None = None,
        job_name: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[JobStatus]:
        """Jobs newest first (by ``updated_at``), filtered; ``before`` is the ``job_id`` of
        the last one of the previous page (an unknown one: an empty page). Queued jobs are
        scanned (their table has no index on the time); kept ends and dead letters are read
        through their time indexes."""
        check_state(state)
        if limit <= 0:
            return []
        now = time.time()
        pages: list[list[JobStatus]] = []
        with self.file.snapshot() as conn:
            after: tuple[float, str] | None = None
            if before is not None:
                at = _cursor_time(conn, before, now)
                if at is None:
                    return []
                after = (at, before)
            if state is None or state in LIVE_STATES:
                pages.append(_live_page(conn, state, job_name, queue, limit, after, now))
            if state is None or state not in LIVE_STATES:
                pages.append(_ended_page(conn, state, job_name, queue, limit, after, now))
            if state in (None, "dead"):
                pages.append(_dead_page(conn, job_name, queue, limit, after))
        return newest_first(pages, limit)

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs have been asked to stop."""
        ids = list(job_ids)
        found: set[str] = set()
        conn = self.file.conn()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found.update(
                job_id
                for (job_id,) in conn.execute(
                    "SELECT job_id FROM glasswork_jobs WHERE job_id IN "
                    f"({','.join('?' * len(chunk))}) AND leased = 1 AND cancel_requested = 1",
                    chunk,
                )
            )
        return found

    # -- writing ---------------------------------------------------------------------------

    def cancel(self, job_id: str, reason: str = CANCELLED) -> bool:
        """A waiting job ends as cancelled now, its row deleted (it never runs, also after a
        restart), its status kept a day; a running one is marked, its worker asks it to stop,
        and a claim ends it as cancelled should that worker die. One write transaction, so a
        claim comes wholly before or after it. False: no such job is queued."""

        def cancel_rows(conn: sqlite3.Connection) -> bool:
            rows = conn.execute(
                "SELECT id, attempts, leased FROM glasswork_jobs WHERE job_id = ?", (job_id,)
            ).fetchall()
            for row_id, attempts, leased in rows:
                if leased:
                    conn.execute(
                        "UPDATE glasswork_jobs SET cancel_requested = 1, updated_at = ? "
                        "WHERE id = ?",
                        (time.time(), row_id),
                    )
                else:
                    results.cancel_row(conn, row_id, attempts, reason, claimed=False)
                    self.cancel_workflow_step(conn, job_id, reason)
            return bool(rows)

        cancelled: bool = self.file.write(cancel_rows)
        return cancelled

    def record_start(self, received: ReceivedMessage) -> bool:
        """True: claims never hand out a cancelled or ended job (no round trip)."""
        return True

    def record_retry(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        """Keep the failure on the job's row (state ``retrying`` once it is released)."""
        self.file.write(
            lambda c: c.execute(
                "UPDATE glasswork_jobs SET last_error = ?, last_traceback = ?, updated_at = ? "
                "WHERE id = ? AND attempts = ?",
                (error, traceback, time.time(), *received.receipt),
            )
        )

    def record_progress(self, job_id: str, fraction: float, note: str | None) -> None:
        """Keep the running job's progress on its row."""
        self.file.write(
            lambda c: c.execute(
                "UPDATE glasswork_jobs SET progress = ?, progress_note = ?, updated_at = ? "
                "WHERE job_id = ? AND leased = 1",
                (fraction, note, time.time(), job_id),
            )
        )

    def finish(self, received: ReceivedMessage, final: FinalStatus) -> None:
        self.finish_many([(received, final)])

    def finish_many(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> None:
        """Remove these deliveries' rows and keep how their jobs ended, in one transaction.
        With nothing to keep (every ``keep_for`` 0) it is exactly :meth:`ack_many`."""
        steps = ends_of(finished)  # workflow steps' ends (none, for most batches)
        if not steps and not any(final.keep_for > 0 for _, final in finished):
            # A dead one's row went with the worker's acknowledgement after its dead letter;
            # deleting by receipt again is harmless (ids are never reused) and spares the
            # job a rerun should the worker have left that to this call.
            settling.ack(self.file, [r for r, _ in finished])
            return
        receipts = [r.receipt for r, _ in finished]

        def finish_rows(conn: sqlite3.Connection) -> None:
            now = time.time()
            written = results.write_ended(conn, finished, now)
            settling.delete_receipts(conn, receipts)
            if steps:
                self.advance_workflows(conn, steps)
            self._purge(conn, now, written)

        self.file.write(finish_rows)

    def _purge(self, conn: sqlite3.Connection, now: float, written: int) -> None:
        """Now and then (every :data:`~.results.PURGE_EVERY` seconds), delete expired ends:
        at least as many as were written since, so they never pile up."""
        with self._purge_lock:
            self._written += written
            if now < self._next_purge:
                return
            most = max(results.PURGE_BATCH, 2 * self._written)
            self._next_purge = now + results.PURGE_EVERY
            self._written = 0
        results.purge(conn, now, most)


def _cursor_time(conn: sqlite3.Connection, job_id: str, now: float) -> float | None:
    """The time a page of history after job ``job_id`` starts from, as stored (a time
    read back through ``datetime`` may be rounded)."""
    for sql in (
        "SELECT COALESCE(updated_at, enqueued_at) FROM glasswork_jobs WHERE job_id = ? "
        "ORDER BY id DESC LIMIT 1",
        f"SELECT updated_at FROM {results.TABLE} WHERE job_id = ? AND expires_at > {now!r}",
        "SELECT failed_at FROM glasswork_dead_letters WHERE job_id = ? ORDER BY id DESC LIMIT 1",
    ):
        row = conn.execute(sql, (job_id,)).fetchone()
        if row is not None:
            return float(row[0])
    return None


# -- rows to statuses ----------------------------------------------------------------------


def _time(seconds: Any) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _live(row: Sequence[Any], now: float) -> JobStatus:
    (job_id, name, queue, leased, attempts, visible_at, priority, error, trace, progress, note,
     enqueued, updated) = row  # fmt: skip
    return JobStatus(
        job_id=job_id,
        job_name=name,
        queue=queue,
        state=live_state(leased, attempts, visible_at > now),
        attempts=attempts,
        progress=progress,
        progress_note=note,
        error=error,
        traceback=trace,
        enqueued_at=_time(enqueued),
        updated_at=_time(updated),
        priority=priority,
    )


def _ended(row: Sequence[Any]) -> JobStatus:
    (job_id, name, queue, state, attempts, result, error, trace, progress, note, priority,
     enqueued, updated) = row  # fmt: skip
    return JobStatus(
        job_id=job_id,
        job_name=name,
        queue=queue,
        state=state,
        attempts=attempts,
        progress=progress,
        progress_note=note,
        result=load_result(result),
        error=error,
        traceback=trace,
        enqueued_at=_time(enqueued),
        updated_at=_time(updated),
        priority=priority,
    )


def _dead(row: Sequence[Any]) -> JobStatus:
    job_id, name, queue, reason, trace, failed_at = row
    return JobStatus(
        job_id=job_id,
        job_name=name,
        queue=queue,
        state="dead",
        error=reason,
        traceback=trace,
        updated_at=_time(failed_at),
    )


def _filters(
    job_name: str | None, queue: str | None, after: tuple[float, str] | None, time_column: str
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if job_name is not None:
        clauses.append("job_name = ?")
        params.append(job_name)
    if queue is not None:
        clauses.append("queue = ?")
        params.append(queue)
    if after is not None:
        clauses.append(f"({time_column} < ? OR ({time_column} = ? AND job_id < ?))")
        params.extend([after[0], after[0], after[1]])
    return " AND ".join(clauses) or "1", params


def _live_page(
    conn: sqlite3.Connection,
    state: str | None,
    job_name: str | None,
    queue: str | None,
    limit: int,
    after: tuple[float, str] | None,
    now: float,
) -> list[JobStatus]:
    updated = "COALESCE(updated_at, enqueued_at)"
    where, params = _filters(job_name, queue, after, updated)
    where += " AND job_id IS NOT NULL"
    if state is not None:
        where += (
            " AND "
            + {
                "running": "leased = 1",
                "retrying": "leased = 0 AND attempts > 0",
                "scheduled": "leased = 0 AND attempts = 0 AND visible_at > ?",
                "pending": "leased = 0 AND attempts = 0 AND visible_at <= ?",
            }[state]
        )
        if state in ("scheduled", "pending"):
            params.append(now)
    rows = conn.execute(
        f"SELECT {_LIVE_COLUMNS} FROM glasswork_jobs WHERE {where} "
        f"ORDER BY {updated} DESC, job_id DESC LIMIT ?",
        [*params, limit],
    )
    return [_live(row, now) for row in rows]


def _ended_page(
    conn: sqlite3.Connection,
    state: str | None,
    job_name: str | None,
    queue: str | None,
    limit: int,
    after: tuple[float, str] | None,
    now: float,
) -> list[JobStatus]:
    where, params = _filters(job_name, queue, after, "updated_at")
    where += " AND expires_at > ?"
    params.append(now)
    if state is not None:
        where += " AND state = ?"
        params.append(state)
    rows = conn.execute(
        f"SELECT {results.COLUMNS} FROM {results.TABLE} WHERE {where} "
        "ORDER BY updated_at DESC, job_id DESC LIMIT ?",
        [*params, limit],
    )
    return [_ended(row) for row in rows]


def _dead_page(
    conn: sqlite3.Connection,
    job_name: str | None,
    queue: str | None,
    limit: int,
    after: tuple[float, str] | None,
) -> list[JobStatus]:
    where, params = _filters(job_name, None, after, "failed_at")
    if queue is not None:
        where += " AND COALESCE(queue, 'default') = ?"
        params.append(queue)
    rows = conn.execute(
        f"SELECT {_DEAD_COLUMNS} FROM glasswork_dead_letters WHERE {where} "
        "AND job_id IS NOT NULL ORDER BY failed_at DESC, job_id DESC LIMIT ?",
        [*params, limit],
    )
    return [_dead(row) for row in rows]
