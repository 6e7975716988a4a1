"""What the driver shows and tidies: counts per queue, a job by id, and the dead-letter table
(list, redrive, purge), each on a connection the driver lends."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from ...errors import ConfigurationError
from ...message import identify
from ..lifecycle import fairness_of
from ..records import DeadLetterRecord, FoundJob, QueueStats
from .statements import Statements
from .text import storable


def stats(conn: psycopg.Connection, statements: Statements) -> dict[str, QueueStats]:
    """Counts per queue, sorted by queue name."""
    counts: dict[str, dict[str, int]] = {}
    for queue, ready, delayed, in_flight in conn.execute(statements.stats):
        counts[queue] = {"ready": ready, "delayed": delayed, "in_flight": in_flight}
    for queue, dead in conn.execute(statements.dead_counts):
        counts.setdefault(queue, {})["dead"] = dead
    return {q: QueueStats(q, **counts[q]) for q in sorted(counts)}


def pending(conn: psycopg.Connection, statements: Statements, queues: list[str] | None) -> int:
    """Jobs not finished yet in ``queues`` (None: all)."""
    row = conn.execute(statements.pending, {"queues": queues}).fetchone()
    return int(row[0]) if row else 0


def find_job(conn: psycopg.Connection, statements: Statements, job_id: str) -> list[FoundJob]:
    """The pending and dead-lettered copies of job ``job_id``, read in one snapshot (a scan:
    job ids are not indexed, so that enqueueing pays nothing for lookups)."""
    rows = conn.execute(statements.find_job, {"job_id": job_id}).fetchall()
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


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def list_dead(
    conn: psycopg.Connection, statements: Statements, queue: str | None, limit: int
) -> list[DeadLetterRecord]:
    """Dead letters, oldest first (``queue`` filters)."""
    rows = conn.execute(
        statements.dead_letters, {"ids": None, "queue": queue, "limit": limit}
    ).fetchall()
    return [dead_letter_record(*row) for row in rows]


def dead_letter_record(
    row_id: int,
    queue: str | None,
    job_name: str | None,
    job_id: str | None,
    body: str,
    reason: str,
    failed_at: datetime,
    traceback: str | None = None,
) -> DeadLetterRecord:
    """A row of ``glasswork_dead_letters`` as the driver-agnostic record."""
    return DeadLetterRecord(
        str(row_id), queue, job_name, job_id, body, reason, failed_at.astimezone(UTC), traceback
    )


def redrive(
    conn: psycopg.Connection,
    statements: Statements,
    ids: Sequence[int | str] | None,
    queue: str | None,
) -> int:
    """Move dead letters back onto their queues, in one transaction; see
    :meth:`PostgresQueueDriver.redrive`."""
    return redrive_rows(
        conn, statements, statements.redrive_candidates, {"ids": row_ids(ids), "queue": queue}
    )


def redrive_rows(
    conn: psycopg.Connection, statements: Statements, candidates: str, params: Any
) -> int:
    """Move the dead letters ``candidates`` selects (``id, queue, body ... FOR UPDATE``) back
    onto their queues, in one transaction; one whose unique key a pending job holds stays."""
    moved = 0
    with conn.transaction():
        for dead_id, dead_queue, body in conn.execute(candidates, params).fetchall():
            job_name, job_id, unique_key = identify(body)
            cursor = conn.execute(
                statements.redrive_one,
                {
                    "id": dead_id,
                    "queue": dead_queue or "default",
                    "name": storable(job_name),
                    "job_id": storable(job_id),
                    "key": storable(unique_key),
                    "body": body,
                    "fairness_key": fairness_of(body),
                },
            )
            moved += cursor.rowcount
    return moved


def purge(
    conn: psycopg.Connection,
    statements: Statements,
    ids: Sequence[int | str] | None,
    queue: str | None = None,
) -> int:
    """Delete dead letters (the given ``ids``, or all; of ``queue``); returns how many."""
    return conn.execute(statements.purge, {"ids": row_ids(ids), "queue": queue}).rowcount


def row_ids(ids: Sequence[int | str] | None) -> list[int] | None:
    """Dead-letter ids as numbers (:attr:`DeadLetterRecord.id` is a string); None: all."""
    if ids is None:
        return None
    try:
        return [int(i) for i in ids]
    except ValueError:
        raise ConfigurationError(
            f"PostgreSQL dead-letter ids are numbers, got {list(ids)}"
        ) from None
