"""Workflows in SQL tables: storing one, advancing it where its steps end, reading its
status. One implementation for every driver that keeps them in SQL (SQLite, PostgreSQL, and
the mock, on an in-memory SQLite database), each passing its own cursor, inside the
transaction that records how the jobs ended.

Two tables (created by each driver's schema, version 8)::

    glasswork_workflows(workflow_id PK, kind, state, on_failure, size, remaining, callback,
                        failed_step, failed_job, error, result, created_at, updated_at)
    glasswork_workflow_steps(workflow_id, step, job_id, job_name, queue, priority, state,
                             result, error, updated_at, PK (workflow_id, step))

``remaining`` is the fan-in counter (steps not ended yet), decremented once per step: a
step's row changes from ``pending`` to ``done``/``dead``/... only once (``WHERE state =
'pending'``), and only the statement that changed it goes on to count it, so a step
delivered twice, or ended by two workers at once, counts once. The step the last one
releases (a chain's next step, a group's callback) changes from ``waiting`` to ``pending``
the same way, once, in the same transaction as the job it enqueues: a crash loses both or
neither, and a repeat of the transaction (a lost connection) finds it released already.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from ..drivers.lifecycle import dump_result, load_result
from ..drivers.records import FinalStatus
from ..errors import MalformedMessageError, PayloadTooLargeError
from ..message import JobMessage, WorkflowRef
from .records import WorkflowPlan, WorkflowStatus, failure_entry, step_job_id

#: Seconds an ended workflow (done or failed) is kept, with its steps, before a later
#: start deletes it.
KEEP_ENDED = 7 * 86400.0
#: Ended workflows one start deletes at most (each start deletes a few: they never pile up).
PURGE_PER_START = 2

#: Steps of one workflow marked per statement (4 parameters each).
ADVANCE_CHUNK = 500

#: The names the statements use, and what they become on each driver.
WORKFLOWS = "glasswork_workflows"
STEPS = "glasswork_workflow_steps"


class Cursor(Protocol):
    """What a statement gives back, on sqlite3 and psycopg alike."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


Execute = Callable[[str, Sequence[Any]], Cursor]
ExecuteMany = Callable[[str, Sequence[Sequence[Any]]], Any]
Insert = Callable[[Sequence[JobMessage]], Any]


class WorkflowSQL:
    """The statements, for one driver: ``prefix`` qualifies the table names (a PostgreSQL
    schema, ``"s".``), ``placeholder`` is its parameter mark (``?`` or ``%s``)."""

    def __init__(self, prefix: str = "", placeholder: str = "?") -> None:
        self.prefix = prefix
        self.placeholder = placeholder
        self._cache: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        done = self._cache.get(text)
        if done is None:
            done = text.format(wf=f"{self.prefix}{WORKFLOWS}", steps=f"{self.prefix}{STEPS}")
            if self.placeholder != "?":
                done = done.replace("?", self.placeholder)
            self._cache[text] = done
        return done


