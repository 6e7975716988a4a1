"""A job's life in PostgreSQL (:class:`~glasswork.jobs.drivers.contract.StatusStore`).

A live job's status is read off its row (``scheduled``, ``pending``, ``running``,
``retrying``), with the last error, progress and a cancel request the row gains in schema
version 5. An ended job's status goes into ``glasswork_job_results`` in the statement that
deletes its row (``WITH gone AS (DELETE ... RETURNING ...) INSERT ...``), kept for its
``keep_for`` seconds; with ``keep_for`` 0 finishing is the plain acknowledgement. A
dead-lettered job whose end was not kept is found in the dead letters. Times are the
server's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql

from ...workflows.advancing import ends_of
from ..contract import StatusStore
from ..lifecycle import (
    CANCELLED,
    LIVE_STATES,
    check_state,
    dump_result,
    load_result,
    newest_first,
    parse_time,
    wire_fields,
)
from ..records import DEFAULT_RESULT_TTL, FinalStatus, JobStatus, ReceivedMessage
from .text import storable, unstorable

if TYPE_CHECKING:
    import psycopg

    from .connections import Connections
    from .statements import Statements

#: Expired ends one purge deletes at most (at least: it grows with what was written).
PURGE_BATCH = 1000
#: Seconds between two purges by one driver.
PURGE_EVERY = 10.0

_RESULT_COLUMNS = (
    "job_id, job_name, queue, state, attempts, result, error, traceback, progress, "
    "progress_note, priority, enqueued_at, updated_at, expires_at"
)
_UPSERT = "ON CONFLICT (job_id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in _RESULT_COLUMNS.split(", ")[1:]
)
_LIVE_STATE = (
    "CASE WHEN leased THEN 'running' WHEN attempts > 0 THEN 'retrying' "
    "WHEN visible_at > now() THEN 'scheduled' ELSE 'pending' END"
)
# Every status as one shape: job_id, job_name, queue, state, attempts, result, error,
# traceback, progress, progress_note, priority, enqueued_at, updated_at.
_LIVE = (
    f"SELECT job_id, job_name, queue, {_LIVE_STATE} AS state, attempts, NULL::text AS result, "
    "last_error, last_traceback, progress, progress_note, priority, enqueued_at, "
    "COALESCE(updated_at, enqueued_at) AS at FROM {jobs}"
)
_ENDED = (
    "SELECT job_id, job_name, queue, state, attempts, result, error, traceback, progress, "
    "progress_note, priority, enqueued_at, updated_at AS at FROM {results}"
)
_DEAD = (
    "SELECT job_id, job_name, COALESCE(queue, 'default') AS queue, 'dead' AS state, "
    "NULL::integer AS attempts, NULL::text AS result, reason, traceback, "
    "NULL::float8 AS progress, NULL::text AS progress_note, 0 AS priority, "
    "NULL::timestamptz AS enqueued_at, failed_at AS at FROM {dead}"
)
# History filters: each NULL parameter leaves its filter out.
_FILTERS = (
    "job_id IS NOT NULL AND (%(job_name)s::text IS NULL OR job_name = %(job_name)s) "
    "AND (%(at)s::timestamptz IS NULL OR {at} < %(at)s OR ({at} = %(at)s AND job_id < %(before)s))"
)


class StatusStatements:
    """The SQL of a job's life, for one schema."""

    def __init__(self, schema: str) -> None:
        jobs = sql.Identifier(schema, "glasswork_jobs").as_string()
        dead = sql.Identifier(schema, "glasswork_dead_letters").as_string()
        results = sql.Identifier(schema, "glasswork_job_results").as_string()
        live = _LIVE.format(jobs=jobs)
        ended = _ENDED.format(results=results)
        dead_rows = _DEAD.format(dead=dead)
        insert = f"INSERT INTO {results} ({_RESULT_COLUMNS})"
        # A removed row's end (``attempts - claimed``: a claim that only ends a job it never
        # runs takes back its count).
        from_gone = (
            f"{insert} SELECT job_id, job_name, queue, %(state)s, attempts - %(claimed)s, NULL, "
            "%(reason)s, NULL, progress, progress_note, priority, enqueued_at, now(), "
            "now() + %(keep)s * interval '1 second' FROM gone WHERE job_id IS NOT NULL "
            f"{_UPSERT}"
        )
        # One statement, one snapshot: the row, then the kept end, then the dead letter.
        self.status = (
            f"({live} WHERE job_id = %(job_id)s ORDER BY id DESC LIMIT 1) UNION ALL "
            f"({ended} WHERE job_id = %(job_id)s AND expires_at > now()) UNION ALL "
            f"({dead_rows} WHERE job_id = %(job_id)s ORDER BY id DESC LIMIT 1) LIMIT 1"
        )
        order = "ORDER BY at DESC, job_id DESC LIMIT %(limit)s"
        self.history_live = (
            f"SELECT * FROM ({live}) AS s WHERE {_FILTERS.format(at='at')} "
            "AND (%(queue)s::text IS NULL OR queue = %(queue)s) "
            f"AND (%(state)s::text IS NULL OR state = %(state)s) {order}"
        )
        self.history_ended = (
            f"{ended} WHERE {_FILTERS.format(at='updated_at')} AND expires_at > now() "
            "AND (%(queue)s::text IS NULL OR queue = %(queue)s) "
            "AND (%(state)s::text IS NULL OR state = %(state)s) "
            "ORDER BY updated_at DESC, job_id DESC LIMIT %(limit)s"
        )
        self.history_dead = (
            f"{dead_rows} WHERE {_FILTERS.format(at='failed_at')} "
            "AND (%(queue)s::text IS NULL OR COALESCE(queue, 'default') = %(queue)s) "
            "ORDER BY failed_at DESC, job_id DESC LIMIT %(limit)s"
        )
        self.cancel_requested = (
            f"SELECT job_id FROM {jobs} WHERE job_id = ANY(%(ids)s) AND leased AND cancel_requested"
        )
        # The job's rows are locked first, so a claim (SKIP LOCKED) passes them, or this
        # waits for the claim and then sees them leased: never both.
        self.cancel = (
            f"WITH target AS (SELECT id, leased FROM {jobs} WHERE job_id = %(job_id)s "
            "FOR UPDATE), "
            f"marked AS (UPDATE {jobs} AS t SET cancel_requested = true, updated_at = now() "
            "FROM target WHERE t.id = target.id AND target.leased RETURNING t.id), "
            f"gone AS (DELETE FROM {jobs} AS t USING target WHERE t.id = target.id "
            "AND NOT target.leased RETURNING t.*), "
            f"kept AS ({from_gone} RETURNING 1) "
            "SELECT (SELECT count(*) FROM target), (SELECT count(*) FROM kept)"
        )
        self.cancel_claimed = (
            f"WITH gone AS (DELETE FROM {jobs} WHERE id = %(id)s AND attempts = %(attempts)s "
            f"RETURNING *) {from_gone}"
        ).replace("%(claimed)s", "1")
        self.cancel = self.cancel.replace("%(claimed)s", "0").replace("%(state)s", "'cancelled'")
        self.cancel_claimed = self.cancel_claimed.replace("%(state)s", "'cancelled'")
        self.record_retry = (
            f"UPDATE {jobs} SET last_error = %(error)s, last_traceback = %(traceback)s, "
            "updated_at = now() WHERE id = %(id)s AND attempts = %(attempts)s"
        )
        self.record_progress = (
            f"UPDATE {jobs} SET progress = %(progress)s, progress_note = %(note)s, "
            "updated_at = now() WHERE job_id = %(job_id)s AND leased"
        )
        # Acknowledge and keep the ends, in one statement; a job id twice in one batch
        # (the same job enqueued twice) keeps its last.
        self.finish = (
            "WITH r AS (SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[], "
            "%(states)s::text[], %(results)s::text[], %(errors)s::text[], "
            "%(tracebacks)s::text[], %(progress)s::float8[], %(notes)s::text[], "
            "%(keep)s::float8[]) AS r(id, attempts, state, result, error, traceback, "
            "progress, note, keep)), "
            f"gone AS (DELETE FROM {jobs} AS t USING r WHERE t.id = r.id "
            "AND t.attempts = r.attempts RETURNING t.*) "
            f"{insert} SELECT DISTINCT ON (g.job_id) g.job_id, g.job_name, g.queue, r.state, "
            "g.attempts, r.result, r.error, r.traceback, COALESCE(r.progress, g.progress), "
            "COALESCE(r.note, g.progress_note), g.priority, g.enqueued_at, now(), "
            "now() + r.keep * interval '1 second' FROM gone AS g JOIN r ON r.id = g.id "
            f"WHERE r.keep > 0 AND g.job_id IS NOT NULL ORDER BY g.job_id, g.id DESC {_UPSERT}"
        )
        # A dead job's end when its row went with the worker's acknowledgement: from its
        # body; one the statement above just wrote from the row (now() is the
        # transaction's) is left alone.
        self.finish_dead = (
            f"{insert} VALUES (%(job_id)s, %(job_name)s, %(queue)s, 'dead', %(attempts)s, "
            "%(result)s, %(error)s, %(traceback)s, %(progress)s, %(note)s, %(priority)s, "
            "%(enqueued_at)s, now(), now() + %(keep)s * interval '1 second') "
            f"{_UPSERT} WHERE {results}.updated_at < now()"
        )
        self.purge = (
            f"DELETE FROM {results} WHERE job_id IN (SELECT job_id FROM {results} "
            "WHERE expires_at <= now() LIMIT %(most)s FOR UPDATE SKIP LOCKED)"
        )


