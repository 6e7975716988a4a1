"""Claiming a queue's jobs round-robin across their fairness keys (``define_job(fairness_key=
...)``).

Which queues are fair is known to each driver from one look (every ``refresh`` seconds,
and at once after it enqueues a job with a key) at the partial index ``glasswork_jobs_fair``,
which only jobs with a key are in: a queue without any keeps today's claim statement,
untouched, and its jobs cost nothing more to store or claim. A fair queue's claim is two
statements:

1. *Tag*: its jobs without a key form one group of their own, the key ``''``: the rows
   added since this driver's last tag (``id > since``, a short range of the primary key;
   every row of the queue on the driver's first claim of it and every
   :data:`RETAG_EVERY` seconds, for rows a long transaction committed late) are put into
   it, skipping rows another transaction has locked. The queue's round state
   (``glasswork_fair_queues``) is made if missing and its cursor read.
2. *Claim*: its keys in turn after the one served last (``cursor``), wrapping round, each
   found by one index lookup past the previous; the first ``limit`` that have a due job;
   from each, up to ``ceil(limit / keys)`` due jobs (highest priority, then oldest due,
   ``FOR UPDATE SKIP LOCKED``), taken in rounds (the first of each key, then the second
   ...). The cursor moves to the last key served, unless another claim holds the state
   row (never waited for).

Two workers claiming at once never take one job twice (``SKIP LOCKED``); they may serve the
same keys in one round, which evens out over the next rounds. A job left out of the group
of its own (a row skipped while locked) is still claimed: the fair queues' jobs are also
claimed the plain way whenever their fair claim comes up short.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import psycopg
from psycopg import sql

from ..records import ReceivedMessage
from . import claims
from .statements import Statements
from .status import StatusStatements

#: Seconds between two tags of every row of a fair queue (not only the new ones).
RETAG_EVERY = 30.0

# The queues holding a job with a key: a skip through the fair index, queue by queue.
_FAIR_QUEUES = """
WITH RECURSIVE q(name) AS (
    (SELECT queue FROM {jobs} WHERE fairness_key IS NOT NULL ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM {jobs} WHERE fairness_key IS NOT NULL AND queue > q.name
            ORDER BY queue LIMIT 1)
    FROM q WHERE q.name IS NOT NULL
)
SELECT name FROM q WHERE name IS NOT NULL
AND EXISTS (SELECT FROM {jobs} WHERE queue = q.name AND fairness_key > '')
"""
# Every queue with a row (the plain claim's own skip through the (queue, visible_at) index).
_QUEUE_NAMES = """
WITH RECURSIVE q(name) AS (
    (SELECT queue FROM {jobs} ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM {jobs} WHERE queue > q.name ORDER BY queue LIMIT 1)
    FROM q WHERE q.name IS NOT NULL
)
SELECT name FROM q WHERE name IS NOT NULL
"""
# The rows of the queue without a key (all of them; or those added since this driver's last
# tag, by a range of the primary key: `queue || ''` keeps the planner off the queue's index,
# which it may take on a table without statistics yet and walk every row of the queue) put
# in the group of their own; the queue's round state made if missing; the newest id and the
# cursor back.
_TAG = """
WITH tagged AS (
    UPDATE {jobs} SET fairness_key = '' WHERE id IN (
        SELECT id FROM {jobs}
        WHERE id > %(since)s AND {queue} = %(queue)s AND fairness_key IS NULL
        FOR UPDATE SKIP LOCKED
    )
),
made AS (
    INSERT INTO {fair} (queue) VALUES (%(queue)s) ON CONFLICT (queue) DO NOTHING
)
SELECT COALESCE((SELECT max(id) FROM {jobs}), 0),
       COALESCE((SELECT cursor FROM {fair} WHERE queue = %(queue)s), '')
