"""Claiming due jobs for a worker, burying those whose lease keeps running out, and ending
those asked to stop while a worker that is gone held them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ..lifecycle import CANCELLED
from ..records import DEFAULT_RESULT_TTL, ReceivedMessage
from .statements import Statements
from .status import StatusStatements


def claim(
    conn: psycopg.Connection,
    statements: Statements,
    status_statements: StatusStatements,
    *,
    queues: list[str] | None,
    limit: int,
    lease: float,
    rotation: int,
    max_lost_leases: int,
) -> list[ReceivedMessage]:
    """Lease up to ``limit`` due jobs of ``queues`` (None: every queue) for ``lease``
    seconds, highest priority first, then in id order. A job whose lease has now run out
    ``max_lost_leases`` times is moved to the dead letters instead of being handed out
    again; one that was asked to stop while its (now gone) worker held it ends cancelled."""
    params = {"queues": queues, "limit": limit, "lease": lease, "rotation": rotation}
    statement = statements.claim_all if queues is None else statements.claim_listed
    rows = conn.execute(statement, params).fetchall()
    received = deliveries(conn, statements, status_statements, rows, lease, max_lost_leases)
    received.sort(key=lambda entry: entry[:2])
    return [message for *_, message in received]


def deliveries(
    conn: psycopg.Connection,
    statements: Statements,
    status_statements: StatusStatements,
    rows: list[tuple[Any, ...]],
    lease: float,
    max_lost_leases: int,
) -> list[tuple[int, int, ReceivedMessage]]:
    """The claimed ``rows`` (``id, queue, body, attempts, lost, priority, cancelled``) to
    hand out, each as ``(-priority, id, delivery)``: those asked to stop end cancelled, and
    those whose lease ran out ``max_lost_leases`` times are buried, here."""
    received = []
    for row in rows:
        message = deliver(conn, statements, status_statements, row, lease, max_lost_leases)
        if message is not None:
            received.append((-row[5], row[0], message))
    return received


def deliver(
    conn: psycopg.Connection,
    statements: Statements,
    status_statements: StatusStatements,
    row: Sequence[Any],
    lease: float,
    max_lost_leases: int,
) -> ReceivedMessage | None:
    """A claimed row (id, queue, body, attempts, lost, priority, cancel_requested) as a
    delivery; None for one that ends here: asked to stop while a worker that is gone held
    it (cancelled), or whose lease has run out ``max_lost_leases`` times (dead-lettered)."""
    row_id, queue, body, attempts, lost, _, cancelled = row[:7]
    if cancelled:
        conn.execute(
            status_statements.cancel_claimed,
            {"id": row_id, "attempts": attempts, "reason": CANCELLED, "keep": DEFAULT_RESULT_TTL},
        )
        return None
    if lost >= max_lost_leases:
        reason = (
            f"delivered {attempts} times; {lost} times its lease ({lease:g}s) ran out "
            "before a worker finished it: the worker died or stalled while running it"
        )
        conn.execute(statements.bury, {"id": row_id, "attempts": attempts, "reason": reason})
        return None
    return ReceivedMessage(body, (row_id, attempts), attempts, queue, str(row_id))


def next_due(
    conn: psycopg.Connection, statements: Statements, queues: list[str] | None
) -> float | None:
    """Seconds until a job of ``queues`` becomes visible (a delayed job, or a lease running
    out); None when they hold no job."""
    statement = statements.next_due_all if queues is None else statements.next_due_listed
    row = conn.execute(statement, {"queues": queues, "rotation": 0}).fetchone()
    return None if row is None or row[0] is None else float(row[0])
