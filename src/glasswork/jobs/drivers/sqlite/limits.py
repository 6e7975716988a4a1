"""Flow limits in the SQLite queue (:class:`~glasswork.jobs.drivers.contract.FlowLimits`):
one ``BEGIN IMMEDIATE`` transaction per start of a limited job, so every process on the file
sees the same counts.

* Concurrency: a running delivery holds a slot while its row is leased with the slot's
  ``slot_key``; a slot is free once the row is settled (deleted, released: a claim clears
  the key) or its lease has run out, so a worker that died frees its slots with its leases.
* Rate: a sliding log of the starts of each rate-limited job (``glasswork_rate_starts``): a
  start is allowed while fewer than ``count`` happened in the last ``window`` seconds, so no
  window of that length ever holds more (no burst on top, as a refilling bucket allows).

A delivery that may not start is put back in the same transaction, due when it may try
again, its attempt given back. Times are this host's clock (``time.time()``): every process
on one SQLite file runs on one host.
"""

from __future__ import annotations

import random
import sqlite3
import time

from ...limits import SLOT_RETRY, JobLimits
from ...message import scoped_key
from ..records import ReceivedMessage
from .connections import QueueFile


def acquire(
    file: QueueFile, received: ReceivedMessage, job_name: str, key: str | None, limits: JobLimits
) -> float | None:
    """See :meth:`FlowLimits.acquire`."""
    slot = scoped_key(job_name, key or "") if limits.concurrency is not None else None
    return file.write(lambda conn: _acquire(conn, received.receipt, job_name, slot, limits))


def _acquire(
    conn: sqlite3.Connection,
    receipt: tuple[int, int],
    job_name: str,
    slot: str | None,
    limits: JobLimits,
) -> float | None:
    row_id, attempts = receipt
    now = time.time()
    mine = conn.execute(
        "SELECT 1 FROM glasswork_jobs WHERE id = ? AND attempts = ? AND leased = 1",
        (row_id, attempts),
    ).fetchone()
    if mine is None:
        return 0.0  # settled, or its lease taken by another worker: it must not start here
    wait: float | None = None
    if slot is not None and limits.concurrency is not None:
        (held,) = conn.execute(
            "SELECT count(*) FROM glasswork_jobs WHERE slot_key = ? AND leased = 1 "
            "AND visible_at > ? AND id <> ?",
            (slot, now, row_id),
        ).fetchone()
        if held >= limits.concurrency:
            wait = SLOT_RETRY * (1 + random.random() / 2)
    rate = limits.rate
    if wait is None and rate is not None:
        conn.execute(
            "DELETE FROM glasswork_rate_starts WHERE job_name = ? AND started_at <= ?",
            (job_name, now - rate.window),
        )
        (starts,) = conn.execute(
            "SELECT count(*) FROM glasswork_rate_starts WHERE job_name = ?", (job_name,)
        ).fetchone()
        if starts >= rate.count:
            # Free once the start that keeps the window full has left it.
            (oldest,) = conn.execute(
                "SELECT started_at FROM glasswork_rate_starts WHERE job_name = ? "
                "ORDER BY started_at LIMIT 1 OFFSET ?",
                (job_name, starts - rate.count),
            ).fetchone()
            wait = max(0.001, oldest + rate.window - now)
        else:
            conn.execute(
                "INSERT INTO glasswork_rate_starts (job_name, started_at) VALUES (?, ?)",
                (job_name, now),
            )
    if wait is None:
        if slot is not None:
            conn.execute(
                "UPDATE glasswork_jobs SET slot_key = ? WHERE id = ? AND attempts = ?",
                (slot, row_id, attempts),
            )
        return None
    conn.execute(
        "UPDATE glasswork_jobs SET leased = 0, visible_at = ?, attempts = attempts - 1, "
        "updated_at = ? WHERE id = ? AND attempts = ? AND attempts > 0",
        (now + wait, now, row_id, attempts),
    )
    return wait
