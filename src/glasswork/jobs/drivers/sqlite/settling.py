"""Settling claimed jobs in the SQLite queue, each call one write transaction: deleting
finished ones, releasing ones to run again (after a delay, or at once without spending an
attempt), and extending leases. Every statement matches the receipt ``(id, attempts)``, so
a worker whose lease ran out and was claimed again cannot settle the new holder's
delivery."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ..records import ReceivedMessage
from .connections import QueueFile

#: Receipts per DELETE statement of :func:`ack`.
_ACK_CHUNK = 128


def ack(file: QueueFile, received: Sequence[ReceivedMessage]) -> None:
    """Remove finished jobs in one transaction (deliveries whose lease another worker has
    since taken are left alone)."""
    if not received:
        return
    receipts = [r.receipt for r in received]
    file.write(lambda conn: delete_receipts(conn, receipts))


def delete_receipts(conn: sqlite3.Connection, receipts: Sequence[tuple[Any, Any]]) -> None:
    """Delete the rows of these receipts (inside the caller's transaction)."""
    for start in range(0, len(receipts), _ACK_CHUNK):
        conn.execute(*_delete_receipts(receipts[start : start + _ACK_CHUNK]))


def nack(file: QueueFile, received: Sequence[ReceivedMessage], delay_seconds: float) -> None:
    """Release jobs to be delivered again after ``delay_seconds``, in one transaction."""
    if not received:
        return
    visible_at = time.time() + max(0.0, delay_seconds)
    rows = [(visible_at, *r.receipt) for r in received]
    file.write(
        lambda c: c.executemany(
            "UPDATE glasswork_jobs SET leased = 0, visible_at = ? WHERE id = ? AND attempts = ?",
            rows,
        )
    )


def hand_back(file: QueueFile, received: Sequence[ReceivedMessage]) -> None:
    """Make jobs due again at once, this delivery not counted as an attempt."""
    if not received:
        return
    # The next claim brings attempts back up, so this delivery's receipt (id, attempts)
    # would match that one: harmless, as a worker never uses a receipt it released.
    rows = [(time.time(), *r.receipt) for r in received]
    file.write(
        lambda c: c.executemany(
            "UPDATE glasswork_jobs SET leased = 0, visible_at = ?, attempts = attempts - 1 "
            "WHERE id = ? AND attempts = ? AND attempts > 0",
            rows,
        )
    )


def extend(file: QueueFile, received: Sequence[ReceivedMessage], seconds: float) -> int:
    """Keep jobs hidden for ``seconds`` more; returns how many leases were still held."""
    if not received:
        return 0
    visible_at = time.time() + seconds
    rows = [(visible_at, *r.receipt) for r in received]

    def extend_rows(conn: sqlite3.Connection) -> int:
        before = conn.total_changes
        conn.executemany(
            "UPDATE glasswork_jobs SET visible_at = ? WHERE id = ? AND attempts = ? AND leased = 1",
            rows,
        )
        return conn.total_changes - before

    return file.write(extend_rows)


def _delete_receipts(receipts: Sequence[tuple[Any, Any]]) -> tuple[str, list[Any]]:
    """One DELETE of the rows of these receipts (id, attempts): a single statement, so the
    whole batch is one step into SQLite (a worker's job threads then wait for the GIL once,
    not once a row). The id list finds the rows by primary key; the (id, attempts) pairs
    spare deliveries another worker has since taken. Lists are padded to a power of two
    with receipts no row has (id 0), so a handful of statements are ever prepared."""
    size = 1 << max(0, len(receipts) - 1).bit_length()
    padded = [*receipts, *[(0, 0)] * (size - len(receipts))]
    sql = (
        f"DELETE FROM glasswork_jobs WHERE id IN ({','.join('?' * size)}) "
        f"AND (id, attempts) IN (VALUES {','.join(['(?, ?)'] * size)})"
    )
    return sql, [row_id for row_id, _ in padded] + [v for receipt in padded for v in receipt]
