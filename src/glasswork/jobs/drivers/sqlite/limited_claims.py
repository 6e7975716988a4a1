"""Claims holding one worker's flow limits on the SQLite queue
(:class:`~glasswork.jobs.drivers.contract.ClaimLimits`): the claim's own write transaction
reads the due rows, admits them (:func:`.limits.admit`: slots, rate starts, put-backs and
throttle counts) and leases those it takes. No transaction per start: a limited job costs
its claim a few more statements, and nothing more.

Rows are read as the plain claim (:mod:`.claims`) takes them (each queue's priority bands,
oldest due first), then leased by id (a queue whose rows hold no limited job is claimed with
the plain claim's own statement); the ``concurrencyKey`` is read from the body of rows
whose job has a concurrency limit (``json_extract``, in the claim's transaction), so enqueues
store nothing more. A worker whose jobs have no limits never comes here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ...limits import JobLimits
from ..records import LimitedBatch, ReceivedMessage
from . import limits
from .claims import Claims, _claim_statement, bands, levels_of


class _Driver(Protocol):
    """What the claims read of the driver, each time (they may change on the instance)."""

    _claims: Claims
    visibility_timeout: float
    poll_interval: float


# The due rows a claim of one queue would take, with what admitting them needs. A body that
# is not JSON has no key (the worker dead-letters it when it reads it).
_CANDIDATES = """
SELECT id, job_name, priority, visible_at, lost + leased, cancel_requested,
    CASE WHEN job_name IN (SELECT value FROM json_each(:keyed)) AND json_valid(body)
        THEN json_extract(body, '$.concurrencyKey') END,
    typeof(body) <> 'text'
FROM glasswork_jobs WHERE id IN ({bands} LIMIT :limit)
"""
# Whether the rows a claim of one queue would take hold a limited job (none: they are taken
# with the plain claim's own statement, and cost what they cost there).
_HAS_LIMITED = """
SELECT EXISTS (SELECT 1 FROM glasswork_jobs WHERE id IN ({bands} LIMIT :limit)
    AND job_name IN (SELECT value FROM json_each(:limited)))
