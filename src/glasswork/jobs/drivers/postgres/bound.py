"""Transactional enqueue: the driver writing through the caller's own psycopg connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from ...errors import ConfigurationError
from ...message import JobMessage
from ..contract import QueueDriver
from ..records import EnqueueResult
from .producing import Producer, debounce_job, insert_jobs
from .statements import Statements


class BoundPostgresDriver(Producer):
    """A :class:`PostgresQueueDriver` that enqueues with ``connection``, inside whatever
    transaction it has open, and never commits: the jobs exist if and only if the caller's
    transaction commits, and waiting workers are notified at that commit.

    Made by ``driver.bind(conn)``, which ``JobService.enqueue(..., connection=conn)`` calls.
    On an autocommit connection each enqueue commits at once (a batch in one transaction).
    A duplicate unique key leaves the caller's transaction usable, with nothing of the batch
    kept.
    """

    name = "postgresql"

    def __init__(self, driver: QueueDriver, sql: Statements, connection: Any) -> None:
        if isinstance(connection, psycopg.AsyncConnection):
            raise ConfigurationError(
                "JobService enqueues synchronously: pass a psycopg.Connection, not an "
                "AsyncConnection, as connection="
            )
        if not isinstance(connection, psycopg.Connection):
            raise ConfigurationError(
                f"connection= must be a psycopg 3 Connection, got {type(connection).__name__}; "
                "with SQLAlchemy (psycopg dialect) pass "
                "session.connection().connection.driver_connection"
            )
        self.driver = driver
        self.sql = sql
        self.connection: psycopg.Connection = connection

    def __repr__(self) -> str:
        return f"{self.driver!r}.bind({self.connection!r})"

    def bind(self, connection: Any) -> QueueDriver:
        return self.driver.bind(connection)

    def _insert(
        self, messages: Sequence[JobMessage], *, delay: float = 0.0, at: datetime | None = None
    ) -> list[EnqueueResult]:
        return insert_jobs(self.connection, self.sql, messages, delay=delay, at=at)

    def _debounce(self, message: JobMessage, window: float) -> EnqueueResult:
        return debounce_job(self.connection, self.sql, message, window)