class StatusRows(StatusStore):
    """The :class:`StatusStore` methods of the PostgreSQL driver."""

    _connections: Connections
    sql: Statements
    status_sql: StatusStatements
    #: Counts workflow steps' ends in a transaction (:class:`~.workflows.WorkflowRows`).
    advance_workflows: Callable[[psycopg.Connection, Sequence[FinalStatus]], None]
    #: Counts a workflow step cancelled while it waited (:class:`~.workflows.WorkflowRows`).
    cancel_workflow_step: Callable[[psycopg.Connection, str, str], None]
    _purge_lock = threading.Lock()
    _next_purge = 0.0
    _written = 0

    def job_status(self, job_id: str) -> JobStatus | None:
        """The job's row while it is queued, then its kept end, then its dead letter (one
        statement: one snapshot)."""
        if unstorable(job_id):
            return None
        row = self._connections.run(
            "read a job's status",
            lambda conn, _: conn.execute(self.status_sql.status, {"job_id": job_id}).fetchone(),
        )
        return None if row is None else _status(row)

    def job_history(
        self,
        *,
        state: str | None = None,
        job_name: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[JobStatus]:
        """Jobs newest first (by ``updated_at``), filtered; ``before`` is the ``job_id`` of
        the last one of the previous page (an unknown one: an empty page). Queued jobs are
        scanned; kept ends and dead letters are read through their time indexes."""
        check_state(state)
        if limit <= 0 or unstorable(job_name, queue, before):
            return []
        at: datetime | None = None
        if before is not None:
            last = self.job_status(before)
            if last is None or last.updated_at is None:
                return []
            at = last.updated_at
        params = {
            "state": state,
            "job_name": job_name,
            "queue": queue,
            "limit": limit,
            "at": at,
            "before": before,
        }
        statements = []
        if state is None or state in LIVE_STATES:
            statements.append(self.status_sql.history_live)
        if state is None or state not in LIVE_STATES:
            statements.append(self.status_sql.history_ended)
        if state in (None, "dead"):
            statements.append(self.status_sql.history_dead)

        def read(conn: psycopg.Connection, _: bool) -> list[list[JobStatus]]:
            with conn.transaction():  # one snapshot for every table
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return [[_status(r) for r in conn.execute(s, params)] for s in statements]

        return newest_first(self._connections.run("read job history", read), limit)

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs have been asked to stop."""
        if not job_ids:
            return set()
        rows = self._connections.run(
            "read cancel requests",
            lambda conn, _: conn.execute(
                self.status_sql.cancel_requested, {"ids": list(job_ids)}
            ).fetchall(),
        )
        return {job_id for (job_id,) in rows}

    def cancel(self, job_id: str, reason: str = CANCELLED) -> bool:
        """A waiting job ends as cancelled now, its row deleted (it never runs, also after a
        restart), its status kept a day; a running one is marked, its worker asks it to stop,
        and a claim ends it as cancelled should that worker die. One statement, which a
        claim comes wholly before or after. False: no such job is queued."""
        if unstorable(job_id):
            return False
        params = {"job_id": job_id, "reason": storable(reason), "keep": DEFAULT_RESULT_TTL}

        def cancel(conn: psycopg.Connection, _: bool) -> Any:
            with conn.transaction():
                row = conn.execute(self.status_sql.cancel, params).fetchone()
                if row and row[1]:  # it waited, and ended now: a workflow's step counts it
                    self.cancel_workflow_step(conn, job_id, reason)
            return row

        row = self._connections.run("cancel a job", cancel)
        return bool(row and row[0])

    def record_start(self, received: ReceivedMessage) -> bool:
        """True: claims never hand out a cancelled or ended job (no round trip)."""
        return True

    def record_retry(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        """Keep the failure on the job's row (state ``retrying`` once it is released)."""
        row_id, attempts = received.receipt
        params = {
            "error": storable(error),
            "traceback": storable(traceback),
            "id": row_id,
            "attempts": attempts,
        }
        self._connections.run(
            "record a failure",
            lambda conn, _: conn.execute(self.status_sql.record_retry, params),
        )

    def record_progress(self, job_id: str, fraction: float, note: str | None) -> None:
        """Keep the running job's progress on its row."""
        params = {"progress": fraction, "note": storable(note), "job_id": job_id}
        self._connections.run(
            "record progress",
            lambda conn, _: conn.execute(self.status_sql.record_progress, params),
        )

    def finish(self, received: ReceivedMessage, final: FinalStatus) -> None:
        self.finish_many([(received, final)])

    def finish_many(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> None:
        """Delete these deliveries' rows and keep how their jobs ended, in one statement
        (a dead job whose row is gone already: one more). With nothing to keep (every
        ``keep_for`` 0) it is exactly ``ack_many``."""
        if not finished:
            return
        steps = ends_of(finished)  # workflow steps' ends (none, for most batches)
        if steps:
            self._finish_steps(finished, steps)
            return
        if not any(final.keep_for > 0 for _, final in finished):
            # A dead one's row went with the worker's acknowledgement after its dead letter;
            # deleting by receipt again is harmless and spares the job a rerun should the
            # worker have left that to this call.
            acks = {
                "ids": [r.receipt[0] for r, _ in finished],
                "attempts": [r.receipt[1] for r, _ in finished],
            }
            self._connections.run(
                "acknowledge jobs", lambda conn, _: conn.execute(self.sql.ack, acks)
            )
            return
        params = _finish_params(finished)
        dead = [
            params
            for r, f in finished
            if f.state == "dead" and f.keep_for > 0
            for params in [_dead_params(r, f)]
            if params["job_id"] is not None  # a malformed body: its dead letter is all
        ]
        purge = self._purge_due(len(finished))

        def finish(conn: psycopg.Connection, _: bool) -> None:
            # Safe to repeat after a lost connection: rows already deleted match nothing,
            # and a dead job's end is written once.
            if dead:
                with conn.transaction():
                    conn.execute(self.status_sql.finish, params)
                    for one in dead:
                        conn.execute(self.status_sql.finish_dead, one)
            else:
                conn.execute(self.status_sql.finish, params)
            if purge:
                conn.execute(self.status_sql.purge, {"most": purge})

        self._connections.run("finish jobs", finish)

    def _finish_steps(
        self,
        finished: Sequence[tuple[ReceivedMessage, FinalStatus]],
        steps: Sequence[FinalStatus],
    ) -> None:
        """:meth:`finish_many` of a batch with workflow steps: the ends, the rows' removal
        and the workflows' advance in one transaction (repeated whole after a lost
        connection: a step already counted is not counted again)."""
        params = _finish_params(finished)
        acks = {
            "ids": [r.receipt[0] for r, _ in finished],
            "attempts": [r.receipt[1] for r, _ in finished],
        }
        kept = any(final.keep_for > 0 for _, final in finished)
        dead = [
            params
            for r, f in finished
            if f.state == "dead" and f.keep_for > 0
            for params in [_dead_params(r, f)]
            if params["job_id"] is not None
        ]

        def finish(conn: psycopg.Connection, _: bool) -> None:
            with conn.transaction():
                if kept:
                    conn.execute(self.status_sql.finish, params)
                    for one in dead:
                        conn.execute(self.status_sql.finish_dead, one)
                else:
                    conn.execute(self.sql.ack, acks)
                self.advance_workflows(conn, steps)

        self._connections.run("finish jobs", finish)

    def _purge_due(self, written: int) -> int:
        """How many expired ends to delete now (0: not yet; every :data:`PURGE_EVERY`
        seconds, at least as many as were written since, so they never pile up)."""
        now = time.monotonic()
        with self._purge_lock:
            self._written += written
            if now < self._next_purge:
                return 0
            most = max(PURGE_BATCH, 2 * self._written)
            self._next_purge = now + PURGE_EVERY
            self._written = 0
        return most


def _finish_params(finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> dict[str, Any]:
    return {
        "ids": [r.receipt[0] for r, _ in finished],
        "attempts": [r.receipt[1] for r, _ in finished],
        "states": [f.state for _, f in finished],
        "results": [storable(dump_result(f.result)) for _, f in finished],
        "errors": [storable(f.error) for _, f in finished],
        "tracebacks": [storable(f.traceback) for _, f in finished],
        "progress": [f.progress for _, f in finished],
        "notes": [storable(f.progress_note) for _, f in finished],
        "keep": [max(0.0, f.keep_for) for _, f in finished],
    }


def _dead_params(received: ReceivedMessage, final: FinalStatus) -> dict[str, Any]:
    job_id, job_name, enqueued, priority = wire_fields(received.body)
    return {
        "job_id": storable(job_id),
        "job_name": storable(job_name),
        "queue": received.queue,
        "attempts": received.attempt,
        "result": storable(dump_result(final.result)),
        "error": storable(final.error),
        "traceback": storable(final.traceback),
        "progress": final.progress,
        "note": storable(final.progress_note),
        "priority": priority,
        "enqueued_at": parse_time(enqueued),
        "keep": final.keep_for,
    }


def _status(row: Sequence[Any]) -> JobStatus:
    (job_id, name, queue, state, attempts, result, error, trace, progress, note, priority,
     enqueued, updated) = row  # fmt: skip
    return JobStatus(
        job_id=job_id,
        job_name=name,
        queue=queue,
        state=state,
        attempts=attempts or 0,
        progress=progress,
        progress_note=note,
        result=load_result(result),
        error=error,
        traceback=trace,
        enqueued_at=enqueued,
        updated_at=updated,
        priority=priority,
    )
