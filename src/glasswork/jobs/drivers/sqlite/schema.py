"""The SQLite queue's tables and their versions (``PRAGMA user_version``): a new file runs
every step, an older one the steps it lacks, when a driver opens it.

    glasswork_jobs(id INTEGER PRIMARY KEY, queue, job_name, job_id, unique_key, body,
                   attempts, leased, lost, visible_at, enqueued_at)
    glasswork_dead_letters(id INTEGER PRIMARY KEY AUTOINCREMENT, queue, job_name, job_id,
                           body, reason, failed_at, traceback)  # v3: traceback; v4: ids
    glasswork_periodic(job_name PRIMARY KEY, last_fire)   # which periodic fires happened
    glasswork_outcomes(minute, queue, job_name, outcome, count)   # v2: outcomes.py
    glasswork_workers(id PRIMARY KEY, host, pid, ...)  # v4: heartbeats, workers.py
    # v5: a job's life (status.py): job rows gain priority, cancel_requested, last_error,
    # last_traceback, progress, progress_note, updated_at; ended jobs' statuses:
    glasswork_job_results(job_id PRIMARY KEY, job_name, queue, state, attempts, result,
                          error, traceback, progress, progress_note, priority,
                          enqueued_at, updated_at, expires_at)
    # v6: flow limits (limits.py): job rows gain slot_key (the concurrency slot a running
    # delivery holds); recent starts of rate-limited jobs:
    glasswork_rate_starts(job_name, started_at)
    # v7: fair tenants (fairness.py): job rows gain fairness_key; the round-robin state of
    # each queue that has had keyed jobs:
    glasswork_fair_queues(queue PRIMARY KEY, cursor, tagged_to)
    # v7 also: deliveries limits held back, per job (limits.py: the dashboard's throttle counts):
    glasswork_throttles(job_name PRIMARY KEY, count)
    # v8: workflows (jobs/workflows/advancing.py): a row per workflow with its fan-in
    # counter, a row per step
    glasswork_workflows(workflow_id PRIMARY KEY, kind, state, on_failure, size, remaining,
                        callback, failed_step, failed_job, error, result, created_at,
                        updated_at)
    glasswork_workflow_steps(workflow_id, step, job_id, job_name, queue, priority, state,
                             result, error, updated_at, PRIMARY KEY (workflow_id, step))
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS glasswork_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    job_name TEXT,
    job_id TEXT,
    unique_key TEXT,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    leased INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL,
    enqueued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS glasswork_jobs_due ON glasswork_jobs (queue, visible_at);
CREATE UNIQUE INDEX IF NOT EXISTS glasswork_jobs_unique
    ON glasswork_jobs (job_name, unique_key) WHERE unique_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS glasswork_dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT,
    job_name TEXT,
    job_id TEXT,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS glasswork_dead_letters_queue
    ON glasswork_dead_letters (queue, id);
CREATE TABLE IF NOT EXISTS glasswork_periodic (
    job_name TEXT PRIMARY KEY,
    last_fire REAL NOT NULL
);
"""

#: Schema version 1 → 2: outcome counts per minute (minute: Unix time).
OUTCOMES_SCHEMA = """
CREATE TABLE IF NOT EXISTS glasswork_outcomes (
    minute INTEGER NOT NULL,
    queue TEXT NOT NULL,
    job_name TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (minute, queue, job_name, outcome)
) WITHOUT ROWID
"""

#: The traceback of each dead letter's failure (NULL for none, and for older rows).
_TRACEBACKS = "ALTER TABLE glasswork_dead_letters ADD COLUMN traceback TEXT"

