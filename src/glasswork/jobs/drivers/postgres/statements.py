"""The SQL the driver runs, rendered once for its schema.

Times are the server's (``now()``), so workers on machines whose clocks disagree still agree
on when a job is due and when a lease runs out. A receipt is ``(id, attempts)``: every
statement that settles a delivery matches both, so a worker whose lease ran out (and whose
job another worker claimed since) cannot ack, release or extend the new delivery.
"""

from __future__ import annotations

from psycopg import sql

from .schema import channel_name

# The queues a claim looks at, as a ``queues(name, n)`` CTE ordered by ``n``: the listed ones
# (rotated so one busy queue cannot starve the rest), or every queue that has a row, found by
# skipping through the (queue, visible_at) index: a few lookups, not a table scan.
_LISTED = """
queues AS (
    SELECT name, (n + %(rotation)s) %% cardinality(%(queues)s::text[]) AS n
    FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS u(name, n)
)"""
_ALL = """
names(name) AS (
    (SELECT queue FROM {jobs} ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM {jobs} WHERE queue > names.name ORDER BY queue LIMIT 1)
    FROM names WHERE names.name IS NOT NULL
),
queues AS (
    SELECT name, (row_number() OVER (ORDER BY name) + %(rotation)s) %% count(*) OVER () AS n
    FROM names WHERE name IS NOT NULL
)"""

# Highest priority first, then oldest due, within each queue. The priorities present in a
# queue are found by skipping through the partial index of jobs with one
# (queue, priority DESC, visible_at): a lookup per priority, one (finding none) for a queue
# without any. Each priority is then one band walking its index in visible_at order, which
# stops at LIMIT rows or at the first job not due yet, so jobs waiting for their time (or
# held by a worker) at a high priority are never walked past; priority 0 (most jobs) comes
# from (queue, visible_at). (A locking clause cannot sit in a UNION's own branches: each is
# a subquery; `priority <> 0` is spelled out so the planner sees the partial index applies.)
# SKIP LOCKED lets concurrent claims pass each other's rows instead of waiting. The nested
# loops keep the queues' and the priorities' order, and the outer LIMIT stops them (and the
# row locking) as soon as enough rows are in hand. ``lost`` counts deliveries whose lease ran
# out: the row was still leased when claimed again.
_PICK = """
WITH RECURSIVE {queues},
levels AS (
    SELECT name, (
        SELECT priority FROM {jobs} WHERE queue = queues.name AND priority <> 0
        ORDER BY priority DESC LIMIT 1
    ) AS p FROM queues
    UNION ALL
    SELECT name, (
        SELECT priority FROM {jobs} WHERE queue = levels.name AND priority <> 0
        AND priority < levels.p ORDER BY priority DESC LIMIT 1
    ) FROM levels WHERE p IS NOT NULL
),
picked AS (
    SELECT j.id
    FROM (SELECT name FROM queues ORDER BY n) AS q
    CROSS JOIN LATERAL (
        SELECT p FROM levels WHERE levels.name = q.name AND p IS NOT NULL
        UNION ALL SELECT 0
        ORDER BY 1 DESC
    ) AS lv
    CROSS JOIN LATERAL (
        SELECT id FROM (
            SELECT id FROM {jobs}
            WHERE queue = q.name AND priority <> 0 AND priority = lv.p AND visible_at <= now()
            ORDER BY visible_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ) AS ranked
        UNION ALL
        SELECT id FROM (
            SELECT id FROM {jobs}
            WHERE lv.p = 0 AND queue = q.name AND priority = 0 AND visible_at <= now()
            ORDER BY visible_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ) AS plain
    ) AS j
    LIMIT %(limit)s
)
"""
_CLAIM = (
    _PICK
    + """UPDATE {jobs} AS t
SET attempts = t.attempts + 1, lost = t.lost + t.leased::int, leased = true,
    visible_at = now() + %(lease)s * interval '1 second', updated_at = now(), slot_key = NULL
FROM picked WHERE t.id = picked.id
RETURNING t.id, t.queue, t.body, t.attempts, t.lost, t.priority, t.cancel_requested
"""
)
# The claim of a worker whose jobs have flow limits: the same rows picked and locked, handed
# to the schema's glasswork_claim_limited, which admits them and leases those it takes
# (limits.py).
_LIMITED_CLAIM = (
    _PICK
    + """SELECT * FROM {claim_limited}(ARRAY(SELECT id FROM picked), %(lease)s, %(admit)s,
    %(max_lost)s, %(jobs)s::text[], %(slots)s::integer[], %(starts)s::integer[],
    %(windows)s::double precision[], %(retry)s)
"""
)

