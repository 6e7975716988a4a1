"""Inserting jobs, on the driver's own connection or on the caller's (inside its transaction).

``ON CONFLICT ... DO NOTHING`` on the unique-key index means a duplicate never raises inside
the caller's transaction (which would abort it): the driver sees fewer rows come back,
removes the ones it did insert, and raises :class:`DuplicateJobError` with the transaction
still usable. Rows are read as tuples whatever ``row_factory`` the caller's connection has.
A debounced enqueue is one call of the schema's ``glasswork_debounce`` function
(:func:`debounce_job`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from ...debounce import log_superseded, superseded_reason
from ...errors import DuplicateJobError
from ...message import JobMessage
from ..contract import Debounce, QueueDriver
from ..records import DEFAULT_RESULT_TTL, EnqueueResult
from .deadlines import BoundedConnection
from .statements import Statements


class Producer(QueueDriver, Debounce):
    """The four ways to enqueue, each one insert (:meth:`_insert`), and the debounced one
    (:meth:`_debounce`), so the driver and its bound views (:meth:`QueueDriver.bind`)
    enqueue alike."""

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        return self._insert([message])[0]

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self._insert([message], delay=delay_seconds)[0]

    def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        return self._insert([message], at=run_at)[0]

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        """Insert every message in one statement: all are stored, or (on a duplicate unique
        key) none."""
        return self._insert(messages, delay=delay_seconds) if messages else []

    def enqueue_debounced(self, message: JobMessage, window_seconds: float) -> EnqueueResult:
        """Insert ``message`` due ``window_seconds`` from now, superseding the debounced job
        holding its unique key, in one call (see :func:`debounce_job`)."""
        return self._debounce(message, max(0.0, window_seconds))

    @abstractmethod
    def _debounce(self, message: JobMessage, window: float) -> EnqueueResult:
        """:meth:`enqueue_debounced` with :func:`debounce_job`."""

    @abstractmethod
    def _insert(
        self, messages: Sequence[JobMessage], *, delay: float = 0.0, at: datetime | None = None
    ) -> list[EnqueueResult]:
        """Insert ``messages`` due after ``delay`` seconds, or ``at``, with :func:`insert_jobs`."""


def insert_jobs(
    conn: psycopg.Connection,
    statements: Statements,
    messages: Sequence[JobMessage],
    *,
    delay: float = 0.0,
    at: datetime | None = None,
) -> list[EnqueueResult]:
    """Insert ``messages`` in one statement, due after ``delay`` seconds or ``at``: all of
    them, or (on a duplicate unique key) none. One statement is atomic on its own; a batch
    with unique keys, which may have to take back the jobs it inserted before a duplicate,
    gets a transaction when it has none (autocommit), so none of them is ever visible."""
    unique = len(messages) > 1 and any(m.unique_key is not None for m in messages)
    if conn.autocommit and unique:
        with conn.transaction():
            return _insert(conn, statements, messages, delay, at)
    return _insert(conn, statements, messages, delay, at)


def debounce_job(
    conn: psycopg.Connection, statements: Statements, message: JobMessage, window: float
) -> EnqueueResult:
    """Insert ``message`` due ``window`` seconds from now, superseding the job holding its
    unique key when that one was enqueued debounced (its row deleted, its end kept as
    cancelled), in one call of ``glasswork_debounce``, which is atomic on its own and inside
    the caller's transaction; racing calls for one key take turns on the holder's row lock.
    Safe to repeat after a lost connection (it finds its own job). A job enqueued without
    debounce keeps the key: :class:`DuplicateJobError`, nothing changed."""
    assert message.unique_key is not None, "a debounced message has a unique key"
    params = {
        "queue": message.queue,
        "name": message.job_name,
        "job_id": message.job_id,
        "key": message.unique_key,
        "body": message.encode(),
        "delay": window,
        "priority": message.priority or 0,
        "reason": superseded_reason(message.job_id),
        "keep": DEFAULT_RESULT_TTL,
        "fairness_key": message.fairness_key,
    }
    prepare = None if conn.prepare_threshold is None else True
    row = _execute(conn, statements.debounce, params, prepare).fetchone()
    assert row is not None, "glasswork_debounce answers one row"
    row_id, due, later, superseded, held_by = row
    if held_by is not None:
        raise DuplicateJobError(message.job_name, message.unique_key, held_by)
    if superseded is not None:
        log_superseded(message.job_name, message.unique_key, superseded, message.job_id)
    return EnqueueResult(
        str(row_id), message.job_id, message.queue, due.astimezone(UTC) if later else None
    )


def find_inserted(
    conn: psycopg.Connection, statements: Statements, messages: Sequence[JobMessage]
) -> list[EnqueueResult] | None:
    """The results of an earlier insert of ``messages`` whose answer was lost with the
    connection, or None if it did not commit (a batch commits whole, so one row is enough)."""
    rows = _execute(conn, statements.find_jobs, ([m.job_id for m in messages],)).fetchall()
    if len(rows) < len(messages):
        return None
    return _results(messages, rows)


def _insert(
    conn: psycopg.Connection,
    statements: Statements,
    messages: Sequence[JobMessage],
    delay: float,
    at: datetime | None,
) -> list[EnqueueResult]:
    unique = any(m.unique_key is not None for m in messages)
    later = delay > 0 or at is not None
    ranked = any(m.priority for m in messages)
    fair = any(m.fairness_key is not None for m in messages)
    statement = statements.insert(
        many=len(messages) > 1, unique=unique, later=later, ranked=ranked, fair=fair
    )
    params: dict[str, Any] = {"delay": max(0.0, delay), "at": at} if later else {}
    if len(messages) == 1:
        [m] = messages
        params.update(queue=m.queue, name=m.job_name, job_id=m.job_id, body=m.encode())
        if unique:
            params["key"] = m.unique_key
        if ranked:
            params["priority"] = m.priority
        if fair:
            params["fairness_key"] = m.fairness_key
    else:
        params.update(
            queues=[m.queue for m in messages],
            names=[m.job_name for m in messages],
            job_ids=[m.job_id for m in messages],
            bodies=[m.encode() for m in messages],
        )
        if unique:
            params["keys"] = [m.unique_key for m in messages]
        if ranked:
            params["priorities"] = [m.priority or 0 for m in messages]
        if fair:
            params["fairness_keys"] = [m.fairness_key for m in messages]
    # Prepared at once, as these few statements run again and again; unless the connection
    # (a caller's) has preparing turned off, as behind some poolers it must be.
    prepare = None if conn.prepare_threshold is None else True
    rows = _execute(conn, statement, params, prepare).fetchall()
    if len(rows) < len(messages):
        if rows:
            _execute(conn, statements.delete_jobs, ([r[0] for r in rows],))
        raise _duplicate(conn, statements, messages)
    rows.sort()  # identity ids are drawn in insertion order, which follows the messages'
    if not later:  # due now: no due time came back
        return [
            EnqueueResult(str(row_id), m.job_id, m.queue)
            for m, (row_id,) in zip(messages, rows, strict=True)
        ]
    return _results(messages, rows)


def _execute(
    conn: psycopg.Connection, statement: str, params: Any, prepare: bool | None = None
) -> psycopg.Cursor[Any]:
    if isinstance(conn, BoundedConnection):  # the driver's own
        cursor = conn.reused_cursor()
    else:  # a caller's connection may make dicts or classes: a cursor of our row factory
        cursor = conn.cursor(row_factory=tuple_row)
    return cursor.execute(statement, params, prepare=prepare)


def _results(messages: Sequence[JobMessage], rows: Sequence[Any]) -> list[EnqueueResult]:
    # Identity ids are drawn in insertion order, which follows the messages' order.
    return [
        EnqueueResult(str(row_id), m.job_id, m.queue, visible_at.astimezone(UTC) if later else None)
        for m, (row_id, visible_at, later) in zip(messages, rows, strict=True)
    ]


def _duplicate(
    conn: psycopg.Connection, statements: Statements, messages: Sequence[JobMessage]
) -> DuplicateJobError:
    """Which unique key was taken, by a pending job or by an earlier message of the batch."""
    seen: dict[tuple[str, str], str] = {}
    first: tuple[str, str] | None = None
    for m in messages:
        if m.unique_key is None:
            continue
        key = (m.job_name, m.unique_key)
        first = first or key
        held = _execute(conn, statements.key_holder, key).fetchone()
        if held is not None:
            return DuplicateJobError(m.job_name, m.unique_key, held[0])
        if key in seen:
            return DuplicateJobError(m.job_name, m.unique_key, seen[key])
        seen[key] = m.job_id
    # The holder finished between our insert and this look: the key was taken all the same.
    assert first is not None, "only unique keys make an insert skip rows"
    return DuplicateJobError(*first)
