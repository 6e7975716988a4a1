"""Claiming due jobs for a worker, and burying those whose lease keeps running out."""

from __future__ import annotations

import psycopg

from ..records import ReceivedMessage
from .statements import Statements


def claim(
    conn: psycopg.Connection,
    statements: Statements,
    *,
    queues: list[str] | None,
    limit: int,
    lease: float,
    rotation: int,
    max_lost_leases: int,
) -> list[ReceivedMessage]:
    """Lease up to ``limit`` due jobs of ``queues`` (None: every queue) for ``lease``
    seconds, in id order. A job whose lease has now run out ``max_lost_leases`` times is
    moved to the dead letters instead of being handed out again."""
    params = {"queues": queues, "limit": limit, "lease": lease, "rotation": rotation}
    statement = statements.claim_all if queues is None else statements.claim_listed
    received = []
    for row_id, queue, body, attempts, lost in conn.execute(statement, params):
        if lost >= max_lost_leases:
            reason = (
                f"delivered {attempts} times; {lost} times its lease ({lease:g}s) ran out "
                "before a worker finished it: the worker died or stalled while running it"
            )
            conn.execute(statements.bury, {"id": row_id, "attempts": attempts, "reason": reason})
        else:
            received.append(ReceivedMessage(body, (row_id, attempts), attempts, queue, str(row_id)))
    received.sort(key=lambda r: r.receipt[0])
    return received


def next_due(
    conn: psycopg.Connection, statements: Statements, queues: list[str] | None
) -> float | None:
    """Seconds until a job of ``queues`` becomes visible (a delayed job, or a lease running
    out); None when they hold no job."""
    statement = statements.next_due_all if queues is None else statements.next_due_listed
    row = conn.execute(statement, {"queues": queues, "rotation": 0}).fetchone()
    return None if row is None or row[0] is None else float(row[0])
