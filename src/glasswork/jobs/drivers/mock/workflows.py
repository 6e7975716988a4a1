"""Workflows in the mock driver (:class:`~glasswork.jobs.drivers.contract.Workflows`): the
same tables and statements as the SQL drivers
(:class:`~glasswork.jobs.workflows.advancing.Workflows`), on an in-memory SQLite database
the driver's lock guards, so a test on the mock sees what SQLite and PostgreSQL do."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...message import JobMessage
from ...workflows.advancing import Workflows as WorkflowTables
from ...workflows.advancing import WorkflowSQL, dead_end
from ...workflows.records import WorkflowPlan, WorkflowStatus
from ..contract import Workflows
from ..records import FinalStatus
from ..sqlite.schema import WORKFLOWS_SCHEMA

_SQL = WorkflowSQL()


class MemoryWorkflows(Workflows):
    """The mock driver's :class:`Workflows` methods (mixed into it)."""

    _lock: threading.RLock
    max_message_bytes: int
    _workflow_db: sqlite3.Connection | None = None

    #: The driver's own enqueue (the steps a finished one releases go through it).
    enqueue_many: Callable[..., list[Any]]

    def _workflows(self, sent: list[JobMessage] | None = None) -> WorkflowTables:
        db = self._workflow_db
        if db is None:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.executescript(WORKFLOWS_SCHEMA)
            self._workflow_db = db

        def insert(messages: Sequence[JobMessage]) -> None:
            if sent is not None:
                sent.extend(messages)
            else:
                self.enqueue_many(messages)

        return WorkflowTables(
            _SQL, db.execute, db.executemany, insert, lambda _: self.max_message_bytes
        )

    def start_workflow(self, plan: WorkflowPlan, batches: Iterable[Sequence[JobMessage]]) -> None:
        """Store the workflow and enqueue its first jobs: all, or (a duplicate unique key)
        none."""
        with self._lock:
            sent: list[JobMessage] = []
            tables = self._workflows(sent)
            db = self._workflow_db
            assert db is not None
            db.execute("BEGIN")
            try:
                tables.store(plan, batches)
                self.enqueue_many(sent)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        with self._lock:
            return self._workflows().status(workflow_id)

    def advance_workflows(self, ends: Sequence[FinalStatus]) -> None:
        """Count workflow steps' ends (the caller holds the lock)."""
        if ends:
            self._workflows().advance(ends)

    def advance_dead(self, body: str, reason: str) -> None:
        """Count a dead-lettered workflow step with its dead letter."""
        step = dead_end(body, reason)
        if step is not None:
            with self._lock:
                self.advance_workflows([step])

    def cancel_workflow_step(self, job_id: str, reason: str) -> None:
        """Count job ``job_id``, cancelled before it ran, if it is a workflow's step."""
        if self._workflow_db is not None:
            with self._lock:
                self._workflows().cancelled(job_id, reason)

    def forget_workflows(self) -> None:
        with self._lock:
            if self._workflow_db is not None:
                self._workflow_db.close()
            self._workflow_db = None
