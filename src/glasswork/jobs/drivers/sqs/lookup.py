"""Job lookup by id on SQS (the driver's :class:`~glasswork.jobs.drivers.contract.JobFinder`,
which the dashboard uses), as far as SQS allows.

* **Dead letters** are found: the DLQs are peeked (see :mod:`.dead_letters`) and their
  messages matched on the job id in the body.
* **Delayed jobs in the scheduler table** (delays past 15 minutes, any delay on a FIFO queue)
  are found: a job id's items sit under one partition key (its shard), so the lookup is one
  ``Query`` of that shard, filtered on the id (it reads an eighth of the table).
* **Jobs on an SQS queue** (ready, delayed up to 15 minutes, or in flight) cannot be found:
  SQS hands messages out only in turn and has no lookup by content; reading a queue to
  search it would take its jobs from the workers. :attr:`SQSJobLookup.scope` (the driver's
  ``job_lookup_scope``) says so, and the dashboard shows it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..records import FoundJob
from .clients import Clients
from .dead_letters import SQSDeadLetters

#: Dead letters peeked at most (over every DLQ) by one lookup.
LOOKUP_LIMIT = 1000


class SQSJobLookup:
    """``find_job`` for one driver: its DLQs (``dead_letters``) and, when it has one, its
    scheduler table (``scheduler_table``, read with the ``clients``' DynamoDB client)."""

    def __init__(
        self, dead_letters: SQSDeadLetters, scheduler_table: str | None, clients: Clients
    ) -> None:
        self.dead_letters = dead_letters
        self.scheduler_table = scheduler_table
        self.clients = clients

    @property
    def scope(self) -> str:
        """Where :meth:`find_job` looks, and where it cannot, as the dashboard says it."""
        table = " and the scheduler table's delayed jobs" if self.scheduler_table else ""
        return (
            f"dead letters{table} only: jobs waiting on an SQS queue or in flight cannot be "
            "looked up by id (SQS hands messages out only in turn)"
        )

    def find_job(self, job_id: str) -> list[FoundJob]:
        """Job ``job_id`` among the scheduler table's delayed jobs (when the driver has
        one) and the dead letters (the first :data:`LOOKUP_LIMIT`)."""
        found = self._scheduled(job_id) if self.scheduler_table else []
        found.extend(
            FoundJob(job_id, "dead", r.queue, r.job_name, r.body, dead_letter=r)
            for r in self.dead_letters.records(limit=LOOKUP_LIMIT)
            if r.job_id == job_id
        )
        return found

    def _scheduled(self, job_id: str) -> list[FoundJob]:
        from .scheduler import shard_key

        pages = self.clients.dynamodb.get_paginator("query").paginate(
            TableName=self.scheduler_table,
            KeyConditionExpression="pk = :shard",
            FilterExpression="job_id = :id",
            ExpressionAttributeValues={":shard": {"S": shard_key(job_id)}, ":id": {"S": job_id}},
        )
        return [_scheduled(job_id, item) for page in pages for item in page.get("Items", [])]


def _scheduled(job_id: str, item: dict[str, Any]) -> FoundJob:
    def text(name: str) -> str | None:
        value = item.get(name, {}).get("S")
        return value if isinstance(value, str) else None

    due = item.get("due_at", {}).get("N")
    return FoundJob(
        job_id,
        "delayed",
        text("queue"),
        text("job_name"),
        text("body") or "",
        due_at=datetime.fromtimestamp(float(due), UTC) if due else None,
    )
