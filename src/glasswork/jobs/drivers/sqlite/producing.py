"""Storing jobs in the SQLite queue: one row each, due at ``visible_at``, in one transaction
per call; a duplicate unique key stores nothing and raises
:class:`~glasswork.jobs.DuplicateJobError` naming the job holding it. A debounced enqueue
(:func:`debounce`) supersedes the debounced job holding its key in the same transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from ...debounce import is_debounced, log_superseded, superseded_reason
from ...errors import DuplicateJobError, EnqueueError
from ...message import JobMessage
from ..records import EnqueueResult
from .connections import QueueFile
from .results import cancel_row

INSERT = (
    "INSERT INTO glasswork_jobs (queue, job_name, job_id, unique_key, body, visible_at, "
    "enqueued_at, priority, updated_at, fairness_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The latest time a job may be due: datetime's limit.
LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


def job_row(message: JobMessage, visible_at: float, now: float) -> tuple[object, ...]:
    """The values of :data:`INSERT` for ``message``, due at ``visible_at``."""
    return (
        message.queue,
        message.job_name,
        message.job_id,
        message.unique_key,
        message.encode(),
        visible_at,
        now,
        message.priority or 0,
        now,
        message.fairness_key,
    )


def insert(
    file: QueueFile, messages: Sequence[JobMessage], visible_at: float
) -> list[EnqueueResult]:
    """Store ``messages`` due at ``visible_at`` (epoch seconds): all of them, or (a duplicate
    unique key, a full disk) none."""
    if not visible_at <= LATEST:
        raise ValueError(
            f"job {messages[0].job_name!r} would be due after the year 9999: the delay "
            "is too long; nothing was stored"
        )
    now = time.time()
    conn = file.conn()
    try:
        if len(messages) == 1:
            # One statement is a transaction of its own (it takes the write lock before
            # reading, waiting on busy_timeout like BEGIN IMMEDIATE): no BEGIN, no COMMIT.
            ids = add_jobs(conn, messages, visible_at, now)
        else:
            with file.transaction(conn):
                ids = add_jobs(conn, messages, visible_at, now)
    except sqlite3.IntegrityError:
        raise _duplicate(conn, messages) from None
    except sqlite3.Error as exc:
        raise _store_error(file, messages, exc) from exc
    scheduled = datetime.fromtimestamp(visible_at, UTC) if visible_at > now + 0.001 else None
    return [
        EnqueueResult(str(row_id), m.job_id, m.queue, scheduled)
        for row_id, m in zip(ids, messages, strict=True)
    ]


def add_jobs(
    conn: sqlite3.Connection, messages: Sequence[JobMessage], visible_at: float, now: float
) -> list[int | None]:
    """Insert the rows of ``messages`` (inside the caller's transaction); their row ids."""
    return [conn.execute(INSERT, job_row(m, visible_at, now)).lastrowid for m in messages]


def debounce(file: QueueFile, message: JobMessage, window: float) -> EnqueueResult:
    """Store ``message`` due ``window`` seconds from now, in one write transaction that
    first supersedes the job holding its unique key, if that job was enqueued debounced:
    its row is deleted (a delivery of it under way can no longer settle it: its receipt
    matches nothing) and it ends cancelled. A job enqueued without debounce keeps the key:
    :class:`DuplicateJobError`."""
    assert message.unique_key is not None, "a debounced message has a unique key"
    now = time.time()
    visible_at = now + window
    if not visible_at <= LATEST:
        raise ValueError(
            f"job {message.job_name!r} would be due after the year 9999: the debounce window "
            "is too long; nothing was stored"
        )
    row = job_row(message, visible_at, now)

    def supersede_and_insert(conn: sqlite3.Connection) -> tuple[int | None, str | None]:
        held = conn.execute(
            "SELECT id, job_id, attempts, leased, body FROM glasswork_jobs "
            "WHERE job_name = ? AND unique_key = ?",
            (message.job_name, message.unique_key),
        ).fetchone()
        superseded = None
        if held is not None:
            row_id, job_id, attempts, leased, body = held
            if not is_debounced(body):
                raise DuplicateJobError(message.job_name, str(message.unique_key), job_id)
            reason = superseded_reason(message.job_id, running=bool(leased))
            cancel_row(conn, row_id, attempts, reason, claimed=False)
            superseded = job_id
        return conn.execute(INSERT, row).lastrowid, superseded

    conn = file.conn()
    try:
        try:  # the first of a burst: the key is free, and one statement stores the job
            row_id, superseded = conn.execute(INSERT, row).lastrowid, None
        except sqlite3.IntegrityError:
            # BEGIN IMMEDIATE: the key is looked up under the write lock, so two racing
            # enqueues of one key run one after the other.
            with file.transaction(conn):
                row_id, superseded = supersede_and_insert(conn)
    except sqlite3.Error as exc:
        raise _store_error(file, [message], exc) from exc
    if superseded is not None:
        log_superseded(message.job_name, message.unique_key, superseded, message.job_id)
    scheduled = datetime.fromtimestamp(visible_at, UTC) if window > 0.001 else None
    return EnqueueResult(str(row_id), message.job_id, message.queue, scheduled)


def _store_error(
    file: QueueFile, messages: Sequence[JobMessage], error: sqlite3.Error
) -> EnqueueError:
    """An enqueue the database refused (a full disk, a read-only file, a lock held past
    ``busy_timeout``), naming the file and SQLite's reason; nothing was stored."""
    first = messages[0]
    what = (
        f"job {first.job_name!r} (id {first.job_id})"
        if len(messages) == 1
        else f"{len(messages)} jobs"
    )
    return EnqueueError(f"could not store {what} in {file.path}: {error}; nothing was stored")


def _duplicate(conn: sqlite3.Connection, messages: Sequence[JobMessage]) -> Exception:
    seen: dict[tuple[str, str], str] = {}
    for m in messages:
        if m.unique_key is None:
            continue
        key = (m.job_name, m.unique_key)
        held = conn.execute(
            "SELECT job_id FROM glasswork_jobs WHERE job_name = ? AND unique_key = ?", key
        ).fetchone()
        if held is not None:
            return DuplicateJobError(m.job_name, m.unique_key, held[0])
        if key in seen:  # two messages of this batch share the key
            return DuplicateJobError(m.job_name, m.unique_key, seen[key])
        seen[key] = m.job_id
    return sqlite3.IntegrityError("unique constraint failed on glasswork_jobs")
