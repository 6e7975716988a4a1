"""Periodic fires in PostgreSQL: one row per periodic job in ``glasswork_periodic``, holding
its last fire; a claim moves it strictly forward, so each fire is claimed once across every
worker sharing the tables. A claim and its enqueue share one transaction: the claim's row
lock makes the next fire's claim wait for it, so an ``overlap=False`` check sees the job."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import lru_cache

import psycopg
from psycopg import sql

from ...message import JobMessage
from ..contract import PeriodicFire
from .connections import Connections
from .producing import find_inserted, insert_jobs
from .statements import Statements


@lru_cache(maxsize=32)
def _statements(schema: str) -> tuple[str, str]:
    periodic = sql.Identifier(schema, "glasswork_periodic").as_string()
    jobs = sql.Identifier(schema, "glasswork_jobs").as_string()
    return (
        f"SELECT last_fire FROM {periodic} WHERE job_name = %s",
        # The due index (queue, visible_at) narrows this to the periodic queue's rows.
        f"SELECT 1 FROM {jobs} WHERE queue = %s AND job_name = %s LIMIT 1",
    )


def last_fire(connections: Connections, statements: Statements, job_name: str) -> datetime | None:
    """The latest claimed fire of ``job_name`` (None: never)."""
    query = _statements(statements.schema)[0]
    row = connections.run(
        "read a periodic job's last fire",
        lambda conn, _: conn.execute(query, (job_name,)).fetchone(),
    )
    return None if row is None else row[0]


def fire(
    connections: Connections,
    statements: Statements,
    job_name: str,
    fire_at: datetime,
    message: JobMessage,
    overlap: bool,
) -> PeriodicFire:
    """Claim the fire and enqueue ``message`` in one transaction."""
    claim = (job_name, fire_at, uuid.uuid4().hex)
    still_stored = _statements(statements.schema)[1]

    def work(conn: psycopg.Connection, retrying: bool) -> PeriodicFire:
        # A retry after the answer was lost: the job is there if the commit happened (and
        # the claim, retried with the same token, wins again otherwise).
        if retrying and find_inserted(conn, statements, [message]):
            return "fired"
        with conn.transaction():
            if conn.execute(statements.claim_periodic, claim).rowcount != 1:
                return "taken"
            if not overlap and conn.execute(still_stored, (message.queue, job_name)).fetchone():
                return "skipped"
            insert_jobs(conn, statements, [message])
            return "fired"

    return connections.run("fire a periodic job", work)
