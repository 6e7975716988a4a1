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
    # Fair tenants (fairness.py): the key a job is claimed round-robin by (NULL: none; "C"
    # collation, so the order of keys is the same everywhere), indexed only for jobs with
    # one (other jobs cost nothing more to store or claim), by key and due time, and by key
    # and priority for the few with a priority (then by id: jobs due at once, in order);
    # each fair queue's place in its round (the last key served).
    # Debounce (producing.py): a debounced enqueue in one call, which supersedes the job
    # holding the unique key (if it was enqueued debounced: its body has a "debounce"),
    # keeping its end, and inserts the new job; racing calls for one key take turns on the
    # holder's row lock, and an insert that loses the race to another supersedes it in turn.
    # Flow limits taken in the claim (limits.py): how many deliveries of each job its limits
    # held back, added to by the transaction that held them back (also glasswork_acquire's,
    # replaced to count); and glasswork_claim_limited, which a claim of a worker whose jobs
    # have limits calls with the ids its statement picked and locked, to admit the limited
    # ones in the same statement: no round trip per start.
    7: """
CREATE OR REPLACE FUNCTION {schema}.glasswork_debounce(
    p_queue text, p_name text, p_job_id text, p_key text, p_body text,
    p_delay double precision, p_priority integer, p_reason text, p_keep double precision,
    p_fair text
) RETURNS TABLE (row_id bigint, due timestamptz, later boolean, superseded text, held_by text)
LANGUAGE plpgsql AS {quote}
DECLARE
    held_id bigint;
    held_job text;
    held_body text;
    held_due timestamptz;
    debounced boolean;
    gone_job text;
BEGIN
    FOR attempt IN 1..50 LOOP
        SELECT j.id, j.job_id, j.body, j.visible_at INTO held_id, held_job, held_body, held_due
            FROM {schema}.glasswork_jobs AS j
            WHERE j.job_name = p_name AND j.unique_key = p_key FOR UPDATE;
        IF held_id IS NOT NULL THEN
            IF held_job = p_job_id THEN
                -- This very enqueue, committed by a call whose answer was lost: done.
                RETURN QUERY SELECT held_id, held_due, held_due > now(), gone_job, NULL::text;
                RETURN;
            END IF;
            BEGIN
                debounced := (held_body::json ->> 'debounce') IS NOT NULL;
            EXCEPTION WHEN others THEN
                debounced := false;  -- a body that is not JSON was not enqueued debounced
            END;
            IF NOT debounced THEN
                RETURN QUERY SELECT NULL::bigint, NULL::timestamptz, NULL::boolean,
                    NULL::text, held_job;
                RETURN;
            END IF;
            WITH gone AS (
                DELETE FROM {schema}.glasswork_jobs AS j WHERE j.id = held_id RETURNING j.*
            )
            INSERT INTO {schema}.glasswork_job_results AS r (job_id, job_name, queue, state,
                attempts, result, error, traceback, progress, progress_note, priority,
                enqueued_at, updated_at, expires_at)
            SELECT g.job_id, g.job_name, g.queue, 'cancelled', g.attempts, NULL,
                p_reason || CASE WHEN g.leased THEN ' while it ran' ELSE '' END, NULL,
                g.progress, g.progress_note, g.priority, g.enqueued_at, now(),
                now() + p_keep * interval '1 second'
            FROM gone AS g WHERE g.job_id IS NOT NULL
            ON CONFLICT (job_id) DO UPDATE SET job_name = excluded.job_name,
                queue = excluded.queue, state = excluded.state, attempts = excluded.attempts,
                result = excluded.result, error = excluded.error,
                traceback = excluded.traceback, progress = excluded.progress,
                progress_note = excluded.progress_note, priority = excluded.priority,
                enqueued_at = excluded.enqueued_at, updated_at = excluded.updated_at,
                expires_at = excluded.expires_at;
            gone_job := held_job;
        END IF;
        RETURN QUERY
            INSERT INTO {schema}.glasswork_jobs AS j (queue, job_name, job_id, unique_key,
                body, visible_at, priority, fairness_key)
            VALUES (p_queue, p_name, p_job_id, p_key, p_body,
                now() + p_delay * interval '1 second', p_priority, p_fair)
            ON CONFLICT (job_name, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
            RETURNING j.id, j.visible_at, j.visible_at > now(), gone_job, NULL::text;
        IF FOUND THEN
            RETURN;
        END IF;
        -- Another enqueue of the key committed its job since the look above: go again.
    END LOOP;
    RAISE EXCEPTION 'glasswork: job % with unique key % changed under 50 tries of a '
        'debounced enqueue', p_name, p_key USING ERRCODE = 'serialization_failure';
END
{quote};
ALTER TABLE {schema}.glasswork_jobs ADD COLUMN IF NOT EXISTS fairness_key text COLLATE "C";
CREATE INDEX IF NOT EXISTS glasswork_jobs_fair
    ON {schema}.glasswork_jobs (queue, fairness_key, visible_at, id)
    WHERE fairness_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS glasswork_jobs_fair_priority
    ON {schema}.glasswork_jobs (queue, fairness_key, priority DESC, visible_at, id)
    WHERE fairness_key IS NOT NULL AND priority <> 0;
CREATE TABLE IF NOT EXISTS {schema}.glasswork_fair_queues (
    queue text PRIMARY KEY,
    cursor text COLLATE "C" NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS {schema}.glasswork_throttles (
    job_name text PRIMARY KEY,
    count bigint NOT NULL
);
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
    PERFORM 1 FROM {schema}.glasswork_jobs
        WHERE id = p_id AND attempts = p_attempts AND leased FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
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
    INSERT INTO {schema}.glasswork_throttles AS c (job_name, count) VALUES (p_job, 1)
        ON CONFLICT (job_name) DO UPDATE SET count = c.count + 1;
    RETURN wait;
END
{quote};
CREATE OR REPLACE FUNCTION {schema}.glasswork_claim_limited(
    p_ids bigint[], p_lease double precision, p_admit integer, p_max_lost integer,
    p_jobs text[], p_slots integer[], p_starts integer[], p_windows double precision[],
    p_retry double precision
) RETURNS TABLE (
    r_id bigint, r_queue text, r_body text, r_attempts integer, r_lost integer,
    r_priority integer, r_cancel boolean, r_job text, r_kind text, r_order integer
) LANGUAGE plpgsql AS {quote}
DECLARE
    c record;
    key_ids bigint[] := ARRAY[]::bigint[];
    key_values text[] := ARRAY[]::text[];
    c_ids bigint[] := ARRAY[]::bigint[];
    c_queues text[] := ARRAY[]::text[];
    c_jobs text[] := ARRAY[]::text[];
    c_limits integer[] := ARRAY[]::integer[];
    c_slots text[] := ARRAY[]::text[];
    s_names text[];
    s_held integer[];
    stored integer[];
    added integer[];
    waited integer[];
    take_ids bigint[] := ARRAY[]::bigint[];
    take_slots text[] := ARRAY[]::text[];
    take_kinds text[] := ARRAY[]::text[];
    take_order integer[] := ARRAY[]::integer[];
    back_ids bigint[] := ARRAY[]::bigint[];
    back_waits double precision[] := ARRAY[]::double precision[];
    back_order integer[] := ARRAY[]::integer[];
    started text[] := ARRAY[]::text[];
    h integer;
    i integer;
    k integer;
    n integer;
    pos integer;
    admitted integer := 0;
    left_behind integer := 0;
    leaves timestamptz;
    t timestamptz;
    wait double precision;
BEGIN
    -- Rows of no limited job are leased as the plain claim leases them, and that is all.
    PERFORM 1 FROM {schema}.glasswork_jobs AS j
        WHERE j.id = ANY(p_ids) AND j.job_name = ANY(p_jobs);
    IF NOT FOUND THEN
        RETURN QUERY
        WITH taken AS (
            UPDATE {schema}.glasswork_jobs AS j
            SET attempts = j.attempts + 1, lost = j.lost + j.leased::int, leased = true,
                visible_at = now() + p_lease * interval '1 second', updated_at = now(),
                slot_key = NULL
            FROM unnest(p_ids) WITH ORDINALITY AS x(id, o)
            WHERE j.id = x.id
            RETURNING j.id, j.queue, j.body, j.attempts, j.lost, j.priority,
                j.cancel_requested, j.job_name, 'claimed'::text, x.o::integer
        )
        SELECT * FROM taken;
        RETURN;
    END IF;
    -- The concurrency key of each picked row whose job has a concurrency limit, read from
    -- its body; a body that is not JSON has none (the worker dead-letters it on reading).
    -- (Looked for first: a claim finding no such row pays for no subtransaction.)
    PERFORM 1 FROM {schema}.glasswork_jobs AS j
        JOIN unnest(p_jobs, p_slots) AS l(name, slots) ON l.name = j.job_name
        WHERE j.id = ANY(p_ids) AND l.slots IS NOT NULL;
    IF FOUND THEN BEGIN
        SELECT coalesce(array_agg(j.id), key_ids),
               coalesce(array_agg(j.body::json ->> 'concurrencyKey'), key_values)
            INTO key_ids, key_values
            FROM {schema}.glasswork_jobs AS j
            JOIN unnest(p_jobs, p_slots) AS l(name, slots) ON l.name = j.job_name
            WHERE j.id = ANY(p_ids) AND l.slots IS NOT NULL;
    EXCEPTION WHEN data_exception THEN
        key_ids := ARRAY[]::bigint[];
        key_values := ARRAY[]::text[];
        FOR c IN SELECT j.id, j.body FROM {schema}.glasswork_jobs AS j
                JOIN unnest(p_jobs, p_slots) AS l(name, slots) ON l.name = j.job_name
                WHERE j.id = ANY(p_ids) AND l.slots IS NOT NULL LOOP
            key_ids := array_append(key_ids, c.id);
            BEGIN
                key_values := array_append(key_values, c.body::json ->> 'concurrencyKey');
            EXCEPTION WHEN data_exception THEN
                key_values := array_append(key_values, NULL::text);
            END;
        END LOOP;
    END; END IF;
    -- The picked rows in the order a claim takes them, each with its job's limits (their
    -- index in p_jobs; none for a row the caller ends instead of running: asked to stop,
    -- or dead-lettered for lost leases) and the slot it would take (as limits.slot_key: a
    -- key over 200 characters, or like a digest, as its digest; the job name scoped as
    -- message.scoped_key does).
    FOR c IN
        SELECT j.id, j.queue, j.job_name,
            CASE WHEN NOT (j.cancel_requested OR j.lost + j.leased::int >= p_max_lost)
                THEN l.n END AS n,
            CASE WHEN p_slots[l.n] IS NOT NULL THEN
                CASE WHEN strpos(j.job_name, '#') > 0
                    THEN '#' || length(j.job_name) || '#' || j.job_name || '#'
                    ELSE j.job_name || '#' END
                || CASE WHEN length(kv.value) > 200 OR left(kv.value, 7) = 'sha256:'
                    THEN 'sha256:' || encode(sha256(convert_to(kv.value, 'UTF8')), 'hex')
                    ELSE coalesce(kv.value, '') END
            END AS slot
        FROM {schema}.glasswork_jobs AS j
        LEFT JOIN unnest(p_jobs) WITH ORDINALITY AS l(name, n) ON l.name = j.job_name
        LEFT JOIN unnest(key_ids, key_values) AS kv(id, value) ON kv.id = j.id
        WHERE j.id = ANY(p_ids)
        ORDER BY j.priority DESC, j.visible_at, j.id
    LOOP
        c_ids := array_append(c_ids, c.id);
        c_queues := array_append(c_queues, c.queue);
        c_jobs := array_append(c_jobs, c.job_name);
        c_limits := array_append(c_limits, c.n::integer);
        c_slots := array_append(c_slots, CASE WHEN c.n IS NOT NULL THEN c.slot END);
    END LOOP;
    -- Each count under a lock of its own key, held to the end of the transaction, so two
    -- claims never both take the last slot or the last start of a window: slots (21) then
    -- rates (22), each in the order of the key's hash (as glasswork_acquire takes them).
    FOR h IN SELECT DISTINCT hashtext(s) FROM unnest(c_slots) AS s WHERE s IS NOT NULL ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(21, h);
    END LOOP;
    FOR h IN SELECT DISTINCT hashtext(p_jobs[x]) FROM unnest(c_limits) AS x
            WHERE x IS NOT NULL AND p_starts[x] IS NOT NULL ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(22, h);
    END LOOP;
    SELECT array_agg(s), array_agg((
            SELECT count(*) FROM {schema}.glasswork_jobs
            WHERE slot_key = s AND leased AND visible_at > clock_timestamp()))
        INTO s_names, s_held
        FROM (SELECT DISTINCT s FROM unnest(c_slots) AS s WHERE s IS NOT NULL) AS d;
    t := clock_timestamp();
    stored := array_fill(0, ARRAY[coalesce(cardinality(p_jobs), 0)]);
    added := stored;
    waited := stored;
    FOR n IN SELECT DISTINCT x FROM unnest(c_limits) AS x
            WHERE x IS NOT NULL AND p_starts[x] IS NOT NULL
    LOOP
        DELETE FROM {schema}.glasswork_rate_starts
            WHERE job_name = p_jobs[n] AND started_at <= t - p_windows[n] * interval '1 second';
        SELECT count(*) INTO k FROM {schema}.glasswork_rate_starts WHERE job_name = p_jobs[n];
        stored[n] := k;
    END LOOP;
    FOR i IN 1 .. coalesce(cardinality(c_ids), 0) LOOP
        n := c_limits[i];
        IF n IS NULL THEN
            take_ids := array_append(take_ids, c_ids[i]);
            take_slots := array_append(take_slots, NULL::text);
            take_kinds := array_append(take_kinds, 'claimed');
            take_order := array_append(take_order, i);
            CONTINUE;
        END IF;
        wait := NULL;
        k := NULL;
        IF p_slots[n] IS NOT NULL THEN
            k := array_position(s_names, c_slots[i]);
            IF s_held[k] >= p_slots[n] THEN
                wait := p_retry * (1 + random() / 2);
            END IF;
        END IF;
        IF wait IS NULL AND p_starts[n] IS NOT NULL
                AND stored[n] + added[n] >= p_starts[n] THEN
            -- Due when the start that keeps the window full for it leaves the window, the
            -- rows held back before it having started as soon as they could.
            pos := stored[n] + added[n] - p_starts[n] + waited[n] % p_starts[n];
            leaves := t;
            IF pos < stored[n] THEN
                SELECT started_at INTO leaves FROM {schema}.glasswork_rate_starts
                    WHERE job_name = p_jobs[n] ORDER BY started_at OFFSET pos LIMIT 1;
            END IF;
            wait := greatest(0.001, EXTRACT(EPOCH FROM leaves - t)
                + p_windows[n] * (1 + waited[n] / p_starts[n]));
            waited[n] := waited[n] + 1;
        END IF;
        IF wait IS NOT NULL THEN
            back_ids := array_append(back_ids, c_ids[i]);
            back_waits := array_append(back_waits, wait);
            back_order := array_append(back_order, i);
            CONTINUE;
        END IF;
        IF admitted >= p_admit THEN
            left_behind := left_behind + 1;  -- no free thread to start it: left where it is
            CONTINUE;
        END IF;
        admitted := admitted + 1;
        IF k IS NOT NULL THEN
            s_held[k] := s_held[k] + 1;
        END IF;
        IF p_starts[n] IS NOT NULL THEN
            added[n] := added[n] + 1;
            started := array_append(started, p_jobs[n]);
        END IF;
        take_ids := array_append(take_ids, c_ids[i]);
        take_slots := array_append(take_slots, c_slots[i]);
        take_kinds := array_append(take_kinds, 'limited');
        take_order := array_append(take_order, i);
    END LOOP;
    IF left_behind > 0 THEN
        RETURN QUERY SELECT NULL::bigint, NULL::text, NULL::text, NULL::integer, NULL::integer,
            NULL::integer, NULL::boolean, NULL::text, 'left'::text, left_behind;
    END IF;
    IF cardinality(started) > 0 THEN
        INSERT INTO {schema}.glasswork_rate_starts (job_name, started_at)
            SELECT x, t FROM unnest(started) AS x;
    END IF;
    IF cardinality(back_ids) > 0 THEN
        -- Held back: due when it may try again, its attempt not spent (a lease that had run
        -- out on it counted as lost now, as the next claim would have).
        RETURN QUERY
        WITH back AS (
            UPDATE {schema}.glasswork_jobs AS j
            SET visible_at = t + b.wait * interval '1 second', updated_at = now(),
                slot_key = NULL, lost = j.lost + j.leased::int, leased = false
            FROM unnest(back_ids, back_waits, back_order) AS b(id, wait, o)
            WHERE j.id = b.id
            RETURNING j.id, j.queue, j.attempts, j.lost, j.priority, j.job_name, b.o
        )
        SELECT back.id, back.queue, NULL::text, back.attempts, back.lost, back.priority,
            false, back.job_name, 'throttled', back.o FROM back;
        INSERT INTO {schema}.glasswork_throttles AS tc (job_name, count)
            SELECT c_jobs[o], count(*) FROM unnest(back_order) AS o
            GROUP BY 1 ORDER BY 1
            ON CONFLICT (job_name) DO UPDATE SET count = tc.count + excluded.count;
    END IF;
    RETURN QUERY
    WITH taken AS (
        UPDATE {schema}.glasswork_jobs AS j
        SET attempts = j.attempts + 1, lost = j.lost + j.leased::int, leased = true,
            visible_at = now() + p_lease * interval '1 second', updated_at = now(),
            slot_key = x.slot
        FROM unnest(take_ids, take_slots, take_kinds, take_order) AS x(id, slot, kind, o)
        WHERE j.id = x.id
        RETURNING j.id, j.queue, j.body, j.attempts, j.lost, j.priority, j.cancel_requested,
            j.job_name, x.kind, x.o
    )
    SELECT * FROM taken;
END
{quote};
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
