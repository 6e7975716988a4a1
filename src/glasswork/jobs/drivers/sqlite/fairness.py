"""Claiming a queue's jobs round-robin across their fairness keys (``define_job(fairness_key=
...)``), inside the claim's ``BEGIN IMMEDIATE`` transaction.

A queue is claimed this way while it holds a job with a key (one probe of the partial index
``glasswork_jobs_fair``, which only jobs with a key are in: a queue without any keeps the
plain claim, and its jobs cost nothing more to store). Then:

* Its jobs without a key form one group of their own, the key ``''`` (no real key is
  empty): rows added since the last fair claim (``id > tagged_to``, a walk of the new rows
  only) are put into it, so every job of the queue is in the index.
* The keys are taken in turn after the one served last (``glasswork_fair_queues.cursor``),
  wrapping round: each found by one index lookup past the previous, each kept when it has
  a due job, until ``limit`` keys are found or every key was looked at.
* From each key found, up to ``ceil(limit / keys)`` of its due jobs (highest priority,
  then oldest due, first: jobs with a priority come from ``glasswork_jobs_fair_priority``,
  the others walk ``glasswork_jobs_fair`` in due order), taken in rounds: the first of each
  key, then the second of each, ... up to ``limit``.

One writer at a time (``BEGIN IMMEDIATE``) makes each step exact: no job is handed to two
workers, and no job is added between the tagging and the claim.
"""

from __future__ import annotations

import sqlite3
from typing import Any

# Some job of the queue has a key (the group of jobs without one does not count).
_HAS_KEYS = "SELECT 1 FROM glasswork_jobs WHERE queue = ? AND fairness_key > '' LIMIT 1"
_STATE = "SELECT cursor, tagged_to FROM glasswork_fair_queues WHERE queue = ?"
_SAVE = (
    "INSERT INTO glasswork_fair_queues (queue, cursor, tagged_to) VALUES (?, ?, ?) "
    "ON CONFLICT (queue) DO UPDATE SET cursor = excluded.cursor, tagged_to = excluded.tagged_to"
)
# The rows added since the last tagging, found by id (`+queue`: not by the queue's index,
# which would walk all of the queue's rows).
_TAG = (
    "UPDATE glasswork_jobs SET fairness_key = '' "
    "WHERE id > ? AND +queue = ? AND fairness_key IS NULL"
)
_NEXT_KEY = (
    "SELECT fairness_key FROM glasswork_jobs WHERE queue = ? AND fairness_key > ? "
    "ORDER BY fairness_key LIMIT 1"
)
_FIRST_KEY = (
    "SELECT fairness_key FROM glasswork_jobs WHERE queue = ? AND fairness_key >= '' "
    "ORDER BY fairness_key LIMIT 1"
)
_DUE = (
    "SELECT 1 FROM glasswork_jobs WHERE queue = ? AND fairness_key = ? AND visible_at <= ? LIMIT 1"
)
# One key's due jobs: positive priorities, none, negative ones, each band in its order.
# (`priority <> 0` spelled out so SQLite sees the partial index applies.)
_BAND = (
    "SELECT id FROM (SELECT id FROM glasswork_jobs WHERE queue = :queue "
    "AND fairness_key = :key AND {band} AND visible_at <= :now ORDER BY {order} LIMIT :each)"
)
# (Every index ends in the rowid: jobs due at once come in the order stored.)
_RANKED = "priority DESC, visible_at, id"
_PICK = (
    " UNION ALL ".join(
        [
            _BAND.format(band="priority <> 0 AND priority > 0", order=_RANKED),
            _BAND.format(band="priority = 0", order="visible_at, id"),
            _BAND.format(band="priority <> 0 AND priority < 0", order=_RANKED),
        ]
    )
    + " LIMIT :each"
)
CLAIM = """
UPDATE glasswork_jobs
SET attempts = attempts + 1, lost = lost + leased, leased = 1, visible_at = ?,
    updated_at = ?, slot_key = NULL
WHERE id IN ({ids})
RETURNING id, CAST(body AS BLOB), attempts, lost, priority, cancel_requested
"""


def is_fair(conn: sqlite3.Connection, queue: str) -> bool:
    """Whether ``queue`` holds a job with a fairness key (then it is claimed fairly)."""
    return conn.execute(_HAS_KEYS, (queue,)).fetchone() is not None


def claim_fair(
    conn: sqlite3.Connection, queue: str, limit: int, now: float, lease_until: float
) -> list[tuple[Any, ...]]:
    """Lease up to ``limit`` due jobs of ``queue`` round-robin across its keys (see the
    module); the claimed rows (``id, body, attempts, lost, priority, cancel_requested``)
    in the order they were taken."""
    state = conn.execute(_STATE, (queue,)).fetchone()
    cursor, tagged_to = (str(state[0]), int(state[1])) if state is not None else ("", 0)
    (top,) = conn.execute("SELECT max(id) FROM glasswork_jobs").fetchone()
    if top is not None and top > tagged_to:
        conn.execute(_TAG, (tagged_to, queue))
        tagged_to = top
    keys = _due_keys(conn, queue, cursor, now, limit)
    rows: list[tuple[Any, ...]] = []
    if keys:
        each = -(-limit // len(keys))
        picks = [
            [row_id for (row_id,) in conn.execute(_PICK, _band(queue, key, now, each))]
            for key in keys
        ]
        order = [p[n] for n in range(each) for p in picks if n < len(p)][:limit]
        claimed = []
        if order:
            claimed = conn.execute(
                CLAIM.format(ids=",".join("?" * len(order))), (lease_until, now, *order)
            ).fetchall()
        place = {row_id: n for n, row_id in enumerate(order)}
        rows = sorted(claimed, key=lambda row: place[row[0]])
        cursor = keys[-1]
    conn.execute(_SAVE, (queue, cursor, tagged_to))
    return rows


def _band(queue: str, key: str, now: float, each: int) -> dict[str, Any]:
    return {"queue": queue, "key": key, "now": now, "each": each}


def _due_keys(
    conn: sqlite3.Connection, queue: str, cursor: str, now: float, limit: int
) -> list[str]:
    """Up to ``limit`` keys of ``queue`` with a due job, in turn after ``cursor``."""
    found: list[str] = []
    key: str | None = None
    lap = 1  # 1: the keys after the cursor; 2: from the first key up to the cursor
    while len(found) < limit:
        if key is None:
            row = conn.execute(_NEXT_KEY, (queue, cursor)).fetchone()
        else:
            row = conn.execute(_NEXT_KEY, (queue, key)).fetchone()
        if row is None and lap == 1:
            lap = 2
            row = conn.execute(_FIRST_KEY, (queue,)).fetchone()
        if row is None:
            break
        key = str(row[0])
        if lap == 2 and key > cursor:
            break  # round the whole ring
        if conn.execute(_DUE, (queue, key, now)).fetchone() is not None:
            found.append(key)
    return found