# Seconds until the next row of these queues becomes visible (a delayed job or a lease
# running out), or NULL when they are empty.
_NEXT_DUE = """
WITH RECURSIVE {queues}
SELECT EXTRACT(EPOCH FROM min(d.visible_at) - now())::float8
FROM queues CROSS JOIN LATERAL (
    SELECT visible_at FROM {jobs} WHERE queue = queues.name ORDER BY visible_at LIMIT 1
) AS d
"""

_ON_CONFLICT = "ON CONFLICT (job_name, unique_key) WHERE unique_key IS NOT NULL DO NOTHING"
_VISIBLE_AT = "COALESCE(%(at)s::timestamptz, now() + %(delay)s * interval '1 second')"
_INSERTED = "RETURNING id, visible_at, visible_at > now()"

# One job, or any number in one statement (arrays sent in binary: no quoting of the bodies
# on the client or parsing on the server; ids follow the arrays' order). Jobs without a
# priority leave the column to its default (0): they send nothing more.
_ONE = "VALUES (%(queue)s, %(name)s, %(job_id)s, {key}, %(body)s, {due}{priority}{fair})"
_MANY = (
    "SELECT r.queue, r.name, r.job_id, {key}, r.body, {due}{priority}{fair} "
    "FROM unnest(%(queues)b::text[], %(names)b::text[], %(job_ids)b::text[], "
    "%(bodies)b::text[]{keys}{priorities}{fairness_keys}) "
    "WITH ORDINALITY AS r(queue, name, job_id, body{key_column}{priority_column}"
    "{fair_column}, n) ORDER BY r.n"
)


def _insert(
    columns: str, many: bool, unique: bool, later: bool, ranked: bool, fair: bool = False
) -> str:
    """The insert of :meth:`Statements.insert`."""
    shape = _MANY if many else _ONE
    due = _VISIBLE_AT if later else "now()"
    if ranked:
        columns = columns.replace(", visible_at)", ", visible_at, priority)")
    if fair:
        columns = columns.replace(")", ", fairness_key)", 1)
    if many:
        key = "r.key" if unique else "NULL"
        arrays = {
            "keys": ", %(keys)b::text[]" if unique else "",
            "key_column": ", key" if unique else "",
            "priorities": ", %(priorities)b::int4[]" if ranked else "",
            "priority_column": ", priority" if ranked else "",
            "fairness_keys": ", %(fairness_keys)b::text[]" if fair else "",
            "fair_column": ", fairness" if fair else "",
        }
        priority = ", r.priority" if ranked else ""
        fairness = ", r.fairness" if fair else ""
    else:
        key, arrays = ("%(key)s" if unique else "NULL"), {}
        priority = ", %(priority)s" if ranked else ""
        fairness = ", %(fairness_key)s" if fair else ""
    values = shape.format(key=key, due=due, priority=priority, fair=fairness, **arrays)
    conflict = f" {_ON_CONFLICT}" if unique else ""
    # A job due now is never later: its id is all the caller needs back.
    returning = _INSERTED if later else "RETURNING id"
    return f"{columns} {values}{conflict} {returning}"


_RECEIPTS = "unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS r(id, attempts)"
_MATCHES = "t.id = r.id AND t.attempts = r.attempts"


