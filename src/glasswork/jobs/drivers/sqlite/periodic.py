"""Periodic fires in the SQLite file: one row per periodic job in ``glasswork_periodic``,
holding its last fire (Unix seconds); a claim moves it strictly forward, so each fire is
claimed once across every worker sharing the file."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

from ...message import JobMessage
from ..contract import PeriodicFire
from .connections import QueueFile
from .producing import insert

CLAIM = (
    "INSERT INTO glasswork_periodic (job_name, last_fire) VALUES (?, ?) "
    "ON CONFLICT (job_name) DO UPDATE SET last_fire = excluded.last_fire "
    "WHERE last_fire < excluded.last_fire"
)
# The due index (queue, visible_at) narrows this to the periodic queue's rows.
STILL_STORED = "SELECT 1 FROM glasswork_jobs WHERE queue = ? AND job_name = ? LIMIT 1"


def claim(file: QueueFile, job_name: str, fire_at: datetime) -> bool:
    """True for exactly one caller per ``(job_name, fire_at)``, later fires only."""
    return bool(file.write(lambda c: _claimed(c, job_name, fire_at)))


def last_fire(file: QueueFile, job_name: str) -> datetime | None:
    """The latest claimed fire of ``job_name`` (None: never)."""
    row = (
        file.conn()
        .execute("SELECT last_fire FROM glasswork_periodic WHERE job_name = ?", (job_name,))
        .fetchone()
    )
    return None if row is None else datetime.fromtimestamp(row[0], UTC)


def fire(
    file: QueueFile, job_name: str, fire_at: datetime, message: JobMessage, overlap: bool
) -> PeriodicFire:
    """Claim the fire and enqueue ``message`` in one write transaction: a second worker's
    claim of the next fire waits for it, so it sees this job (``overlap=False``)."""

    def work(conn: sqlite3.Connection) -> PeriodicFire:
        if not _claimed(conn, job_name, fire_at):
            return "taken"
        if not overlap and conn.execute(STILL_STORED, (message.queue, job_name)).fetchone():
            return "skipped"
        insert(file, [message], time.time())  # this thread's connection: this transaction
        return "fired"

    result: PeriodicFire = file.write(work)
    return result


def _claimed(conn: sqlite3.Connection, job_name: str, fire_at: datetime) -> bool:
    return conn.execute(CLAIM, (job_name, fire_at.timestamp())).rowcount == 1
