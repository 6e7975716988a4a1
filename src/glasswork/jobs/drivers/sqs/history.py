"""Reading statuses back from the status table (:mod:`.status`): one item as a
:class:`~glasswork.jobs.drivers.records.JobStatus`, and ``job_history``, newest first, from
the table's ``history`` index.

The index is partitioned by :data:`HISTORY_SHARDS` shards of the job id (a single partition
key would cap its writes, every status write being one of them) and sorted by when each job
last changed. A page is one ``Query`` per shard, newest first, filtered on state, job name
and queue (``FilterExpression``: DynamoDB reads the index items before filtering, so a rare
state among many ended jobs costs reading past those), merged here. The index holds neither
results nor tracebacks: ``job_status`` reads them.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, get_args

from ...aws.expressions import expression
from ..records import JobState, JobStatus
from .clients import Clients

#: The TTL attribute of the table.
TTL_ATTRIBUTE = "expires_at"
#: The global secondary index ``job_history`` reads (see the module docstring).
HISTORY_INDEX = "history"
#: Partitions of the history index; part of the table's schema.
HISTORY_SHARDS = 8
#: Attributes the history index holds besides its keys (not result nor traceback).
HISTORY_ATTRIBUTES = (
    "state",
    "job_name",
    "queue",
    "enqueued_at",
    "due_at",
    "attempts",
    "progress",
    "progress_note",
    "error",
    "expires_at",
)


def status_of(item: dict[str, Any], now: float) -> JobStatus | None:
    """The :class:`JobStatus` an item (or its history-index copy) holds; None once it has
    expired (DynamoDB's TTL deletes items some time after, not at once)."""

    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value and "S" in value else None

    def number(name: str) -> float | None:
        value = item.get(name)
        return float(value["N"]) if value and "N" in value else None

    expires = number(TTL_ATTRIBUTE)
    if expires is not None and expires <= now:
        return None
    state = text("state") or "pending"
    due = number("due_at")
    if state == "scheduled" and (due is None or due <= now):
        state = "pending"
    result = text("result")
    enqueued = number("enqueued_at")
    updated = text("updated")
    return JobStatus(
        job_id=item["job_id"]["S"],
        job_name=text("job_name") or "?",
        queue=text("queue") or "default",
        state=state,  # type: ignore[arg-type]  # what this module's writer wrote
        attempts=int(number("attempts") or 0),
        progress=number("progress"),
        progress_note=text("progress_note"),
        result=json.loads(result) if result is not None else None,
        error=text("error"),
        traceback=text("traceback"),
        enqueued_at=datetime.fromtimestamp(enqueued, UTC) if enqueued is not None else None,
        updated_at=(
            datetime.fromtimestamp(int(updated.split("#", 1)[0]) / 1000, UTC) if updated else None
        ),
    )


class StatusHistory:
    """``job_history`` on the status table ``table_name``, with the driver's clients."""

    def __init__(self, table_name: str, clients: Clients) -> None:
        self.table_name = table_name
        self.clients = clients

    def page(
        self,
        *,
        state: str | None = None,
        job_name: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[JobStatus]:
        """Up to ``limit`` jobs newest first (by when they last changed), filtered;
        ``before``: the job id that ended the previous page (the page goes on from where
        that job is now)."""
        if state is not None and state not in get_args(JobState):
            raise ValueError(f"unknown job state {state!r}: one of {', '.join(get_args(JobState))}")
        if limit <= 0:
            return []
        now = time.time()
        bound = None
        if before is not None:
            item = self.clients.dynamodb.get_item(
                TableName=self.table_name,
                Key={"job_id": {"S": before}},
                ProjectionExpression="#updated",
                ExpressionAttributeNames={"#updated": "updated"},
            ).get("Item")
            if not item or "updated" not in item:
                return []  # gone (expired): nothing is known to be older
            bound = item["updated"]["S"]
        found: list[tuple[str, JobStatus]] = []
        for shard in range(HISTORY_SHARDS):
            found += self._shard(str(shard), bound, (state, job_name, queue), limit, now)
        found.sort(key=lambda pair: pair[0], reverse=True)
        return [status for _, status in found[:limit]]

    def _shard(
        self,
        shard: str,
        bound: str | None,
        wanted: tuple[str | None, str | None, str | None],
        limit: int,
        now: float,
    ) -> list[tuple[str, JobStatus]]:
        """Up to ``limit`` matches of one shard, newest first."""
        state, job_name, queue = wanted
        values: dict[str, Any] = {
            ":shard": {"S": shard},
            ":now": {"N": f"{now:.6f}"},
            ":state": {"S": state or ""},
            ":pending": {"S": "pending"},
            ":scheduled": {"S": "scheduled"},
            ":job_name": {"S": job_name or ""},
            ":queue": {"S": queue or ""},
        }
        key = "#shard = :shard"
        if bound is not None:
            key += " AND #updated < :before"
            values[":before"] = {"S": bound}
        filters = ["#expires_at > :now"]
        if state == "pending":
            filters.append("(#state = :pending OR (#state = :scheduled AND #due_at <= :now))")
        elif state == "scheduled":
            filters.append("#state = :scheduled AND #due_at > :now")
        elif state is not None:
            filters.append("#state = :state")
        if job_name is not None:
            filters.append("#job_name = :job_name")
        if queue is not None:
            filters.append("#queue = :queue")
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": HISTORY_INDEX,
            "ScanIndexForward": False,
            **expression(
                values, KeyConditionExpression=key, FilterExpression=" AND ".join(filters)
            ),
        }
        if len(filters) == 1:
            request["Limit"] = limit  # nothing filtered out but the expired: read no more
        found: list[tuple[str, JobStatus]] = []
        while len(found) < limit:
            response = self.clients.dynamodb.query(**request)
            for item in response.get("Items", []):
                status = status_of(item, now)
                if status is not None:
                    found.append((item["updated"]["S"], status))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit]