"""
# One key's due jobs: positive priorities, none, negative ones, each band in its order
# (`priority <> 0` spelled out so the planner sees the partial index applies). Every look at
# keys is a range of keys ordered by the key first, the fair indexes' own order (one key: a
# range from it to itself, not `=`, which would make the order by key void), so the planner
# walks the key's part of a fair index: never the queue's due index, where a rare key is
# found only after every job of a common one. The keys are found with each one's earliest
# due time (its first row in that order): whether it has a due job, in the same lookup.
_KEY = "fairness_key"
_BAND = """
SELECT id FROM (
    SELECT id FROM {jobs}
    WHERE queue = %(queue)s AND fairness_key >= due.k AND fairness_key <= due.k AND {band}
    AND visible_at <= now()
    ORDER BY {order} LIMIT (SELECT each FROM share) FOR UPDATE SKIP LOCKED
) AS band"""
_CLAIM = """
WITH RECURSIVE
after(k, first) AS (
    (SELECT fairness_key, visible_at FROM {jobs}
     WHERE queue = %(queue)s AND fairness_key > %(cursor)s
     ORDER BY fairness_key, visible_at LIMIT 1)
    UNION ALL
    SELECT n.fairness_key, n.visible_at FROM after CROSS JOIN LATERAL (
        SELECT fairness_key, visible_at FROM {jobs}
        WHERE queue = %(queue)s AND fairness_key > after.k
        ORDER BY fairness_key, visible_at LIMIT 1
    ) AS n
),
before(k, first) AS (
    (SELECT fairness_key, visible_at FROM {jobs}
     WHERE queue = %(queue)s AND fairness_key >= '' AND fairness_key <= %(cursor)s
     ORDER BY fairness_key, visible_at LIMIT 1)
    UNION ALL
    SELECT n.fairness_key, n.visible_at FROM before CROSS JOIN LATERAL (
        SELECT fairness_key, visible_at FROM {jobs}
        WHERE queue = %(queue)s AND fairness_key > before.k AND fairness_key <= %(cursor)s
        ORDER BY fairness_key, visible_at LIMIT 1
    ) AS n
),
ring AS (
    SELECT k, first FROM after
    UNION ALL
    SELECT k, first FROM before
),
due AS (
    SELECT k, row_number() OVER () AS pos FROM (
        SELECT k FROM ring WHERE first <= now() LIMIT %(limit)s
    ) AS found
),
share AS (SELECT ceil(%(limit)s::numeric / greatest(count(*), 1))::int AS each FROM due),
picked AS (
    SELECT p.id, p.turn, due.pos
    FROM due CROSS JOIN LATERAL (
        SELECT id, row_number() OVER () AS turn FROM (
            {bands}
            LIMIT (SELECT each FROM share)
        ) AS bands
    ) AS p
    ORDER BY p.turn, due.pos
    LIMIT %(limit)s
),
moved AS (
    UPDATE {fair} SET cursor = (SELECT k FROM due ORDER BY pos DESC LIMIT 1)
    WHERE queue IN (
        SELECT queue FROM {fair} WHERE queue = %(queue)s AND EXISTS (SELECT FROM due)
        FOR UPDATE SKIP LOCKED
    )
)
UPDATE {jobs} AS t
SET attempts = t.attempts + 1, lost = t.lost + t.leased::int, leased = true,
    visible_at = now() + %(lease)s * interval '1 second', updated_at = now(), slot_key = NULL
FROM picked WHERE t.id = picked.id
RETURNING t.id, t.queue, t.body, t.attempts, t.lost, t.priority, t.cancel_requested,
    picked.turn, picked.pos
"""


class FairStatements:
    """The statements of fair claims, for one schema."""

    def __init__(self, schema: str) -> None:
        jobs = sql.Identifier(schema, "glasswork_jobs").as_string()
        fair = sql.Identifier(schema, "glasswork_fair_queues").as_string()
        self.fair_queues = _FAIR_QUEUES.format(jobs=jobs)
        self.queue_names = _QUEUE_NAMES.format(jobs=jobs)
        self.tag_all = _TAG.format(jobs=jobs, fair=fair, queue="queue")
        self.tag_new = _TAG.format(jobs=jobs, fair=fair, queue="queue || ''")
        positive = "priority <> 0 AND priority > 0"
        negative = "priority <> 0 AND priority < 0"
        bands = [
            _BAND.format(jobs=jobs, band=positive, order=f"{_KEY}, priority DESC, visible_at, id"),
            _BAND.format(jobs=jobs, band="priority = 0", order=f"{_KEY}, visible_at, id"),
            _BAND.format(jobs=jobs, band=negative, order=f"{_KEY}, priority DESC, visible_at, id"),
        ]
        self.claim = _CLAIM.format(
            jobs=jobs, fair=fair, bands="\n            UNION ALL".join(bands)
        )


class FairQueues:
    """Which queues hold a job with a fairness key, as one driver last looked: at most once
    per ``refresh`` seconds, and on the next claim after :meth:`touched`; and how far this
    driver has tagged each one's rows without a key."""

    def __init__(self, statements: FairStatements, refresh: float) -> None:
        self.statements = statements
        self.refresh = refresh
        self._known: frozenset[str] = frozenset()
        self._looked = -float("inf")
        self._lock = threading.Lock()
        self._tagged: dict[str, tuple[int, float]] = {}  # queue -> (newest id, full tag at)

    def since(self, queue: str) -> int:
        """The id after which ``queue``'s rows are to be tagged: 0 (all of them) on the
        first claim, and every :data:`RETAG_EVERY` seconds."""
        tagged = self._tagged.get(queue)
        if tagged is None or time.monotonic() - tagged[1] >= RETAG_EVERY:
            return 0
        return tagged[0]

    def tagged(self, queue: str, since: int, newest: int) -> None:
        """``queue``'s rows up to id ``newest`` were tagged (all of them when ``since`` is 0)."""
        full = time.monotonic() if since == 0 else self._tagged[queue][1]
        self._tagged[queue] = (newest, full)

    def touched(self) -> None:
        """This driver enqueued a job with a key: look again before the next claim."""
        self._looked = -float("inf")

    def of(self, conn: psycopg.Connection, queues: Sequence[str] | None) -> list[str]:
        """The fair ones of ``queues`` (None: of every queue), in the order asked."""
        now = time.monotonic()
        if now - self._looked >= self.refresh:
            with self._lock:
                found = frozenset(n for (n,) in conn.execute(self.statements.fair_queues))
                self._known, self._looked = found, now
        known = self._known
        if not known:
            return []
        if queues is None:
            return sorted(known)
        return [q for q in queues if q in known]


