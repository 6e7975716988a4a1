"""What the SQLite queue shows: counts per queue (:class:`~.records.QueueStats`), the jobs
not finished yet, and a job by id (pending copies and dead letters), each read on a
connection the driver lends."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from ..records import DeadLetterRecord, FoundJob, QueueStats


def stats(conn: sqlite3.Connection) -> dict[str, QueueStats]:
    """Counts per queue, sorted by queue name."""
    now = time.time()
    counts: dict[str, dict[str, int]] = {}
    for queue, ready, delayed, in_flight in conn.execute(
        "SELECT queue, SUM(visible_at <= ?), SUM(leased = 0 AND visible_at > ?), "
        "SUM(leased = 1 AND visible_at > ?) FROM glasswork_jobs GROUP BY queue",
        (now, now, now),
    ):
        counts[queue] = {"ready": ready, "delayed": delayed, "in_flight": in_flight}
    for queue, dead in conn.execute(
        "SELECT COALESCE(queue, 'default'), COUNT(*) FROM glasswork_dead_letters GROUP BY 1"
    ):
        counts.setdefault(queue, {})["dead"] = dead
    return {q: QueueStats(q, **counts[q]) for q in sorted(counts)}


def pending_count(conn: sqlite3.Connection, queues: Sequence[str] | None) -> int:
    """Jobs not yet finished (ready, delayed or in flight) in ``queues`` (None: all)."""
    if not queues:
        return int(conn.execute("SELECT COUNT(*) FROM glasswork_jobs").fetchone()[0])
    marks = ",".join("?" * len(queues))
    sql = f"SELECT COUNT(*) FROM glasswork_jobs WHERE queue IN ({marks})"
    return int(conn.execute(sql, list(queues)).fetchone()[0])


def find_job(conn: sqlite3.Connection, job_id: str) -> list[FoundJob]:
    """The pending and dead-lettered copies of job ``job_id`` (a table scan: job ids are
    not indexed, so that enqueueing pays nothing for lookups)."""
    now = time.time()
    found = [
        FoundJob(
            job_id,
            _state(leased, visible_at, now),
            queue,
            name,
            body,
            attempts,
            _time(visible_at),
            _time(enqueued_at),
        )
        for queue, name, body, attempts, leased, visible_at, enqueued_at in conn.execute(
            "SELECT queue, job_name, body, attempts, leased, visible_at, enqueued_at "
            "FROM glasswork_jobs WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
    ]
    found.extend(_dead(conn, job_id))
    return found


def _dead(conn: sqlite3.Connection, job_id: str) -> Iterator[FoundJob]:
    rows: Any = conn.execute(
        "SELECT id, queue, job_name, body, reason, failed_at, traceback "
        "FROM glasswork_dead_letters WHERE job_id = ? ORDER BY id",
        (job_id,),
    )
    for row_id, queue, name, body, reason, failed_at, trace in rows:
        record = DeadLetterRecord(
            str(row_id), queue, name, job_id, body, reason, _time(failed_at), trace
        )
        yield FoundJob(job_id, "dead", queue, name, body, dead_letter=record)


def _state(leased: int, visible_at: float, now: float) -> str:
    if visible_at <= now:
        return "ready"
    return "in_flight" if leased else "delayed"


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
