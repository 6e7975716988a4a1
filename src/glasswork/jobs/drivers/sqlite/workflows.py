"""Workflows in the SQLite queue (:class:`~glasswork.jobs.drivers.contract.Workflows`): the
tables of schema version 8, written through
:class:`~glasswork.jobs.workflows.advancing.Workflows` on the file's connection. A workflow
is stored with its first jobs in one write transaction; its steps advance in the
transaction that records their ends (:meth:`~.status.StatusRows.finish_many`) or keeps
their dead letter (:meth:`dead_letter_advancing`): SQLite runs one writer at a time, so two
workers ending a group's last two members are counted one after the other."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from ...errors import ConfigurationError
from ...message import JobMessage
from ...workflows.advancing import Workflows as WorkflowTables
from ...workflows.advancing import WorkflowSQL
from ...workflows.records import WorkflowPlan, WorkflowStatus
from ..contract import Workflows
from ..records import FinalStatus
from .connections import QueueFile
from .producing import _duplicate, add_jobs

_SQL = WorkflowSQL()


class WorkflowRows(Workflows):
    """The :class:`Workflows` methods of the SQLite driver, on its ``file``."""

    file: QueueFile
    max_message_bytes: int

    def workflow_tables(self, conn: sqlite3.Connection) -> WorkflowTables:
        """The workflow statements on ``conn`` (inside the caller's transaction), enqueueing
        released steps on it."""

        def insert(messages: Sequence[JobMessage]) -> None:
            now = time.time()
            add_jobs(conn, messages, now, now)

        return WorkflowTables(_SQL, conn.execute, conn.executemany, insert, self._workflow_limit)

    def _workflow_limit(self, queue: str) -> int:
        return self.max_message_bytes

    def start_workflow(self, plan: WorkflowPlan, batches: Iterable[Sequence[JobMessage]]) -> None:
        """The workflow and its first jobs, in one write transaction: all, or none."""
        conn = self.file.conn()
        sent: list[JobMessage] = []

        def sending(batches: Iterable[Sequence[JobMessage]]) -> Iterable[Sequence[JobMessage]]:
            for batch in batches:
                sent[:] = batch
                yield batch

        try:
            with self.file.transaction(conn):
                self.workflow_tables(conn).store(plan, sending(batches))
        except sqlite3.IntegrityError as exc:
            if "glasswork_jobs" in str(exc) or "unique_key" in str(exc):
                raise _duplicate(conn, sent) from None
            raise ConfigurationError(
                f"workflow {plan.workflow_id} could not be stored ({exc}); nothing was sent"
            ) from exc

    def workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        with self.file.snapshot() as conn:
            return self.workflow_tables(conn).status(workflow_id)

    def advance_workflows(self, conn: sqlite3.Connection, ends: Sequence[FinalStatus]) -> None:
        """Count ``ends`` (workflow steps' ends) inside the caller's transaction."""
        if ends:
            self.workflow_tables(conn).advance(ends)

    def cancel_workflow_step(self, conn: sqlite3.Connection, job_id: str, reason: str) -> None:
        """Count job ``job_id``, cancelled while it waited, if it is a workflow's step."""
        self.workflow_tables(conn).cancelled(job_id, reason)
