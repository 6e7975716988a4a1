"""Delays SQS cannot hold (past 15 minutes, or any on a FIFO queue): the job is written to
the DynamoDB scheduler table, and the scheduler (:mod:`.scheduler`) sends it when due."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from ...aws.errors import error_code
from ...errors import ConfigurationError, EnqueueError
from ...message import JobMessage
from ..records import EnqueueResult, FailedEnqueue
from .clients import Clients
from .problems import Settings
from .queues import MAX_SQS_DELAY_SECONDS, QueueDirectory

if TYPE_CHECKING:
    from .scheduler import ScheduledJobsTable


class DelayTable:
    """The scheduler table ``table_name`` of one driver (None: it has none, and a delay SQS
    cannot hold is a :class:`ConfigurationError` saying how to add one); items are kept
    ``retention`` after they were sent."""

    def __init__(
        self,
        table_name: str | None,
        *,
        directory: QueueDirectory,
        clients: Clients,
        settings: Settings,
        retention: timedelta,
    ) -> None:
        self.table_name = table_name
        self.directory = directory
        self.clients = clients
        self.settings = settings
        self.retention = retention
        self._table: ScheduledJobsTable | None = None

    @property
    def table(self) -> ScheduledJobsTable:
        """The DynamoDB scheduler table; a :class:`ConfigurationError` without one."""
        if self._table is None:
            if not self.table_name:
                raise ConfigurationError(
                    "this job needs the DynamoDB scheduler table, but the driver has none: "
                    f"{self.settings.add('scheduler_table', '<table name>')} (create it with "
                    "glasswork.jobs.drivers.sqs.create_scheduler_table) and run the scheduler"
                )
            from .scheduler import ScheduledJobsTable

            self._table = ScheduledJobsTable(
                self.table_name,
                client=self.clients.dynamodb,
                region=self.clients.region,
                endpoint_url=self.clients.endpoint_url,
                retention=self.retention,
            )
        return self._table

    def schedule(self, message: JobMessage, due: float) -> EnqueueResult:
        """Write ``message`` to the table, due at ``due`` (an epoch time)."""
        self.directory.queue_url(message.queue)  # an unknown queue fails now, not at dispatch
        if not self.table_name:
            fifo = self.directory.is_fifo(message.queue)
            why = (
                f"queue {message.queue!r} is FIFO, and SQS FIFO queues take no per-message delay"
                if fifo
                else f"the delay is over SQS's {MAX_SQS_DELAY_SECONDS // 60}-minute limit"
            )
            raise ConfigurationError(
                f"job {message.job_name!r} is due in {due - time.time():.0f}s but {why}: "
                f"{self.settings.add('scheduler_table', '<DynamoDB table>')} and run the "
                "scheduler (glasswork.jobs.create_scheduler_handler)"
            )
        try:
            key = self.table.put(message, due)
        except (ClientError, BotoCoreError) as exc:
            raise EnqueueError(
                f"could not store job {message.job_name!r} (id {message.job_id}), due "
                f"{datetime.fromtimestamp(due, UTC).isoformat()}, in the scheduler table "
                f"{self.table_name!r}: {exc}"
            ) from exc
        return EnqueueResult(
            f"scheduled:{key}", message.job_id, message.queue, datetime.fromtimestamp(due, UTC)
        )

    def schedule_many(
        self,
        messages: Sequence[JobMessage],
        indexes: list[int],
        due: float,
        results: list[EnqueueResult | None],
    ) -> list[FailedEnqueue]:
        """Write ``messages[indexes]`` to the table one by one; returns the failures."""
        failed: list[FailedEnqueue] = []
        for index in indexes:
            message = messages[index]
            try:
                results[index] = self.schedule(message, due)
            except EnqueueError as exc:
                cause = exc.__cause__
                code = error_code(cause) if isinstance(cause, ClientError) else type(cause).__name__
                failed.append(
                    FailedEnqueue(message.job_id, message.job_name, message.queue, code, str(exc))
                )
        return failed