class Workflows:
    """Storing and advancing workflows through ``execute`` (the caller's transaction):
    see the module docstring."""

    def __init__(
        self,
        sql: WorkflowSQL,
        execute: Execute,
        execute_many: ExecuteMany,
        insert: Insert,
        limit: Callable[[str], int],
    ) -> None:
        self.sql = sql
        self.execute = execute
        self.execute_many = execute_many
        self.insert = insert
        self.limit = limit

    # -- starting --------------------------------------------------------------------------

    def store(self, plan: WorkflowPlan, batches: Iterable[Sequence[JobMessage]]) -> None:
        """Store ``plan`` and its waiting steps, then each batch's step rows and jobs; and
        delete a few workflows ended :data:`KEEP_ENDED` seconds ago."""
        now = time.time()
        run = self.execute
        self.purge(now - KEEP_ENDED, PURGE_PER_START)
        run(
            self.sql(
                "INSERT INTO {wf} (workflow_id, kind, state, on_failure, size, remaining, "
                "callback, created_at, updated_at) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)"
            ),
            (
                plan.workflow_id,
                plan.kind,
                plan.on_member_failure,
                plan.size,
                plan.size,
                1 if plan.callback is not None else 0,
                now,
                now,
            ),
        )
        add_step = self.sql(
            "INSERT INTO {steps} (workflow_id, step, job_id, job_name, queue, priority, state, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        run_many = self.execute_many
        run_many(
            add_step,
            [
                (
                    plan.workflow_id,
                    later.step,
                    later.job_id(plan.workflow_id),
                    later.job_name,
                    later.queue,
                    later.priority,
                    "waiting",
                    now,
                )
                for later in plan.later
            ],
        )
        for batch in batches:
            run_many(
                add_step,
                [
                    (
                        plan.workflow_id,
                        m.workflow.step if m.workflow is not None else -1,
                        m.job_id,
                        m.job_name,
                        m.queue,
                        m.priority or 0,
                        "pending",
                        now,
                    )
                    for m in batch
                ],
            )
            self.insert(batch)

    def purge(self, ended_before: float, most: int) -> int:
        """Delete up to ``most`` workflows that ended before ``ended_before``, with their
        steps; how many."""
        rows = self.execute(
            self.sql(
                "SELECT workflow_id FROM {wf} WHERE state <> 'running' AND updated_at < ? "
                "ORDER BY updated_at LIMIT ?"
            ),
            (ended_before, most),
        ).fetchall()
        for (workflow_id,) in rows:
            self.execute(self.sql("DELETE FROM {steps} WHERE workflow_id = ?"), (workflow_id,))
            self.execute(self.sql("DELETE FROM {wf} WHERE workflow_id = ?"), (workflow_id,))
        return len(rows)

    # -- advancing -------------------------------------------------------------------------

    def advance(self, ends: Iterable[FinalStatus]) -> None:
        """Count each of ``ends`` (those with a :attr:`FinalStatus.workflow`) against its
        workflow: a few statements per workflow, whatever the number of its steps in
        ``ends``; workflows in id order, so that two transactions ending steps of the same
        workflows lock their rows in the same order."""
        by_workflow: dict[str, dict[int, FinalStatus]] = {}
        for final in ends:
            if final.workflow is not None:
                workflow_id, step = final.workflow
                by_workflow.setdefault(workflow_id, {}).setdefault(step, final)
        for workflow_id in sorted(by_workflow):
            steps = sorted(by_workflow[workflow_id].items())
            for start in range(0, len(steps), ADVANCE_CHUNK):
                self._advance(workflow_id, dict(steps[start : start + ADVANCE_CHUNK]))

    def _advance(self, workflow_id: str, ends: dict[int, FinalStatus]) -> None:
        run, sql = self.execute, self.sql
        row = run(
            sql("SELECT kind, size, on_failure FROM {wf} WHERE workflow_id = ?"), (workflow_id,)
        ).fetchone()
        if row is None:
            return  # not stored here (or deleted): nothing to advance
        kind, size, on_failure = row
        now = time.time()
        steps = sorted(ends)
        values = ", ".join(["(CAST(? AS INTEGER), ?, ?, ?)"] * len(steps))
        params: list[Any] = [now]
        for step in steps:
            final = ends[step]
            ok = final.state == "done"
            params += [step, final.state, dump_result(final.result) if ok else None, final.error]
        params.append(workflow_id)
        # Each step's row changes once, from pending: only the ends that changed one count.
        changed = dict(
            run(
                sql(
                    # VALUES' columns are column1.. on both SQLite and PostgreSQL.
                    "UPDATE {steps} AS s SET state = v.column2, result = v.column3, "
                    f"error = v.column4, updated_at = ? FROM (VALUES {values}) AS v "
                    "WHERE s.workflow_id = ? AND s.step = v.column1 AND s.state = 'pending' "
                    "RETURNING step, job_name"
                ),
                params,
            ).fetchall()
        )
        if not changed:
            return  # counted already: second deliveries, or another worker's ends
        counted = 0
        failed: tuple[int, str, FinalStatus] | None = None
        for step in sorted(changed):
            final = ends[step]
            member = kind == "group" and step < size
            if final.state != "done" and (not member or on_failure == "fail"):
                failed = failed or (step, changed[step], final)
            elif member or kind == "chain":
                counted += 1
        if counted:
            remaining, state = run(
                sql(
                    "UPDATE {wf} SET remaining = remaining - ?, updated_at = ? "
                    "WHERE workflow_id = ? RETURNING remaining, state"
                ),
                (counted, now, workflow_id),
            ).fetchall()[0]
        else:
            remaining, state = run(
                sql("SELECT remaining, state FROM {wf} WHERE workflow_id = ?"), (workflow_id,)
            ).fetchone()
        if failed is not None:
            step, job_name, final = failed
            self._fail(workflow_id, step, job_name, f"{final.state}: {final.error}", now)
            return
        if state != "running":
            return  # failed already: nothing more is released
        last = max(changed)
        if kind == "chain":
            result = ends[last].result
            if last + 1 < size:
                self._release(workflow_id, last + 1, result, now)
            else:
                self._done(workflow_id, dump_result(result), now)
        elif last == size:  # the group's callback
            self._done(workflow_id, dump_result(ends[last].result), now)
        elif remaining == 0:
            results = self._results(workflow_id, size)
            if not self._release(workflow_id, size, results, now):
                self._done(workflow_id, json.dumps(results, separators=(",", ":")), now)

    def cancelled(self, job_id: str, reason: str) -> None:
        """Job ``job_id`` was cancelled while it waited (``JobService.cancel``), never to
        run: if it is a workflow's pending step, count it as ended ``cancelled``. (A step's
        job id is its workflow's id and its index: one primary-key look-up.)"""
        workflow_id, _, index = job_id.rpartition("-")
        if not workflow_id or not index.isdigit():
            return
        row = self.execute(
            self.sql(
                "SELECT 1 FROM {steps} WHERE workflow_id = ? AND step = ? AND job_id = ? "
                "AND state = 'pending'"
            ),
            (workflow_id, int(index), job_id),
        ).fetchone()
        if row is not None:
            end = FinalStatus("cancelled", error=reason, workflow=(workflow_id, int(index)))
            self._advance(workflow_id, {int(index): end})

    def _results(self, workflow_id: str, size: int) -> list[Any]:
        """The members' results in order; a failed member's place holds its failure."""
        rows = self.execute(
            self.sql(
                "SELECT step, job_id, job_name, state, result, error FROM {steps} "
                "WHERE workflow_id = ? AND step < ? ORDER BY step"
            ),
            (workflow_id, size),
        ).fetchall()
        return [
            load_result(result)
            if state == "done"
            else failure_entry(step, job_id, job_name, state, error)
            for step, job_id, job_name, state, result, error in rows
        ]

    def _release(self, workflow_id: str, step: int, payload: Any, now: float) -> bool:
        """Enqueue waiting step ``step`` with ``payload``, once; False: there is none."""
        rows = self.execute(
            self.sql(
                "UPDATE {steps} SET state = 'pending', updated_at = ? "
                "WHERE workflow_id = ? AND step = ? AND state = 'waiting' "
                "RETURNING job_id, job_name, queue, priority"
            ),
            (now, workflow_id, step),
        ).fetchall()
        if not rows:
            return False
        job_id, job_name, queue, priority = rows[0]
        message = JobMessage.create(
            job_name,
            payload,
            queue=queue,
            job_id=job_id,
            priority=priority,
            workflow=WorkflowRef(id=workflow_id, step=step),
        )
        try:
            message.encode(self.limit(queue))
        except PayloadTooLargeError as exc:
            self.execute(
                self.sql(
                    "UPDATE {steps} SET state = 'failed', error = ? "
                    "WHERE workflow_id = ? AND step = ?"
                ),
                (str(exc), workflow_id, step),
            )
            self._fail(workflow_id, step, job_name, f"its payload is too large: {exc}", now)
            return True
        self.insert([message])
        return True

    def _done(self, workflow_id: str, result: str | None, now: float) -> None:
        self.execute(
            self.sql(
                "UPDATE {wf} SET state = 'done', result = ?, updated_at = ? "
                "WHERE workflow_id = ? AND state = 'running'"
            ),
            (result, now, workflow_id),
        )

    def _fail(self, workflow_id: str, step: int, job_name: str, error: str, now: float) -> None:
        self.execute(
            self.sql(
                "UPDATE {wf} SET state = 'failed', failed_step = ?, failed_job = ?, error = ?, "
                "updated_at = ? WHERE workflow_id = ? AND state = 'running'"
            ),
            (step, job_name, error, now, workflow_id),
        )

    # -- reading ---------------------------------------------------------------------------

    def status(self, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's status (None: no such workflow)."""
        row = self.execute(
            self.sql(
                "SELECT kind, state, on_failure, size, remaining, callback, failed_step, "
                "failed_job, error, result, created_at, updated_at FROM {wf} "
                "WHERE workflow_id = ?"
            ),
            (workflow_id,),
        ).fetchone()
        if row is None:
            return None
        (kind, state, on_failure, size, remaining, callback, failed_step, failed_job, error,
         result, created, updated) = row  # fmt: skip
        return WorkflowStatus(
            workflow_id=workflow_id,
            kind=kind,
            state=state,
            size=size,
            finished=size - remaining,
            on_member_failure=on_failure,
            callback=bool(callback),
            failed_step=failed_step,
            failed_job=failed_job,
            error=error,
            result=load_result(result),
            created_at=datetime.fromtimestamp(created, UTC),
            updated_at=datetime.fromtimestamp(updated, UTC),
        )


def dead_end(body: str, reason: str) -> FinalStatus | None:
    """The end of a workflow step dead-lettered with ``body`` (None: not a step), for a
    driver to count in the transaction that keeps the dead letter: should the worker stop
    before it records the end, the workflow still learns of it."""
    if '"workflow"' not in body:
        return None
    try:
        ref = JobMessage.from_json(body).workflow
    except MalformedMessageError:
        return None
    if ref is None:
        return None
    return FinalStatus("dead", error=reason, keep_for=0, workflow=(ref.id, ref.step))


def ends_of(finished: Iterable[tuple[Any, FinalStatus]]) -> list[FinalStatus]:
    """The ends of ``finished`` that are workflow steps (none, for most batches)."""
    return [final for _, final in finished if final.workflow is not None]


__all__ = [
    "STEPS",
    "WORKFLOWS",
    "WorkflowSQL",
    "Workflows",
    "dead_end",
    "ends_of",
    "step_job_id",
]