def claim(
    conn: psycopg.Connection,
    statements: Statements,
    status_statements: StatusStatements,
    fair_queues: FairQueues,
    *,
    fair: list[str],
    queues: list[str] | None,
    limit: int,
    lease: float,
    rotation: int,
    max_lost_leases: int,
) -> list[ReceivedMessage]:
    """Lease up to ``limit`` due jobs of ``queues`` (None: every queue), of which ``fair``
    are claimed round-robin across their keys and the rest as usual. The fair queues and
    the others take turns going first (by ``rotation``), so neither starves the other."""
    names = queues if queues is not None else _queue_names(conn, fair_queues.statements)
    plain = [q for q in names if q not in fair]
    start = rotation % len(fair)
    turn = fair[start:] + fair[:start]
    received: list[ReceivedMessage] = []

    def take_plain(among: list[str]) -> None:
        if among and len(received) < limit:
            received.extend(
                claims.claim(
                    conn,
                    statements,
                    status_statements,
                    queues=among,
                    limit=limit - len(received),
                    lease=lease,
                    rotation=rotation,
                    max_lost_leases=max_lost_leases,
                )
            )

    if rotation % 2:
        take_plain(plain)
    short = []
    for queue in turn:
        if len(received) >= limit:
            break
        wanted = limit - len(received)
        got = claim_fair(
            conn,
            statements,
            status_statements,
            fair_queues,
            queue,
            wanted,
            lease,
            max_lost_leases,
        )
        received.extend(got)
        if len(got) < wanted:
            short.append(queue)
    # A fair queue that gave fewer than asked may hold a job outside every group (a row its
    # tag skipped): it is claimed the plain way, so no job ever waits on the next tag.
    take_plain(short)
    if not rotation % 2:
        take_plain(plain)
    return received


def claim_fair(
    conn: psycopg.Connection,
    statements: Statements,
    status_statements: StatusStatements,
    fair_queues: FairQueues,
    queue: str,
    limit: int,
    lease: float,
    max_lost_leases: int,
) -> list[ReceivedMessage]:
    """Lease up to ``limit`` due jobs of ``queue`` round-robin across its keys (see the
    module), in the order taken."""
    since = fair_queues.since(queue)
    tag = fair_queues.statements.tag_new if since else fair_queues.statements.tag_all
    row = conn.execute(tag, {"queue": queue, "since": since}).fetchone()
    newest, cursor = row if row is not None else (since, "")
    fair_queues.tagged(queue, since, newest)
    rows = conn.execute(
        fair_queues.statements.claim,
        {"queue": queue, "cursor": cursor, "limit": limit, "lease": lease},
    ).fetchall()
    rows.sort(key=lambda r: (r[7], r[8]))  # turn, then the key's place in the round
    taken = claims.deliveries(
        conn, statements, status_statements, [r[:7] for r in rows], lease, max_lost_leases
    )
    return [message for *_, message in taken]


def _queue_names(conn: psycopg.Connection, fair_statements: FairStatements) -> list[str]:
    return [name for (name,) in conn.execute(fair_statements.queue_names)]
