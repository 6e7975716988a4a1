"""The driver's tables, versioned: each migration is SQL applied once, in order.

The tables live in one PostgreSQL schema (``public`` unless you choose another);
``glasswork_schema_versions`` records which migrations ran. :func:`migration_script` is the
SQL still to apply (what ``glasswork migrate`` prints) and :func:`migrate` applies it in one
transaction under an advisory lock, so workers starting together migrate once.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from psycopg import sql

from ...errors import ConfigurationError

if TYPE_CHECKING:
    from psycopg import Connection

#: The schema version this release of glasswork reads and writes.
SCHEMA_VERSION = 8

# Placeholders: {schema} (quoted identifier), {channel} (the NOTIFY channel, a literal) and
# {quote} (the dollar quote of a function body, one the channel cannot end: see _dollar_quote).
_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE {schema}.glasswork_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text NOT NULL,
    job_name text,
    job_id text,
    unique_key text,
    body text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    leased boolean NOT NULL DEFAULT false,
    lost integer NOT NULL DEFAULT 0,
    visible_at timestamptz NOT NULL DEFAULT now(),
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX glasswork_jobs_due ON {schema}.glasswork_jobs (queue, visible_at);
CREATE UNIQUE INDEX glasswork_jobs_unique ON {schema}.glasswork_jobs (job_name, unique_key)
    WHERE unique_key IS NOT NULL;
CREATE TABLE {schema}.glasswork_dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text,
    job_name text,
    job_id text,
    body text NOT NULL,
    reason text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX glasswork_dead_letters_queue ON {schema}.glasswork_dead_letters (queue, id);
CREATE TABLE {schema}.glasswork_periodic (
    job_name text PRIMARY KEY,
    last_fire timestamptz NOT NULL,
    claimed_by text NOT NULL
);
CREATE FUNCTION {schema}.glasswork_notify() RETURNS trigger LANGUAGE plpgsql AS {quote}
BEGIN
    PERFORM pg_notify({channel}, queue) FROM (SELECT DISTINCT queue FROM new_jobs) AS q;
    RETURN NULL;
END
{quote};
CREATE TRIGGER glasswork_jobs_notify AFTER INSERT ON {schema}.glasswork_jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.glasswork_notify();
""",
    # Outcome counts per minute, for the dashboard's chart (see .capabilities).
    2: """
CREATE TABLE {schema}.glasswork_outcomes (
    minute timestamptz NOT NULL,
    queue text NOT NULL,
    job_name text NOT NULL,
    outcome text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (minute, queue, job_name, outcome)
);
""",
    # The traceback of each dead letter's failure (NULL for none, and for older rows).
    3: """
ALTER TABLE {schema}.glasswork_dead_letters ADD COLUMN traceback text;
""",
    # Dead-letter search (ids were never reused: an identity column) and worker heartbeats.
    4: """
CREATE INDEX glasswork_dead_letters_job ON {schema}.glasswork_dead_letters (job_name, id);
CREATE INDEX glasswork_dead_letters_failed ON {schema}.glasswork_dead_letters (failed_at);
CREATE TABLE {schema}.glasswork_workers (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    queues text[],
    concurrency integer NOT NULL,
    in_flight integer NOT NULL,
    every double precision NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen timestamptz NOT NULL DEFAULT now()
);
""",
    # A job's life (status.py): what a job row shows while queued, ended jobs' statuses
    # (kept for their result_ttl), running jobs by job id (progress, cancel requests), and
    # claims of jobs with a priority: both partial indexes, which a job waiting without a
    # priority is not in, so enqueueing pays nothing more (a status or a cancel by job id
    # scans the waiting rows, as find_job does). IF NOT EXISTS: a schema some of it was
    # added to by hand still upgrades.
    5: """
ALTER TABLE {schema}.glasswork_jobs
    ADD COLUMN IF NOT EXISTS priority integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS cancel_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz,
    ADD COLUMN IF NOT EXISTS last_error text,
    ADD COLUMN IF NOT EXISTS last_traceback text,
    ADD COLUMN IF NOT EXISTS progress double precision,
    ADD COLUMN IF NOT EXISTS progress_note text;
CREATE INDEX IF NOT EXISTS glasswork_jobs_running ON {schema}.glasswork_jobs (job_id)
    WHERE leased;
CREATE INDEX IF NOT EXISTS glasswork_jobs_priority
    ON {schema}.glasswork_jobs (queue, priority DESC, visible_at) WHERE priority <> 0;
CREATE INDEX IF NOT EXISTS glasswork_dead_letters_job_id
    ON {schema}.glasswork_dead_letters (job_id);
CREATE TABLE IF NOT EXISTS {schema}.glasswork_job_results (
    job_id text PRIMARY KEY,
    job_name text,
    queue text NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL,
    result text,
    error text,
    traceback text,
    progress double precision,
    progress_note text,
    priority integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS glasswork_job_results_updated
    ON {schema}.glasswork_job_results (updated_at);
CREATE INDEX IF NOT EXISTS glasswork_job_results_expires
    ON {schema}.glasswork_job_results (expires_at);
""",
    # Flow limits (limits.py): the concurrency slot a running delivery holds (free once its
    # row is settled or its lease has run out), recent starts of rate-limited jobs, and the
    # one call that takes both for a delivery or puts it back: a round trip per start of a
    # limited job, none for other jobs.
    6: """
ALTER TABLE {schema}.glasswork_jobs ADD COLUMN IF NOT EXISTS slot_key text;
CREATE INDEX IF NOT EXISTS glasswork_jobs_slots ON {schema}.glasswork_jobs (slot_key)
    WHERE slot_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS {schema}.glasswork_rate_starts (
    job_name text NOT NULL,
    started_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS glasswork_rate_starts_job
    ON {schema}.glasswork_rate_starts (job_name, started_at);
CREATE OR REPLACE FUNCTION {schema}.glasswork_acquire(
    p_id bigint, p_attempts integer, p_job text, p_slot text, p_slots integer,
    p_starts integer, p_window double precision, p_retry double precision
) RETURNS double precision LANGUAGE plpgsql AS {quote}
DECLARE
    t timestamptz;
    held integer;
    n integer;
    oldest timestamptz;
    wait double precision;
BEGIN
    -- A delivery no longer held (settled, or its lease taken by another worker) must not
    -- start: 0, put back already.
    PERFORM 1 FROM {schema}.glasswork_jobs
        WHERE id = p_id AND attempts = p_attempts AND leased FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    -- Each count is taken under a lock of its own key, held to the end of the transaction,
    -- so two workers never both take the last slot or the last start of a window. (Two-key
    -- advisory locks: a space of their own, 21 slots and 22 rates, always in that order.)
    IF p_slots IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(21, hashtext(p_slot));
        SELECT count(*) INTO held FROM {schema}.glasswork_jobs
            WHERE slot_key = p_slot AND leased AND visible_at > clock_timestamp()
            AND id <> p_id;
        IF held >= p_slots THEN
            wait := p_retry;
        END IF;
    END IF;
    IF wait IS NULL AND p_starts IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(22, hashtext(p_job));
        t := clock_timestamp();
        DELETE FROM {schema}.glasswork_rate_starts
            WHERE job_name = p_job AND started_at <= t - p_window * interval '1 second';
        SELECT count(*) INTO n FROM {schema}.glasswork_rate_starts WHERE job_name = p_job;
        IF n >= p_starts THEN
            SELECT started_at INTO oldest FROM {schema}.glasswork_rate_starts
                WHERE job_name = p_job ORDER BY started_at OFFSET n - p_starts LIMIT 1;
            wait := greatest(0.001, EXTRACT(EPOCH FROM oldest - t) + p_window);
        ELSE
            INSERT INTO {schema}.glasswork_rate_starts (job_name, started_at) VALUES (p_job, t);
        END IF;
    END IF;
    IF wait IS NULL THEN
        IF p_slots IS NOT NULL THEN
            UPDATE {schema}.glasswork_jobs SET slot_key = p_slot
                WHERE id = p_id AND attempts = p_attempts;
        END IF;
        RETURN NULL;
    END IF;
    UPDATE {schema}.glasswork_jobs
        SET leased = false, attempts = attempts - 1, updated_at = now(),
            visible_at = clock_timestamp() + wait * interval '1 second'
        WHERE id = p_id AND attempts = p_attempts AND attempts > 0;
    RETURN wait;
END
{quote};
""",
    # PLACEHOLDER: schema version 7 is issue 21's (flow control); the lead replaces this
    # empty step with theirs when merging. Kept so that workflows' step below is version 8.
    7: """
SELECT 1;
""",
    # Workflows (jobs/workflows/advancing.py): a row per workflow, with its fan-in counter
    # (remaining), and a row per step. Times are Unix seconds, as the statements (shared
    # with SQLite and the mock) write them.
    8: """
CREATE TABLE IF NOT EXISTS {schema}.glasswork_workflows (
    workflow_id text PRIMARY KEY,
    kind text NOT NULL,
    state text NOT NULL,
    on_failure text NOT NULL,
    size integer NOT NULL,
    remaining integer NOT NULL,
    callback integer NOT NULL DEFAULT 0,
    failed_step integer,
    failed_job text,
    error text,
    result text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS glasswork_workflows_updated
    ON {schema}.glasswork_workflows (updated_at);
CREATE TABLE IF NOT EXISTS {schema}.glasswork_workflow_steps (
    workflow_id text NOT NULL,
    step integer NOT NULL,
    job_id text NOT NULL,
    job_name text NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    state text NOT NULL,
    result text,
    error text,
    updated_at double precision NOT NULL,
    PRIMARY KEY (workflow_id, step)
);
""",
}

_VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {schema}.glasswork_schema_versions (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def channel_name(schema: str) -> str:
    """The NOTIFY channel new jobs of ``schema`` are announced on (the payload is the queue)."""
    return f"glasswork:{schema}"


def current_version(conn: Connection, schema: str) -> int:
    """The highest migration applied to ``schema`` (0: none, or no such schema)."""
    table = sql.Identifier(schema, "glasswork_schema_versions")
    row = conn.execute("SELECT to_regclass(%s)", (table.as_string(),)).fetchone()
    if row is None or row[0] is None:
        return 0
    found = conn.execute(sql.SQL("SELECT max(version) FROM {}").format(table)).fetchone()
    return int(found[0]) if found and found[0] is not None else 0


def migration_script(conn: Connection, schema: str) -> str:
    """The SQL that brings ``schema`` to :data:`SCHEMA_VERSION` ('' when it is there): one
    transaction, safe to feed to ``psql``."""
    version = _checked_version(conn, schema)
    if version == SCHEMA_VERSION:
        return ""
    exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    return "\n".join(
        ["BEGIN;", *_statements(schema, version, create_schema=exists is None), "COMMIT;", ""]
    )


def migrate(conn: Connection, schema: str) -> list[int]:
    """Apply the migrations ``schema`` lacks, in one transaction; returns their versions.

    ``conn`` must not be inside a transaction. An advisory lock on the schema's name makes
    concurrent callers wait for the first, then find nothing left to do."""
    if conn.info.transaction_status != conn.info.transaction_status.IDLE:
        raise ConfigurationError("migrate() needs a connection outside a transaction")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (channel_name(schema),))
        version = _checked_version(conn, schema)
        if version == SCHEMA_VERSION:
            return []
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        for statement in _statements(schema, version, create_schema=exists is None):
            conn.execute(statement.encode())
    return list(range(version + 1, SCHEMA_VERSION + 1))


