"""Claiming due jobs from the SQLite queue for a worker, and burying the rows that cannot be
delivered: a job whose lease keeps running out, and corrupt rows (a body that is not text,
a queue name or due time of the wrong type), which must not fail every claim.

A claim bumps ``attempts`` and pushes ``visible_at`` out by the lease inside one
``BEGIN IMMEDIATE`` transaction (``UPDATE ... RETURNING``), so two workers never hold one
job; the receipt is ``(id, attempts)``. A claimed row whose job was asked to stop
(``cancel_requested``: its worker died holding it) is ended as cancelled instead.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ..lifecycle import CANCELLED
from ..records import ReceivedMessage
from .connections import QueueFile
from .dead_letters import add_dead
from .fairness import claim_fair, is_fair
from .results import cancel_row

# Highest priority first, then oldest due. The priorities present in a queue are found by
# skipping through the partial index of jobs with one (queue, priority DESC, visible_at):
# a lookup per priority, and one (finding none) for a queue without any. Then one band per
# priority, each walking its index in visible_at order and stopping at LIMIT rows or at
# the first job not due yet, so jobs waiting for their time (or held by a worker) at a
# high priority are never walked past; jobs without a priority come from the
# (queue, visible_at) index. (`priority <> 0` is spelled out so SQLite sees the partial
# index applies.) `lost` counts deliveries whose lease ran out (the row was still leased
# when re-claimed).
_LEVELS = """
WITH RECURSIVE levels(p) AS (
    SELECT (SELECT priority FROM glasswork_jobs WHERE queue = :queue AND priority <> 0
            ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT priority FROM glasswork_jobs WHERE queue = :queue AND priority <> 0
            AND priority < levels.p ORDER BY priority DESC LIMIT 1)
    FROM levels WHERE levels.p IS NOT NULL LIMIT :most
)
SELECT p FROM levels WHERE p IS NOT NULL
"""
#: Priorities in one queue claimed band by band; beyond, one band walks them all in order.
MAX_LEVELS = 16
_BAND = (
    "SELECT id FROM (SELECT id FROM glasswork_jobs WHERE queue = :queue AND {band} "
    "AND visible_at <= :now ORDER BY {order} LIMIT :limit)"
)
_PLAIN_BAND = _BAND.format(band="priority = 0", order="visible_at")
_CLAIM = """
UPDATE glasswork_jobs
SET attempts = attempts + 1, lost = lost + leased, leased = 1, visible_at = :lease_until,
    updated_at = :now, slot_key = NULL