#: Version 4: worker heartbeats (times: Unix seconds; queues: JSON).
WORKERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS glasswork_workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    queues TEXT,
    concurrency INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    every REAL NOT NULL,
    started_at REAL NOT NULL,
    last_seen REAL NOT NULL
)
"""

_DEAD = "glasswork_dead_letters"
_DEAD_LETTER_INDEXES = (
    f"CREATE INDEX IF NOT EXISTS glasswork_dead_letters_job ON {_DEAD} (job_name, id)",
    f"CREATE INDEX IF NOT EXISTS glasswork_dead_letters_failed ON {_DEAD} (failed_at)",
)


def never_reuse_ids(conn: sqlite3.Connection) -> None:
    """Version 4: rebuild the dead-letter table with ``AUTOINCREMENT`` (without it SQLite
    hands the highest id out again after that row is deleted, so an id copied into a ticket
    could later name another job), its columns and indexes as they are, whatever earlier
    steps added; then add the search indexes ``(job_name, id)`` and ``(failed_at)``."""
    (create,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (_DEAD,)
    ).fetchone()
    if "AUTOINCREMENT" not in create.upper():
        rebuilt = re.sub(
            r"\bid\s+INTEGER\s+PRIMARY\s+KEY\b",
            "id INTEGER PRIMARY KEY AUTOINCREMENT",
            create,
            count=1,
            flags=re.IGNORECASE,
        ).replace(_DEAD, f"{_DEAD}_v3", 1)
        indexes = [
            sql
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL",
                (_DEAD,),
            )
        ]
        conn.execute(rebuilt)
        # Same columns in the same order; sqlite_sequence starts at the highest id kept.
        conn.execute(f"INSERT INTO {_DEAD}_v3 SELECT * FROM {_DEAD}")
        conn.execute(f"DROP TABLE {_DEAD}")
        conn.execute(f"ALTER TABLE {_DEAD}_v3 RENAME TO {_DEAD}")
        for sql in indexes:
            conn.execute(sql)
    for sql in _DEAD_LETTER_INDEXES:
        conn.execute(sql)


def _version_4(conn: sqlite3.Connection) -> None:
    """Dead-letter ids never reused, the dead-letter search indexes, worker heartbeats."""
    never_reuse_ids(conn)
    conn.execute(WORKERS_SCHEMA)


#: Version 5: the columns a job row gains (added only where missing, so a file some step
#: already touched by hand still upgrades).
_JOB_COLUMNS = (
    ("priority", "INTEGER NOT NULL DEFAULT 0"),
    ("cancel_requested", "INTEGER NOT NULL DEFAULT 0"),
    ("updated_at", "REAL"),
    ("last_error", "TEXT"),
    ("last_traceback", "TEXT"),
    ("progress", "REAL"),
    ("progress_note", "TEXT"),
)
#: Version 5: ended jobs' statuses (times: Unix seconds; result: JSON text).
RESULTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS glasswork_job_results (
    job_id TEXT PRIMARY KEY,
    job_name TEXT,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    result TEXT,
    error TEXT,
    traceback TEXT,
    progress REAL,
    progress_note TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    enqueued_at REAL,
    updated_at REAL NOT NULL,
    expires_at REAL NOT NULL
)
"""
_STATUS_INDEXES = (
    # Running jobs by job id (progress, cancel requests: what workers write and ask every
    # second). Only leased rows: a waiting job is not in it, so enqueueing pays nothing
    # (a status or a cancel by job id scans the waiting rows, as find_job does).
    "CREATE INDEX IF NOT EXISTS glasswork_jobs_running ON glasswork_jobs (job_id) WHERE leased = 1",
    # Claims of jobs with a priority; jobs without one (0) are not in it, so they cost
    # nothing more to store, and a claim finds out at once that a queue has none.
    "CREATE INDEX IF NOT EXISTS glasswork_jobs_priority "
    "ON glasswork_jobs (queue, priority DESC, visible_at) WHERE priority <> 0",
    "CREATE INDEX IF NOT EXISTS glasswork_dead_letters_job_id ON glasswork_dead_letters (job_id)",
    "CREATE INDEX IF NOT EXISTS glasswork_job_results_updated "
    "ON glasswork_job_results (updated_at)",
    "CREATE INDEX IF NOT EXISTS glasswork_job_results_expires "
    "ON glasswork_job_results (expires_at)",
)