def _checked_version(conn: Connection, schema: str) -> int:
    version = current_version(conn, schema)
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"PostgreSQL schema {schema!r} has Glasswork queue schema version {version}; this "
            f"version of glasswork reads version {SCHEMA_VERSION}: upgrade glasswork"
        )
    return version


def _statements(schema: str, version: int, *, create_schema: bool) -> list[str]:
    quoted = sql.Identifier(schema).as_string()
    channel = sql.Literal(channel_name(schema)).as_string()
    quote = _dollar_quote(channel)
    out = []
    if create_schema:
        out.append(f"CREATE SCHEMA IF NOT EXISTS {quoted};")
    out.append(_VERSIONS_TABLE.strip().format(schema=quoted))
    for number in range(version + 1, SCHEMA_VERSION + 1):
        out.append(f"-- Glasswork queue schema version {number}")
        out.append(_MIGRATIONS[number].strip().format(schema=quoted, channel=channel, quote=quote))
        out.append(f"INSERT INTO {quoted}.glasswork_schema_versions (version) VALUES ({number});")
    return out


def _dollar_quote(text: str) -> str:
    """``$$``, or (when ``text``, which sits inside a quoted function body, holds it, as a
    schema named ``a$$b`` does) the first ``$glasswork$``, ``$glasswork1$``, ... it does not
    hold: a body ends only where its own tag appears."""
    tags = itertools.chain(["$$", "$glasswork$"], (f"$glasswork{n}$" for n in itertools.count(1)))
    return next(tag for tag in tags if tag not in text)
