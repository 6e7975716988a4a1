"""PostgresQueueDriver: a durable queue in PostgreSQL, shared by workers on many machines.

Tables (in the schema you choose, ``public`` by default; versioned in
``glasswork_schema_versions``; see :mod:`.schema`)::

    glasswork_jobs(id, queue, job_name, job_id, unique_key, body, attempts, leased, lost,
                   visible_at, enqueued_at, priority, cancel_requested, updated_at,
                   last_error, last_traceback, progress, progress_note)  # a row per pending job
    glasswork_dead_letters(id, queue, job_name, job_id, body, reason, failed_at,
                           traceback)
    glasswork_periodic(job_name, last_fire, claimed_by)  # which periodic fires happened
    glasswork_outcomes(minute, queue, job_name, outcome, count)  # for the dashboard
    glasswork_workers(id, host, pid, queues, ..., last_seen)      # worker heartbeats
    glasswork_job_results(job_id, job_name, queue, state, attempts, result, error,
                          traceback, ..., updated_at, expires_at)  # ended jobs (status.py)

The semantics are the SQLite driver's: ``visible_at`` is when a row may next be claimed (its
due time, or the end of its lease); a claim (``FOR UPDATE SKIP LOCKED``) bumps ``attempts``
and leases the row, so any number of workers share a queue without double delivery; the
receipt ``(id, attempts)`` keeps a worker whose lease ran out from settling the next
delivery. New jobs wake waiting workers with ``LISTEN/NOTIFY``. ``bind(connection)`` enqueues
inside the caller's transaction.

psycopg 3 and psycopg_pool are needed: ``pip install 'glasswork[postgres]'``.
"""

from __future__ import annotations

from .bound import BoundPostgresDriver
from .driver import PostgresQueueDriver
from .schema import SCHEMA_VERSION, migrate, migration_script

__all__ = [
    "SCHEMA_VERSION",
    "BoundPostgresDriver",
    "PostgresQueueDriver",
    "migrate",
    "migration_script",
]