def _version_5(conn: sqlite3.Connection) -> None:
    """A job's life: status columns on job rows, the results table, their indexes."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(glasswork_jobs)")}
    for name, kind in _JOB_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE glasswork_jobs ADD COLUMN {name} {kind}")
    conn.execute(RESULTS_SCHEMA)
    for sql in _STATUS_INDEXES:
        conn.execute(sql)


#: Version 6: flow limits. A delivery holds a concurrency slot while its row is leased with
#: a ``slot_key`` (so a slot ends with the lease); rate-limited starts of the last window.
_LIMITS_INDEXES = (
    "CREATE INDEX IF NOT EXISTS glasswork_jobs_slots ON glasswork_jobs (slot_key) "
    "WHERE slot_key IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS glasswork_rate_starts ("
    "job_name TEXT NOT NULL, started_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS glasswork_rate_starts_job "
    "ON glasswork_rate_starts (job_name, started_at)",
)


def _version_6(conn: sqlite3.Connection) -> None:
    """Flow limits: the slot column of job rows, recent starts of rate-limited jobs."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(glasswork_jobs)")}
    if "slot_key" not in have:
        conn.execute("ALTER TABLE glasswork_jobs ADD COLUMN slot_key TEXT")
    for sql in _LIMITS_INDEXES:
        conn.execute(sql)


#: Version 7. Fair tenants: the key a job is claimed round-robin by (NULL: none), indexed
#: only for jobs with one (so other jobs cost nothing more to store or claim), by key and
#: due time, and by key and priority for the few jobs with a priority; each fair queue's
#: place in its round (the last key served) and how far its jobs without a key have been
#: put into the group of their own ('').
_VERSION_7 = (
    "CREATE INDEX IF NOT EXISTS glasswork_jobs_fair "
    "ON glasswork_jobs (queue, fairness_key, visible_at) WHERE fairness_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS glasswork_jobs_fair_priority "
    "ON glasswork_jobs (queue, fairness_key, priority DESC, visible_at) "
    "WHERE fairness_key IS NOT NULL AND priority <> 0",
    "CREATE TABLE IF NOT EXISTS glasswork_fair_queues ("
    "queue TEXT PRIMARY KEY, cursor TEXT NOT NULL DEFAULT '', "
    "tagged_to INTEGER NOT NULL DEFAULT 0)",
    # Flow limits taken in the claim: how many deliveries of each job its limits held back,
    # added to by the transaction that held them back.
    "CREATE TABLE IF NOT EXISTS glasswork_throttles ("
    "job_name TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
)


def _version_7(conn: sqlite3.Connection) -> None:
    """Fair tenants: the fairness key of job rows, its indexes, each fair queue's round;
    throttle counts per job."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(glasswork_jobs)")}
    if "fairness_key" not in have:
        conn.execute("ALTER TABLE glasswork_jobs ADD COLUMN fairness_key TEXT")
    for sql in _VERSION_7:
        conn.execute(sql)


#: Version 8: workflows (chains, groups): see :mod:`glasswork.jobs.workflows.advancing`.
WORKFLOWS_SCHEMA = """
CREATE TABLE IF NOT EXISTS glasswork_workflows (
    workflow_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    on_failure TEXT NOT NULL,
    size INTEGER NOT NULL,
    remaining INTEGER NOT NULL,
    callback INTEGER NOT NULL DEFAULT 0,
    failed_step INTEGER,
    failed_job TEXT,
    error TEXT,
    result TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS glasswork_workflows_updated ON glasswork_workflows (updated_at);
CREATE TABLE IF NOT EXISTS glasswork_workflow_steps (
    workflow_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    job_name TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    result TEXT,
    error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (workflow_id, step)
) WITHOUT ROWID
"""


# Step i takes a file from schema version i to i + 1 (a new file runs them all): a script,
# or a function of the connection, inside the migration's transaction.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    _SCHEMA,
    OUTCOMES_SCHEMA,
    _TRACEBACKS,
    _version_4,
    _version_5,
    _version_6,
    _version_7,
    WORKFLOWS_SCHEMA,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION` (inside the caller's transaction);
    returns the version the file now has (a newer one is left alone)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return version
    for step in MIGRATIONS[version:]:
        if callable(step):
            step(conn)
            continue
        for statement in step.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION


def schema_version(path: Path) -> int | None:
    """The file's ``PRAGMA user_version``, read without changing it (None: unreadable, for
    the real open to explain)."""
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()
