"""Flow limits in the SQLite queue: every count is read and written inside a
``BEGIN IMMEDIATE`` transaction, so every process on the file sees the same counts.

* Concurrency: a running delivery holds a slot while its row is leased with the slot's
  ``slot_key``; a slot is free once the row is settled (deleted, released: a claim clears
  the key) or its lease has run out, so a worker that died frees its slots with its leases.
* Rate: a sliding log of the starts of each rate-limited job (``glasswork_rate_starts``): a
  start is allowed while fewer than ``count`` happened in the last ``window`` seconds, so no
  window of that length ever holds more (no burst on top, as a refilling bucket allows).

Deliveries are admitted in the claim's own transaction (:func:`admit`, for
:class:`~.limited_claims.LimitedClaims`), or one at a time just before they run
(:func:`acquire`, :class:`~glasswork.jobs.drivers.contract.FlowLimits`). One that may not
start is put back in the same transaction, due when it may try again, not as an attempt,
and counted in ``glasswork_throttles``. Times are this host's clock (``time.time()``): every
process on one SQLite file runs on one host.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ...limits import SLOT_RETRY, JobLimits, RateLimit, slot_key
from ..records import ReceivedMessage
from .connections import QueueFile

# A throttled row is due again at ``until``; a lease that had run out on it is counted as
# lost now (as the next claim would have), and a slot it still named is let go.
_PUT_BACK = (
    "UPDATE glasswork_jobs SET visible_at = ?, updated_at = ?, slot_key = NULL, "
    "lost = lost + leased, leased = 0 WHERE id = ?"
)
_COUNT_THROTTLES = (
    "INSERT INTO glasswork_throttles (job_name, count) VALUES (?, ?) "
    "ON CONFLICT (job_name) DO UPDATE SET count = count + excluded.count"
)


@dataclass(slots=True)
class Candidate:
    """A due row a limited claim looked at, in the order it would be claimed."""

    id: int
    queue: str
    job_name: object  # the row's job_name column (not text: no limits apply)
    #: The ``concurrencyKey`` read from its body (None: none, or not readable).
    key: object
    #: Claimed without its limits: it is asked to stop, or has lost its lease too often, so
    #: the claim ends it (cancelled, dead-lettered) rather than run it.
    exempt: bool = False


@dataclass(slots=True)
class Admission:
    """What :func:`admit` decided: the rows to claim, in order, with the slot each takes
    (None: none), which of them are limited, the deliveries held back per (job, queue), and
    how many that may start were left for want of free threads."""

    claimed: list[tuple[int, str | None]] = field(default_factory=list)
    limited: set[int] = field(default_factory=set)
    throttled: Counter[tuple[str, str]] = field(default_factory=Counter)
    left: int = 0


def admit(
    conn: sqlite3.Connection,
    candidates: Sequence[Candidate],
    limits: Mapping[str, JobLimits],
    max_limited: int,
    now: float,
) -> Admission:
    """Decide, in the caller's write transaction, which ``candidates`` a claim takes: every
    row of a job without limits; a limited one while its slot and its rate allow (its start
    logged now), up to ``max_limited`` of them (further ones that may start are left
    untouched, still due). Rows held back are put back, counted as throttled."""
    held: dict[str, int] = {}  # slot -> deliveries holding it
    windows: dict[str, Window] = {}  # rate-limited job -> its starts
    decided = Admission()
    put_back: list[tuple[float, float, int]] = []
    started: list[tuple[str, float]] = []
    for row in candidates:
        job = row.job_name
        job_limits = limits.get(job) if isinstance(job, str) and not row.exempt else None
        if job_limits is None:
            decided.claimed.append((row.id, None))
            continue
        assert isinstance(job, str)
        wait: float | None = None
        slot = None
        if job_limits.concurrency is not None:
            slot = slot_key(job, None if row.key is None else str(row.key))
            if slot not in held:
                held[slot] = _held(conn, slot, now)
            if held[slot] >= job_limits.concurrency:
                wait = slot_wait()
        rate = job_limits.rate
        if wait is None and rate is not None:
            window = windows.get(job)
            if window is None:
                window = windows[job] = Window(conn, job, rate, now)
            if window.full():
                wait = window.wait(len(candidates))
        if wait is not None:
            put_back.append((now + wait, now, row.id))
            decided.throttled[(job, row.queue)] += 1
            continue
        if len(decided.limited) >= max_limited:
            decided.left += 1  # no free thread to start it: left where it is, for later
            continue
        if slot is not None:
            held[slot] += 1
        if rate is not None:
            windows[job].added += 1
            started.append((job, now))
        decided.limited.add(row.id)
        decided.claimed.append((row.id, slot))
    if started:
        conn.executemany(
            "INSERT INTO glasswork_rate_starts (job_name, started_at) VALUES (?, ?)", started
        )
    if put_back:
        conn.executemany(_PUT_BACK, put_back)
        count_throttles(conn, decided.throttled)
    return decided


def acquire(
    file: QueueFile, received: ReceivedMessage, job_name: str, key: str | None, limits: JobLimits
) -> float | None:
    """See :meth:`FlowLimits.acquire`."""
    slot = slot_key(job_name, key) if limits.concurrency is not None else None
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
    most = limits.concurrency
    if slot is not None and most is not None and _held(conn, slot, now, row_id) >= most:
        wait = slot_wait()
    rate = limits.rate
    if wait is None and rate is not None:
        window = Window(conn, job_name, rate, now)
        if window.full():
            wait = window.wait(1)
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
    count_throttles(conn, {(job_name, ""): 1})
    return wait


def _held(conn: sqlite3.Connection, slot: str, now: float, besides: int = -1) -> int:
    """Deliveries holding ``slot`` now (leased with it, their lease not run out)."""
    (held,) = conn.execute(
        "SELECT count(*) FROM glasswork_jobs WHERE slot_key = ? AND leased = 1 "
        "AND visible_at > ? AND id <> ?",
        (slot, now, besides),
    ).fetchone()
    return int(held)


class Window:
    """The starts of one rate-limited job in the window up to ``now`` (older ones are
    deleted: they can never count again), and those a claim adds (``added``, all at
    ``now``). Only their number is read, unless a delivery is held back."""

    def __init__(self, conn: sqlite3.Connection, job_name: str, rate: RateLimit, now: float):
        self.conn = conn
        self.job_name = job_name
        self.rate = rate
        self.now = now
        conn.execute(
            "DELETE FROM glasswork_rate_starts WHERE job_name = ? AND started_at <= ?",
            (job_name, now - rate.window),
        )
        (stored,) = conn.execute(
            "SELECT count(*) FROM glasswork_rate_starts WHERE job_name = ?", (job_name,)
        ).fetchone()
        self.stored = int(stored)
        self.added = 0
        self.held_back = 0
        self._oldest: list[float] | None = None

    def full(self) -> bool:
        """Whether another start now would exceed the rate."""
        return self.stored + self.added >= self.rate.count

    def wait(self, most: int) -> float:
        """Seconds until the next delivery held back by the full window (of at most
        ``most`` in this transaction) may start, those held back before it having started
        as soon as they could: when the start that keeps the window full for it leaves the
        window. Spread so that a backlog does not come due all at once."""
        rate, index = self.rate, self.held_back
        self.held_back += 1
        first = self.stored + self.added - rate.count  # the start that leaves first
        if self._oldest is None:
            self._oldest = [
                float(t)
                for (t,) in self.conn.execute(
                    "SELECT started_at FROM glasswork_rate_starts WHERE job_name = ? "
                    "ORDER BY started_at LIMIT ? OFFSET ?",
                    (self.job_name, max(1, min(most, rate.count)), first),
                )
            ]
        position = index % rate.count
        # Past the stored starts: one this transaction added.
        leaves = self._oldest[position] if position < len(self._oldest) else self.now
        return max(0.001, leaves + rate.window * (1 + index // rate.count) - self.now)


def slot_wait() -> float:
    """How long a delivery waits for a slot (it frees at an unknown time), spread so that
    waiters do not return together."""
    return SLOT_RETRY * (1 + random.random() / 2)


def count_throttles(conn: sqlite3.Connection, counts: Mapping[tuple[str, str], int]) -> None:
    """Add deliveries held back to each job's throttle count (``counts``: (job name,
    queue) -> deliveries)."""
    per_job: Counter[str] = Counter()
    for (job, _), n in counts.items():
        per_job[job] += n
    conn.executemany(_COUNT_THROTTLES, sorted(per_job.items()))


def throttle_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """See :meth:`FlowLimits.throttle_counts`."""
    return {
        str(name): int(count)
        for name, count in conn.execute(
            "SELECT job_name, count FROM glasswork_throttles WHERE count > 0"
        )
    }