WHERE id IN ({bands} LIMIT :limit)
RETURNING id, CAST(body AS BLOB), attempts, lost, priority, cancel_requested
"""
_PLAIN_CLAIM = _CLAIM.format(bands=_PLAIN_BAND)


def _claim_statement(levels: list[int]) -> str:
    """The claim of a queue holding jobs with these priorities (besides 0), highest first."""
    if not levels:
        return _PLAIN_CLAIM
    return _CLAIM.format(bands=bands(levels))


def bands(levels: list[int]) -> str:
    """The ids a claim of a queue holding jobs with these priorities (besides 0) takes, in
    bands, highest first (a subquery missing its outer ``LIMIT :limit``)."""
    if not levels:
        return _PLAIN_BAND
    if len(levels) > MAX_LEVELS:
        order = "priority DESC, visible_at"
        high = [_BAND.format(band="priority <> 0 AND priority > 0", order=order)]
        low = [_BAND.format(band="priority <> 0 AND priority < 0", order=order)]
    else:
        each = [
            _BAND.format(band=f"priority <> 0 AND priority = {int(p)}", order="visible_at")
            for p in levels
        ]
        high = [b for b, p in zip(each, levels, strict=True) if p > 0]
        low = [b for b, p in zip(each, levels, strict=True) if p < 0]
    return " UNION ALL ".join([*high, _PLAIN_BAND, *low])


def levels_of(conn: sqlite3.Connection, queue: str) -> list[int]:
    """The priorities (besides 0) of ``queue``'s jobs, highest first (at most one more than
    :data:`MAX_LEVELS`)."""
    return [p for (p,) in conn.execute(_LEVELS, {"queue": queue, "most": MAX_LEVELS + 1})]


# Distinct queue names by skipping through the index: a few lookups, not a table scan.
_QUEUES = """
WITH RECURSIVE q(name) AS (
    SELECT MIN(queue) FROM glasswork_jobs
    UNION ALL
    SELECT (SELECT MIN(queue) FROM glasswork_jobs WHERE queue > q.name) FROM q
    WHERE q.name IS NOT NULL
)
SELECT typeof(name), CAST(name AS BLOB) FROM q WHERE name IS NOT NULL
"""
# Text and blobs sort after every number in SQLite: a row whose visible_at is not a number
# (a corrupt row) is found at the far end of the (queue, visible_at) index.
_NOT_A_TIME = "visible_at >= ''"


class Claims:
    """Claims on one queue ``file``; a job whose lease ran out ``max_lost_leases`` times is
    dead-lettered instead of being delivered again."""

    def __init__(self, file: QueueFile, *, max_lost_leases: int) -> None:
        self.file = file
        self.max_lost_leases = max_lost_leases
        self._rotation = 0

    def claim(
        self, queues: Sequence[str] | None, limit: int, lease: float
    ) -> tuple[list[ReceivedMessage], float | None]:
        """Up to ``limit`` due jobs of ``queues`` (None: every queue), each leased for
        ``lease`` seconds, highest priority then oldest due first in each queue; and when
        the next one is due (None: none is waiting)."""
        due, next_due = self.due_queues(queues)
        if not due or limit <= 0:
            return [], next_due
        received = self.file.write(lambda c: self._claim_due(c, due, limit, lease))
        return received, next_due

    def due_queues(self, queues: Sequence[str] | None) -> tuple[list[str], float | None]:
        """The queues of ``queues`` (None: every queue) holding a due job, the one to claim
        from first rotating from call to call; and when the next job of the others is due
        (None: none is waiting). Read without the write lock, which an idle worker polling
        must not take."""
        conn = self.file.conn()
        names = list(queues) if queues else self._queue_names(conn)
        now = time.time()
        # Look before locking: an idle worker polling must not take the write lock.
        due: list[str] = []
        next_due: float | None = None
        for queue in names:
            row = conn.execute(
                "SELECT visible_at FROM glasswork_jobs WHERE queue = ? ORDER BY visible_at LIMIT 1",
                (queue,),
            ).fetchone()
            if row is None:
                continue
            first = row[0]
            if not isinstance(first, int | float):  # only corrupt rows are left in this queue
                self._bury_where(
                    f"queue = ? AND {_NOT_A_TIME}", (queue,), "its visible_at is not a number"
                )
            elif first <= now:
                due.append(queue)
            elif next_due is None or first < next_due:
                next_due = first
        if not due:
            return [], next_due
        # Rotate the starting queue so one busy queue cannot starve the others.
        self._rotation += 1
        start = self._rotation % len(due)
        return due[start:] + due[:start], next_due

    def _claim_due(
        self, conn: sqlite3.Connection, queues: list[str], limit: int, lease: float
    ) -> list[ReceivedMessage]:
        received: list[tuple[int, int, ReceivedMessage]] = []
        now = time.time()
        lease_until = now + lease
        for queue in queues:
            if len(received) >= limit:
                break
            params = {
                "lease_until": lease_until,
                "queue": queue,
                "now": now,
                "limit": limit - len(received),
            }
            if is_fair(conn, queue):  # round-robin across its fairness keys (fairness.py)
                rows = claim_fair(conn, queue, limit - len(received), now, lease_until)
                # Its rows keep their turns (priorities order each key's own).
                fair = self.deliveries(conn, queue, rows, lease)
                received += [(0, place - limit, m) for place, (*_, m) in enumerate(fair)]
            else:
                rows = conn.execute(_claim_statement(levels_of(conn, queue)), params).fetchall()
                received += self.deliveries(conn, queue, rows, lease)
        received.sort(key=lambda entry: entry[:2])
        return [message for *_, message in received]

    def deliveries(
        self, conn: sqlite3.Connection, queue: str, rows: Sequence[Any], lease: float
    ) -> list[tuple[int, int, ReceivedMessage]]:
        """The claimed ``rows`` of ``queue`` (id, body, attempts, lost, priority,
        cancel_requested) as deliveries, each with its sort key (highest priority, then
        id); rows that must not be delivered end here: cancelled, or dead-lettered."""
        received = []
        for row_id, raw, attempts, lost, priority, cancelled in rows:
            if cancelled:
                # Cancelled while its worker held it, and that worker is gone: it ends
                # here, never handed out again.
                cancel_row(conn, row_id, attempts, CANCELLED, claimed=True)
                continue
            try:
                body, attempt = _read_row(raw, attempts)
            except ValueError as exc:
                # A corrupt row must not fail every claim: it goes to the dead letters.
                _bury(conn, row_id, queue, raw, f"the row is corrupt: {exc}")
                continue
            if lost >= self.max_lost_leases:
                _bury(conn, row_id, queue, body, _lost_reason(attempts, lost, lease))
                continue
            message = ReceivedMessage(body, (row_id, attempts), attempt, queue, str(row_id))
            received.append((-int(priority or 0), row_id, message))
        return received

    def _queue_names(self, conn: sqlite3.Connection) -> list[str]:
        names = []
        for kind, raw in conn.execute(_QUEUES).fetchall():
            try:
                if kind != "text":
                    raise ValueError(f"it is {kind}, not text")
                names.append(raw.decode("utf-8"))
            except ValueError as exc:  # UnicodeDecodeError included
                why = f"its queue name {raw!r} is not usable: {_describe(exc)}"
                self._bury_where("CAST(queue AS BLOB) = ?", (raw,), why)
        return names

    def _bury_where(self, where: str, params: tuple[Any, ...], why: str) -> None:
        """Dead-letter the corrupt rows ``where`` selects."""
        sql = (
            f"SELECT id, CAST(queue AS BLOB), CAST(body AS BLOB) FROM glasswork_jobs WHERE {where}"
        )

        def bury(conn: sqlite3.Connection) -> None:
            for row_id, queue, body in conn.execute(sql, params).fetchall():
                name = queue.decode("utf-8", "backslashreplace") if queue is not None else None
                _bury(conn, row_id, name, body, f"the row is corrupt: {why}")

        self.file.write(bury)


def _bury(conn: sqlite3.Connection, row_id: int, queue: str | None, body: Any, reason: str) -> None:
    """Move a job row to the dead letters (a body that is not text is kept readable,
    invalid bytes as ``\\x`` escapes)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "backslashreplace")
    add_dead(conn, str(body), reason, queue, time.time())
    conn.execute("DELETE FROM glasswork_jobs WHERE id = ?", (row_id,))


def _lost_reason(attempts: Any, lost: Any, lease: float) -> str:
    return (
        f"delivered {attempts} times; {lost} times its lease "
        f"({lease:g}s) ran out before a worker finished it: the worker "
        "died or stalled while running it"
    )


def _read_row(raw: Any, attempts: Any) -> tuple[str, int]:
    """A claimed row's body as text and its attempt count; ValueError saying what is wrong."""
    if not isinstance(raw, bytes):
        raise ValueError(f"its body is {raw!r}, not text")
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"its body is not UTF-8 text ({exc})") from None
    try:
        return body, int(attempts)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"its attempt count {attempts!r} is not a number") from None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
