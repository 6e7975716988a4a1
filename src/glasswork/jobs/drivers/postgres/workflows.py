"""Workflows in PostgreSQL (:class:`~glasswork.jobs.drivers.contract.Workflows`): the tables
of schema version 8, written through
:class:`~glasswork.jobs.workflows.advancing.Workflows` on the driver's connections. A
workflow is stored with its first jobs in one transaction; a step advances in the
transaction that records its end (:meth:`~.status.StatusRows.finish_many`) or keeps its
dead letter. Two workers ending a group's last two members at once: each ``UPDATE`` of the
counter row waits for the other's commit and reads the count it left, so exactly one of
them sees 0 and enqueues the callback."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from psycopg import sql as pgsql
from psycopg.rows import tuple_row

from ...message import JobMessage
from ...workflows.advancing import Workflows as WorkflowTables
from ...workflows.advancing import WorkflowSQL
from ...workflows.records import WorkflowPlan, WorkflowStatus
from ..contract import Workflows
from ..records import FinalStatus
from .producing import insert_jobs

if TYPE_CHECKING:
    import psycopg

    from .connections import Connections
    from .statements import Statements


class WorkflowRows(Workflows):
    """The :class:`Workflows` methods of the PostgreSQL driver."""

    _connections: Connections
    sql: Statements
    max_message_bytes: int
    _workflow_sql: WorkflowSQL | None = None

    def workflow_tables(self, conn: psycopg.Connection) -> WorkflowTables:
        """The workflow statements on ``conn`` (inside the caller's transaction)."""
        statements = self._workflow_sql
        if statements is None:
            prefix = pgsql.Identifier(self.sql.schema).as_string() + "."
            statements = self._workflow_sql = WorkflowSQL(prefix, "%s")
        cursor = conn.cursor(row_factory=tuple_row)

        def insert(messages: Sequence[JobMessage]) -> None:
            insert_jobs(conn, self.sql, messages)

        return WorkflowTables(
            statements,
            cursor.execute,
            cursor.executemany,
            insert,
            lambda _: self.max_message_bytes,
        )

    def start_workflow(self, plan: WorkflowPlan, batches: Iterable[Sequence[JobMessage]]) -> None:
        """The workflow and its first jobs, in one transaction: all, or none."""

        def store(conn: psycopg.Connection, retrying: bool) -> None:
            tables = self.workflow_tables(conn)
            if retrying and tables.status(plan.workflow_id) is not None:
                return  # the connection broke after the commit: it is stored
            with conn.transaction():
                tables.store(plan, batches)

        self._connections.run("start a workflow", store)

    def workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        return self._connections.run(
            "read a workflow's status",
            lambda conn, _: self.workflow_tables(conn).status(workflow_id),
        )

    def advance_workflows(self, conn: psycopg.Connection, ends: Sequence[FinalStatus]) -> None:
        """Count ``ends`` (workflow steps' ends) inside the caller's transaction."""
        if ends:
            self.workflow_tables(conn).advance(ends)

    def cancel_workflow_step(self, conn: psycopg.Connection, job_id: str, reason: str) -> None:
        """Count job ``job_id``, cancelled while it waited, if it is a workflow's step."""
        self.workflow_tables(conn).cancelled(job_id, reason)
