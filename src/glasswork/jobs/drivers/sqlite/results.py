"""The SQLite queue's ended jobs (``glasswork_job_results``, schema version 5): a row per job
that ended while its status was to be kept, written in the transaction that removes its job
row (so a status never says ``done`` for a job still queued), read by job id or newest
first, and deleted once it expires (a bounded DELETE now and then, by the writers).
Times are Unix seconds; a result is JSON text."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ..lifecycle import dump_result, parse_time, wire_fields
from ..records import DEFAULT_RESULT_TTL, FinalStatus, ReceivedMessage

TABLE = "glasswork_job_results"
#: The columns of a row, in the order reads return them.
COLUMNS = (
    "job_id, job_name, queue, state, attempts, result, error, traceback, progress, "
    "progress_note, priority, enqueued_at, updated_at"
)
_UPSERT = (
    "ON CONFLICT (job_id) DO UPDATE SET job_name = excluded.job_name, queue = excluded.queue, "
    "state = excluded.state, attempts = excluded.attempts, result = excluded.result, "
    "error = excluded.error, traceback = excluded.traceback, progress = excluded.progress, "
    "progress_note = excluded.progress_note, priority = excluded.priority, "
    "enqueued_at = excluded.enqueued_at, updated_at = excluded.updated_at, "
    "expires_at = excluded.expires_at"
)
# From the job row the receipt (id, attempts) names: nothing when the delivery is no longer
# this worker's (its lease ran out and another worker holds the job), so a status is
# written only with the removal of the row. ``attempts - ?``: a claim that only turns a
# job it never runs into a cancelled one takes back its count.
FROM_ROW = (
    f"INSERT INTO {TABLE} (job_id, job_name, queue, state, attempts, result, error, traceback, "
    "progress, progress_note, priority, enqueued_at, updated_at, expires_at) "
    "SELECT job_id, job_name, queue, ?, attempts - ?, ?, ?, ?, COALESCE(?, progress), "
    "COALESCE(?, progress_note), "
    "priority, enqueued_at, ?, ? FROM glasswork_jobs "
    f"WHERE id = ? AND attempts = ? AND job_id IS NOT NULL {_UPSERT}"
)
_FROM_VALUES = (
    f"INSERT INTO {TABLE} (job_id, job_name, queue, state, attempts, result, error, traceback, "
    "progress, progress_note, priority, enqueued_at, updated_at, expires_at) "
    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) {_UPSERT}"
)
#: Expired rows one purge deletes at most (at least: it grows with what was written).
PURGE_BATCH = 1000
#: Seconds between two purges by one driver.
PURGE_EVERY = 10.0


def write_ended(
    conn: sqlite3.Connection, finished: Sequence[tuple[ReceivedMessage, FinalStatus]], now: float
) -> int:
    """Record how these deliveries' jobs ended (the caller's transaction; before their rows
    are deleted): those with ``keep_for`` > 0 only. A ``dead`` one's row was removed already
    when its dead letter was kept: its status comes from the delivery's body. Returns how
    many were written."""
    rows = []
    written = 0
    for received, final in finished:
        if final.keep_for <= 0:
            continue
        values = _final_values(final, now)
        if final.state == "dead":
            written += _write_dead(conn, received, final, values, now)
        else:
            rows.append((final.state, 0, *values, *received.receipt))
    if rows:
        before = conn.total_changes
        conn.executemany(FROM_ROW, rows)
        written += conn.total_changes - before
    return written


def _final_values(final: FinalStatus, now: float) -> tuple[Any, ...]:
    return (
        dump_result(final.result),
        final.error,
        final.traceback,
        final.progress,
        final.progress_note,
        now,
        now + final.keep_for,
    )


def _write_dead(
    conn: sqlite3.Connection,
    received: ReceivedMessage,
    final: FinalStatus,
    values: tuple[Any, ...],
    now: float,
) -> int:
    # The row is still there when the worker has not acknowledged the delivery yet.
    written = conn.execute(FROM_ROW, ("dead", 0, *values, *received.receipt)).rowcount
    if written:
        return written
    job_id, job_name, enqueued, priority = wire_fields(received.body)
    if job_id is None:
        return 0  # a malformed body: its dead letter is all there is to know
    at = parse_time(enqueued)
    result, error, traceback, progress, note, updated, expires = values
    return conn.execute(
        _FROM_VALUES,
        (
            job_id,
            job_name,
            received.queue,
            "dead",
            received.attempt,
            result,
            error,
            traceback,
            progress,
            note,
            priority,
            at.timestamp() if at is not None else None,
            updated,
            expires,
        ),
    ).rowcount


def cancel_row(
    conn: sqlite3.Connection, row_id: int, attempts: int, reason: str, *, claimed: bool
) -> None:
    """End job row ``(row_id, attempts)`` as cancelled: its status kept a day (the job's own
    ``result_ttl`` is not known here), the row deleted (the caller's transaction).
    ``claimed``: a claim just counted an attempt it will not run."""
    now = time.time()
    conn.execute(
        FROM_ROW,
        (
            "cancelled",
            1 if claimed else 0,
            None,
            reason,
            None,
            None,
            None,
            now,
            now + DEFAULT_RESULT_TTL,
            row_id,
            attempts,
        ),
    )
    conn.execute("DELETE FROM glasswork_jobs WHERE id = ? AND attempts = ?", (row_id, attempts))


def purge(conn: sqlite3.Connection, now: float, most: int) -> int:
    """Delete up to ``most`` expired rows (the caller's transaction); returns how many."""
    return conn.execute(
        f"DELETE FROM {TABLE} WHERE job_id IN "
        f"(SELECT job_id FROM {TABLE} WHERE expires_at <= ? LIMIT ?)",
        (now, most),
    ).rowcount