"""
_TAKE = """
UPDATE glasswork_jobs
SET attempts = attempts + 1, lost = lost + leased, leased = 1, visible_at = :lease_until,
    updated_at = :now, slot_key = NULL
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, CAST(body AS BLOB), attempts, lost, priority, cancel_requested
"""


class LimitedClaims:
    """:class:`~glasswork.jobs.drivers.contract.LimitedClaims` on ``driver``'s file, for a
    worker whose jobs have ``job_limits``."""

    def __init__(self, driver: _Driver, job_limits: Mapping[str, JobLimits]) -> None:
        self.driver = driver
        self.claims: Claims = driver._claims
        self.limits = dict(job_limits)
        #: The limited jobs, and those whose deliveries' concurrency keys are read (JSON
        #: arrays, for json_each).
        self.names = json.dumps(sorted(self.limits))
        self.keyed = json.dumps(sorted(n for n, lim in self.limits.items() if lim.concurrency))

    def claim(
        self,
        queues: Sequence[str] | None,
        max_messages: int,
        wait_seconds: float,
        max_limited: int,
    ) -> LimitedBatch:
        """See :meth:`~glasswork.jobs.drivers.contract.LimitedClaims.claim`; polls every
        ``poll_interval`` up to ``wait_seconds``, as :meth:`SQLiteQueueDriver.receive`."""
        driver = self.driver
        deadline = time.monotonic() + wait_seconds
        throttled: Counter[tuple[str, str]] = Counter()
        left = [0]
        while True:
            received, limited, next_due = self._claim(
                queues, max_messages, max_limited, throttled, left
            )
            remaining = deadline - time.monotonic()
            if received or remaining <= 0 or left[0]:
                return LimitedBatch(received, limited, dict(throttled), left[0])
            pause = driver.poll_interval
            if next_due is not None:
                pause = min(pause, max(0.001, next_due - time.time()))
            time.sleep(min(pause, remaining))

    def _claim(
        self,
        queues: Sequence[str] | None,
        limit: int,
        max_limited: int,
        throttled: Counter[tuple[str, str]],
        left: list[int],
    ) -> tuple[list[ReceivedMessage], int, float | None]:
        due, next_due = self.claims.due_queues(queues)
        if not due or limit <= 0:
            return [], 0, next_due
        lease = self.driver.visibility_timeout

        def claim(conn: sqlite3.Connection) -> tuple[list[ReceivedMessage], int]:
            now = time.time()
            plain: list[tuple[int, int, ReceivedMessage]] = []
            candidates = self._candidates(conn, due, limit, now, lease, plain)
            decided = limits.admit(conn, candidates, self.limits, max_limited, now)
            throttled.update(decided.throttled)
            left[0] = decided.left
            return self._take(conn, candidates, decided, now, lease, plain)

        received, limited = self.claims.file.write(claim)
        return received, limited, next_due

    def _candidates(
        self,
        conn: sqlite3.Connection,
        queues: list[str],
        limit: int,
        now: float,
        lease: float,
        plain: list[tuple[int, int, ReceivedMessage]],
    ) -> list[limits.Candidate]:
        """The due rows of ``queues`` (up to ``limit``), in the order a claim takes them:
        highest priority, then oldest due. A queue whose rows hold no limited job is claimed
        here as the plain claim claims it, its deliveries added to ``plain``."""
        found: list[tuple[int, float, int, limits.Candidate]] = []
        most = self.claims.max_lost_leases
        taken = 0
        for queue in queues:
            if taken >= limit:
                break
            levels = levels_of(conn, queue)
            picked = bands(levels)
            params = {"queue": queue, "now": now, "limit": limit - taken}
            (limited,) = conn.execute(
                _HAS_LIMITED.format(bands=picked), {**params, "limited": self.names}
            ).fetchone()
            if not limited:
                statement = _claim_statement(levels)
                rows = conn.execute(statement, {**params, "lease_until": now + lease}).fetchall()
                plain += self.claims.deliveries(conn, queue, rows, lease)
                taken += len(rows)
                continue
            sql = _CANDIDATES.format(bands=picked)
            for row_id, job, priority, due, lost, cancelled, key, corrupt in conn.execute(
                sql, {**params, "keyed": self.keyed}
            ):
                # Asked to stop, about to be dead-lettered for lost leases, or corrupt (a
                # body that is not text): the claim ends it (.claims), unlimited.
                exempt = bool(cancelled or corrupt) or _number(lost) >= most
                row = limits.Candidate(row_id, queue, job, key, exempt)
                found.append((-_number(priority), float(due), row_id, row))
                taken += 1
        found.sort(key=lambda entry: entry[:3])
        return [row for *_, row in found]

    def _take(
        self,
        conn: sqlite3.Connection,
        candidates: list[limits.Candidate],
        decided: limits.Admission,
        now: float,
        lease: float,
        plain: list[tuple[int, int, ReceivedMessage]],
    ) -> tuple[list[ReceivedMessage], int]:
        """Lease the admitted rows (a slot's key on those that take one); the deliveries of
        limited jobs first, in the order admitted, then the rest (and ``plain``, claimed
        already) as the plain claim orders them. Returns them and how many are limited."""
        if not decided.claimed:
            return [message for *_, message in sorted(plain, key=lambda d: d[:2])], 0
        queue_of = {row.id: row.queue for row in candidates}
        ids = json.dumps([row_id for row_id, _ in decided.claimed])
        params = {"ids": ids, "lease_until": now + lease, "now": now}
        rows = conn.execute(_TAKE, params).fetchall()
        slots = [(slot, row_id) for row_id, slot in decided.claimed if slot is not None]
        if slots:
            conn.executemany("UPDATE glasswork_jobs SET slot_key = ? WHERE id = ?", slots)
        by_queue: dict[str, list[Any]] = {}
        for row in rows:
            by_queue.setdefault(queue_of[row[0]], []).append(row)
        delivered = list(plain)
        for queue, taken in by_queue.items():
            delivered += self.claims.deliveries(conn, queue, taken, lease)
        order = {row_id: n for n, (row_id, _) in enumerate(decided.claimed)}
        first = [d for d in delivered if d[1] in decided.limited]
        first.sort(key=lambda d: order[d[1]])
        rest = sorted((d for d in delivered if d[1] not in decided.limited), key=lambda d: d[:2])
        return [message for *_, message in first + rest], len(first)


def _number(value: object) -> int:
    """An integer column as a number (a corrupt one as 0: the claim deals with the row)."""
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError, OverflowError):
        return 0