class Statements:
    """Every statement of the driver, for one schema (identifiers quoted once, here)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = channel_name(schema)
        jobs = sql.Identifier(schema, "glasswork_jobs").as_string()
        dead = sql.Identifier(schema, "glasswork_dead_letters").as_string()
        periodic = sql.Identifier(schema, "glasswork_periodic").as_string()
        outcomes = sql.Identifier(schema, "glasswork_outcomes").as_string()
        workers = sql.Identifier(schema, "glasswork_workers").as_string()
        #: The dead-letter table, for searches built per query (dead_letter_search.py).
        self.dead_letter_table = dead
        listed, every = _LISTED, _ALL.format(jobs=jobs)

        columns = f"INSERT INTO {jobs} (queue, job_name, job_id, unique_key, body, visible_at)"
        self._inserts = {
            (many, unique, later, ranked, fair): _insert(columns, many, unique, later, ranked, fair)
            for many in (False, True)
            for unique in (False, True)
            for later in (False, True)
            for ranked in (False, True)
            for fair in (False, True)
        }
        self.find_jobs = (
            f"SELECT id, visible_at, visible_at > now() FROM {jobs} "
            "WHERE job_id = ANY(%s) ORDER BY id"
        )
        self.key_holder = f"SELECT job_id FROM {jobs} WHERE job_name = %s AND unique_key = %s"
        self.delete_jobs = f"DELETE FROM {jobs} WHERE id = ANY(%s)"

        self.claim_listed = _CLAIM.format(queues=listed, jobs=jobs)
        self.claim_all = _CLAIM.format(queues=every, jobs=jobs)
        claim_limited = sql.Identifier(schema, "glasswork_claim_limited").as_string()
        self.claim_limited_listed = _LIMITED_CLAIM.format(
            queues=listed, jobs=jobs, claim_limited=claim_limited
        )
        self.claim_limited_all = _LIMITED_CLAIM.format(
            queues=every, jobs=jobs, claim_limited=claim_limited
        )
        self.throttle_counts = (
            "SELECT job_name, count FROM "
            f"{sql.Identifier(schema, 'glasswork_throttles').as_string()} WHERE count > 0"
        )
        self.next_due_listed = _NEXT_DUE.format(queues=listed, jobs=jobs)
        self.next_due_all = _NEXT_DUE.format(queues=every, jobs=jobs)

        self.ack = f"DELETE FROM {jobs} AS t USING {_RECEIPTS} WHERE {_MATCHES}"
        # Released jobs wake waiting workers like new ones (the trigger only sees inserts).
        released = (
            f"WITH released AS (UPDATE {jobs} AS t SET leased = false, {{}} FROM {_RECEIPTS} "
            f"WHERE {_MATCHES} RETURNING t.queue) "
            "SELECT pg_notify(%(channel)s, queue) FROM (SELECT DISTINCT queue FROM released) AS q"
        )
        self.release = released.format("visible_at = now() + %(delay)s * interval '1 second'")
        # A hand-back (a worker shutting down) is not an attempt: the count steps back.
        self.hand_back = released.format("visible_at = now(), attempts = t.attempts - 1")
        self.extend = (
            f"UPDATE {jobs} AS t SET visible_at = now() + %(seconds)s * interval '1 second' "
            f"FROM {_RECEIPTS} WHERE {_MATCHES} AND t.leased"
        )
        self.debounce = (
            f"SELECT * FROM {sql.Identifier(schema, 'glasswork_debounce').as_string()}"
            "(%(queue)s, %(name)s, %(job_id)s, %(key)s, %(body)s, %(delay)s, %(priority)s, "
            "%(reason)s, %(keep)s, %(fairness_key)s)"
        )
        self.acquire = (
            f"SELECT {sql.Identifier(schema, 'glasswork_acquire').as_string()}"
            "(%(id)s, %(attempts)s, %(job)s, %(slot)s, %(slots)s, %(starts)s, %(window)s, "
            "%(retry)s)"
        )
        self.bury = (
            f"WITH gone AS (DELETE FROM {jobs} WHERE id = %(id)s AND attempts = %(attempts)s "
            "RETURNING queue, job_name, job_id, body) "
            f"INSERT INTO {dead} (queue, job_name, job_id, body, reason) "
            "SELECT queue, job_name, job_id, body, %(reason)s FROM gone"
        )
        self.dead_letter = (
            f"INSERT INTO {dead} (queue, job_name, job_id, body, reason, traceback) "
            "VALUES (%s, %s, %s, %s, %s, %s)"
        )
        # ``claimed_by`` makes a retried claim (after a lost connection) see its own win.
        self.claim_periodic = (
            f"INSERT INTO {periodic} AS p (job_name, last_fire, claimed_by) VALUES (%s, %s, %s) "
            "ON CONFLICT (job_name) DO UPDATE "
            "SET last_fire = excluded.last_fire, claimed_by = excluded.claimed_by "
            "WHERE p.last_fire < excluded.last_fire "
            "OR (p.last_fire = excluded.last_fire AND p.claimed_by = excluded.claimed_by)"
        )

        self.stats = (
            "SELECT queue, count(*) FILTER (WHERE visible_at <= now()), "
            "count(*) FILTER (WHERE NOT leased AND visible_at > now()), "
            "count(*) FILTER (WHERE leased AND visible_at > now()) "
            f"FROM {jobs} GROUP BY queue"
        )
        self.dead_counts = f"SELECT COALESCE(queue, 'default'), count(*) FROM {dead} GROUP BY 1"
        self.pending = (
            f"SELECT count(*) FROM {jobs} "
            "WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s)"
        )
        _dead_filter = (
            "(%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s)) "
            "AND (%(queue)s::text IS NULL OR queue = %(queue)s)"
        )
        self.dead_letters = (
            f"SELECT id, queue, job_name, job_id, body, reason, failed_at, traceback FROM {dead} "
            f"WHERE {_dead_filter} ORDER BY id LIMIT %(limit)s"
        )
        self.redrive_candidates = (
            f"SELECT id, queue, body FROM {dead} WHERE {_dead_filter} ORDER BY id FOR UPDATE"
        )
        # One dead letter back onto its queue, unless a pending job holds its unique key.
        self.redrive_one = (
            f"WITH moved AS ({columns.replace(')', ', fairness_key)', 1)} VALUES (%(queue)s, "
            "%(name)s, %(job_id)s, %(key)s, %(body)s, now(), %(fairness_key)s) "
            f"{_ON_CONFLICT} RETURNING 1) "
            f"DELETE FROM {dead} WHERE id = %(id)s AND EXISTS (SELECT FROM moved)"
        )
        self.purge = f"DELETE FROM {dead} WHERE {_dead_filter}"

        # Job lookup: the pending rows, then the dead letters, of one job id, in one snapshot
        # (a job moving between the tables meanwhile is still found). No index on job_id:
        # enqueueing pays nothing for lookups, which scan.
        self.find_job = (
            "SELECT * FROM ("
            "SELECT 0 AS dead, id, queue, job_name, body, attempts, "
            "CASE WHEN visible_at <= now() THEN 'ready' WHEN leased THEN 'in_flight' "
            "ELSE 'delayed' END, visible_at, enqueued_at, NULL AS reason, NULL AS failed_at, "
            f"NULL AS traceback FROM {jobs} WHERE job_id = %(job_id)s "
            "UNION ALL "
            "SELECT 1, id, queue, job_name, body, NULL, 'dead', NULL, NULL, reason, failed_at, "
            f"traceback FROM {dead} WHERE job_id = %(job_id)s"
            ") AS found ORDER BY dead, id"
        )
        # Outcome counts: keys added in sorted order, so concurrent workers lock rows in the
        # same order (no deadlocks); counts of one key in one call are summed first, since
        # ON CONFLICT cannot touch a row twice in one statement.
        self.record_outcomes = (
            f"INSERT INTO {outcomes} AS o (minute, queue, job_name, outcome, count) "
            "SELECT minute, queue, job_name, outcome, sum(count) "
            "FROM unnest(%(minutes)s::timestamptz[], %(queues)s::text[], %(names)s::text[], "
            "%(outcomes)s::text[], %(counts)s::bigint[]) AS r(minute, queue, job_name, outcome, "
            "count) GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
            "ON CONFLICT (minute, queue, job_name, outcome) "
            "DO UPDATE SET count = o.count + excluded.count"
        )
        # Rows another worker is pruning (or adding to) are skipped, never waited for.
        self.prune_outcomes = (
            f"DELETE FROM {outcomes} WHERE (minute, queue, job_name, outcome) IN ("
            f"SELECT minute, queue, job_name, outcome FROM {outcomes} "
            "WHERE minute < now() - %(seconds)s * interval '1 second' FOR UPDATE SKIP LOCKED)"
        )
        # Worker heartbeats (workers.py): times are the server's, so every worker and every
        # dashboard agree on how long a worker has been silent.
        self.record_worker = (
            f"INSERT INTO {workers} AS w (id, host, pid, queues, concurrency, in_flight, "
            "every, started_at, last_seen) VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s, "
            "%(concurrency)s, %(in_flight)s, %(every)s, %(started_at)s, now()) "
            "ON CONFLICT (id) DO UPDATE SET in_flight = excluded.in_flight, "
            "every = excluded.every, last_seen = now()"
        )
        self.forget_workers = (
            f"DELETE FROM {workers} WHERE last_seen < now() - %(seconds)s * interval '1 second'"
        )
        self.remove_worker = f"DELETE FROM {workers} WHERE id = %(id)s"
        self.workers = (
            "SELECT id, host, pid, queues, concurrency, in_flight, every, started_at, "
            "last_seen, greatest(0, EXTRACT(EPOCH FROM now() - last_seen))::float8 "
            f"FROM {workers} ORDER BY started_at DESC, id"
        )
        self.outcome_history = (
            f"SELECT minute, queue, job_name, outcome, count FROM {outcomes} "
            "WHERE minute >= %(since)s ORDER BY minute, queue, job_name, outcome"
        )

    def insert(
        self, *, many: bool, unique: bool, later: bool, ranked: bool = False, fair: bool = False
    ) -> str:
        """The insert of one job or (``many``) of arrays of them: with ``ON CONFLICT`` on the
        unique-key index when a job has a ``unique`` key (others never conflict), returning
        each row's due time only for jobs that may be due ``later`` than now, and writing
        the priority only when a job has one (``ranked``), the fairness key only when a job
        has one (``fair``)."""
        return self._inserts[(many, unique, later, ranked, fair)]
