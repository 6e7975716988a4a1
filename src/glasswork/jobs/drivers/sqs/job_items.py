"""The status table's items (:mod:`.status`): what one job's item holds, read off a
delivery and written by each request on it. The requests are built here and sent by the
sync store (:class:`~.status.StatusTable`) or the async enqueuer (aiobotocore)."""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...aws.errors import CONDITION_FAILED, error_code
from ...aws.expressions import expression
from ...message import JobMessage
from ..records import FinalStatus, ReceivedMessage
from .history import HISTORY_SHARDS, TTL_ATTRIBUTE

#: How long the status of a job that has not ended is kept past its due time or last run:
#: SQS's longest message retention, after which no message of it can arrive.
LIVE_SECONDS = 14 * 86400
#: Bytes kept of an error (its start) and of a traceback (its end).
TEXT_LIMIT = 8192
#: The largest result kept (JSON bytes); DynamoDB items hold 400 KB.
RESULT_LIMIT = 350_000
#: Where a delivery's job, once read off its body, is kept (in ReceivedMessage.attributes).
DELIVERED = "glasswork.delivered"


def shard_of(job_id: str) -> str:
    """The history-index partition of a job."""
    return str(zlib.crc32(job_id.encode("utf-8")) % HISTORY_SHARDS)


def updated_key(at: float, job_id: str) -> str:
    """The history index's sort key: epoch milliseconds, zero-padded so text order is time
    order, then the job id to make it unique."""
    return f"{int(at * 1000):015d}#{job_id}"


def _n(value: float) -> dict[str, str]:
    return {"N": str(value) if isinstance(value, int) else f"{value:.6f}"}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _states(*states: str) -> dict[str, Any]:
    return {f":{state}": _s(state) for state in states}


def trim_start(text: str) -> str:
    """``text`` cut to its first :data:`TEXT_LIMIT` bytes."""
    raw = text.encode("utf-8")
    return text if len(raw) <= TEXT_LIMIT else raw[:TEXT_LIMIT].decode("utf-8", "ignore") + "…"


def trim_end(text: str) -> str:
    """``text`` cut to its last :data:`TEXT_LIMIT` bytes (a traceback's end says most)."""
    raw = text.encode("utf-8")
    return text if len(raw) <= TEXT_LIMIT else "…" + raw[-TEXT_LIMIT:].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True)
class Delivered:
    """Who a delivery's job is, read off its body (a malformed body has none)."""

    job_id: str
    job_name: str
    queue: str
    enqueued_at: float | None

    @classmethod
    def of(cls, received: ReceivedMessage) -> Delivered | None:
        """The job of ``received`` (read once per delivery object)."""
        known = received.attributes.get(DELIVERED)
        if isinstance(known, Delivered):
            return known
        job = cls.read(received)
        if job is not None:
            received.attributes[DELIVERED] = job
        return job

    @classmethod
    def read(cls, received: ReceivedMessage) -> Delivered | None:
        try:
            data = json.loads(received.body)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        job_id = data.get("jobId", data.get("job_id"))
        if not isinstance(job_id, str) or not job_id:
            return None
        name = data.get("jobName", data.get("job_name"))
        queue = data.get("queue")
        return cls(
            job_id,
            name if isinstance(name, str) else "?",
            queue if isinstance(queue, str) else received.queue,
            _epoch(data.get("enqueuedAt", data.get("enqueued_at"))),
        )


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def result_text(final: FinalStatus) -> tuple[str | None, str | None]:
    """The result as stored (JSON text) and the error to keep: a result that is not JSON,
    or too large for an item, is not kept, and the error says so (the job still ran)."""
    if final.state != "done" or final.result is None:
        return None, final.error
    try:
        text = json.dumps(final.result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return None, f"the result could not be stored: it is not JSON ({exc})"
    size = len(text.encode("utf-8"))
    if size > RESULT_LIMIT:
        return None, (
            f"the result could not be stored: {size} bytes of JSON, over the status table's "
            f"{RESULT_LIMIT} (a DynamoDB item holds 400 KB)"
        )
    return text, final.error


class StatusRequests:
    """The requests on the status table ``table_name``: built here, sent by the sync store
    (:class:`StatusTable`) or the async enqueuer (aiobotocore)."""

    #: An enqueue writes a status unless one lives: a job the scheduler sends on, a tombstone,
    #: or the same job sent twice. A job id enqueued anew after its job ended starts afresh.
    ENQUEUE_CONDITION = (
        "attribute_not_exists(#job_id) OR #expires_at < :now OR "
        "(#state IN (:done, :failed, :dead) AND #enqueued_at <> :enqueued_at)"
    )
    #: A run starts unless the job was cancelled or its end was recorded; a dead job runs
    #: again only from another message (a redriven dead letter), not a redelivery.
    START_CONDITION = (
        "attribute_not_exists(#job_id) OR #expires_at < :now OR "
        "#state IN (:scheduled, :pending, :running, :retrying) OR "
        "(#state = :dead AND (attribute_not_exists(#message_id) OR #message_id <> :message_id))"
    )

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def key(self, job_id: str) -> dict[str, Any]:
        return {"job_id": _s(job_id)}

    def enqueued(self, message: JobMessage, due: float | None, now: float) -> dict[str, Any]:
        """The conditional ``PutItem`` of a job sent now (``due`` None) or delayed."""
        enqueued = message.enqueued_at.timestamp() if message.enqueued_at else now
        item = {
            "job_id": _s(message.job_id),
            "shard": _s(shard_of(message.job_id)),
            "updated": _s(updated_key(now, message.job_id)),
            "state": _s("scheduled" if due is not None else "pending"),
            "job_name": _s(message.job_name),
            "queue": _s(message.queue),
            "enqueued_at": _n(enqueued),
            "attempts": _n(0),
            TTL_ATTRIBUTE: _n(math.ceil(max(now, due or now) + LIVE_SECONDS)),
        }
        if due is not None:
            item["due_at"] = _n(due)
        values = {
            ":now": _n(now),
            ":enqueued_at": _n(enqueued),
            **_states("done", "failed", "dead"),
        }
        return {
            "TableName": self.table_name,
            "Item": item,
            **expression(values, ConditionExpression=self.ENQUEUE_CONDITION),
        }

    def forget(self, job_id: str) -> dict[str, Any]:
        """The ``DeleteItem`` of the status of a job whose send failed (if it never ran)."""
        return {
            "TableName": self.table_name,
            "Key": self.key(job_id),
            **expression(
                {":zero": _n(0), **_states("scheduled", "pending")},
                ConditionExpression="#state IN (:scheduled, :pending) AND #attempts = :zero",
            ),
        }

    def start(self, job: Delivered, message_id: str, now: float) -> dict[str, Any]:
        """The conditional ``UpdateItem`` that records a run's start (see
        :data:`START_CONDITION`); it returns the new attempt count."""
        values = {
            ":now": _n(now),
            ":zero": _n(0),
            ":one": _n(1),
            ":updated": _s(updated_key(now, job.job_id)),
            ":live": _n(math.ceil(now + LIVE_SECONDS)),
            ":message_id": _s(message_id),
            ":job_name": _s(job.job_name),
            ":queue": _s(job.queue),
            ":enqueued_at": _n(job.enqueued_at if job.enqueued_at is not None else now),
            ":shard": _s(shard_of(job.job_id)),
            **_states("scheduled", "pending", "running", "retrying", "dead"),
        }
        update = (
            "SET #state = :running, #attempts = if_not_exists(#attempts, :zero) + :one, "
            "#updated = :updated, #expires_at = :live, #message_id = :message_id, "
            "#job_name = if_not_exists(#job_name, :job_name), "
            "#queue = if_not_exists(#queue, :queue), "
            "#enqueued_at = if_not_exists(#enqueued_at, :enqueued_at), "
            "#shard = if_not_exists(#shard, :shard)"
        )
        return {
            "TableName": self.table_name,
            "Key": self.key(job.job_id),
            "ReturnValues": "UPDATED_NEW",
            **expression(values, UpdateExpression=update, ConditionExpression=self.START_CONDITION),
        }

    def held_back(self, job_id: str, message_id: str, now: float) -> dict[str, Any]:
        """The ``UpdateItem`` that takes back the start of a delivery its limits held back
        (``pending`` again, the attempt not counted), if that start is still the last."""
        values = {
            ":pending": _s("pending"),
            ":one": _n(1),
            ":updated": _s(updated_key(now, job_id)),
            ":message_id": _s(message_id),
            **_states("running"),
        }
        return {
            "TableName": self.table_name,
            "Key": self.key(job_id),
            **expression(
                values,
                UpdateExpression=(
                    "SET #state = :pending, #attempts = #attempts - :one, #updated = :updated"
                ),
                ConditionExpression="#state = :running AND #message_id = :message_id",
            ),
        }

    def retry(self, job_id: str, error: str, traceback: str | None, now: float) -> dict[str, Any]:
        """The ``UpdateItem`` of a failed run that will be retried (unless the job ended)."""
        values = {
            ":retrying": _s("retrying"),
            ":error": _s(trim_start(error)),
            ":traceback": _s(trim_end(traceback or "")),
            ":updated": _s(updated_key(now, job_id)),
            ":live": _n(math.ceil(now + LIVE_SECONDS)),
            **_states("done", "failed", "dead", "cancelled"),
        }
        update = "SET #state = :retrying, #error = :error, #updated = :updated, #expires_at = :live"
        update += ", #traceback = :traceback" if traceback else " REMOVE #traceback"
        condition = (
            "attribute_exists(#job_id) AND attribute_not_exists(#cancel_requested) AND "
            "NOT (#state IN (:done, :failed, :dead, :cancelled))"
        )
        return {
            "TableName": self.table_name,
            "Key": self.key(job_id),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **expression(values, UpdateExpression=update, ConditionExpression=condition),
        }

    def cancel_failed(
        self, job_id: str, error: str, traceback: str | None, now: float
    ) -> dict[str, Any]:
        """The ``UpdateItem`` for a run that failed after it was asked to stop: the job is
        cancelled rather than retried (a tombstone for the message the worker hands back)."""
        values = {
            ":cancelled": _s("cancelled"),
            ":running": _s("running"),
            ":error": _s(
                trim_start(f"cancelled while running; the failed run is not retried: {error}")
            ),
            ":traceback": _s(trim_end(traceback or "")),
            ":updated": _s(updated_key(now, job_id)),
            ":live": _n(math.ceil(now + LIVE_SECONDS)),
        }
        update = (
            "SET #state = :cancelled, #error = :error, #updated = :updated, #expires_at = :live"
        )
        update += ", #traceback = :traceback" if traceback else ""
        update += " REMOVE #cancel_requested" + ("" if traceback else ", #traceback")
        return {
            "TableName": self.table_name,
            "Key": self.key(job_id),
            **expression(values, UpdateExpression=update, ConditionExpression="#state = :running"),
        }

    def progress(
        self, job_id: str, fraction: float, note: str | None, now: float
    ) -> dict[str, Any]:
        """The ``UpdateItem`` of a running job's progress."""
        values = {
            ":progress": _n(min(1.0, max(0.0, float(fraction)))),
            ":note": _s(trim_start(note or "")),
            ":updated": _s(updated_key(now, job_id)),
            ":running": _s("running"),
        }
        update = "SET #progress = :progress, #updated = :updated"
        update += ", #progress_note = :note" if note else " REMOVE #progress_note"
        return {
            "TableName": self.table_name,
            "Key": self.key(job_id),
            **expression(values, UpdateExpression=update, ConditionExpression="#state = :running"),
        }

    def ended_item(
        self, job: Delivered, message_id: str, attempts: int, final: FinalStatus, now: float
    ) -> dict[str, Any]:
        """The whole item of a job that ended, written over what was there (a ``PutItem``,
        so that a batch of them is one ``BatchWriteItem``)."""
        result, error = result_text(final)
        item = {
            "job_id": _s(job.job_id),
            "shard": _s(shard_of(job.job_id)),
            "updated": _s(updated_key(now, job.job_id)),
            "state": _s(final.state),
            "job_name": _s(job.job_name),
            "queue": _s(job.queue),
            "attempts": _n(attempts),
            "message_id": _s(message_id),
            TTL_ATTRIBUTE: _n(math.ceil(now + final.keep_for)),
        }
        optional = {
            "enqueued_at": _n(job.enqueued_at) if job.enqueued_at is not None else None,
            "progress": _n(final.progress) if final.progress is not None else None,
            "progress_note": _s(trim_start(final.progress_note)) if final.progress_note else None,
            "result": _s(result) if result is not None else None,
            "error": _s(trim_start(error)) if error else None,
            "traceback": _s(trim_end(final.traceback)) if final.traceback else None,
        }
        item.update((name, value) for name, value in optional.items() if value is not None)
        return item

    def ended_update(
        self, job: Delivered, message_id: str, final: FinalStatus, now: float
    ) -> dict[str, Any]:
        """The ``UpdateItem`` that records a job's end when its attempt count is not known
        here (its start was recorded by another process): everything but the count."""
        item = self.ended_item(job, message_id, 0, final, now)
        del item["job_id"], item["attempts"]
        sets = [f"#{name} = :{name}" for name in item]
        removed = [
            f"#{name}"
            for name in ("progress", "progress_note", "result", "error", "traceback", "due_at")
            if name not in item
        ]
        update = "SET " + ", ".join(sets) + ", #attempts = if_not_exists(#attempts, :one)"
        update += " REMOVE " + ", ".join([*removed, "#cancel_requested"])
        values = {f":{name}": value for name, value in item.items()} | {":one": _n(1)}
        return {
            "TableName": self.table_name,
            "Key": self.key(job.job_id),
            **expression(values, UpdateExpression=update),
        }

    def cancel_waiting(self, job_id: str, reason: str, now: float) -> dict[str, Any]:
        """The ``UpdateItem`` that cancels a job still waiting: it becomes a tombstone, kept
        as long as its message may arrive. The old item comes back when it fails."""
        values = {
            ":cancelled": _s("cancelled"),
            ":reason": _s(trim_start(reason)),
            ":updated": _s(updated_key(now, job_id)),
            ":now": _n(now),
            **_states("scheduled", "pending", "retrying"),
        }
        return {
            "TableName": self.table_name,
            "Key": self.key(job_id),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **expression(
                values,
                UpdateExpression="SET #state = :cancelled, #error = :reason, #updated = :updated",
                ConditionExpression=(
                    "#state IN (:scheduled, :pending, :retrying) AND #expires_at > :now"
                ),
            ),
        }

    def cancel_running(self, job_id: str, now: float) -> dict[str, Any]:
        """The ``UpdateItem`` that asks a running job to stop."""
        values = {
            ":yes": {"BOOL": True},
            ":running": _s("running"),
            ":updated": _s(updated_key(now, job_id)),
            ":now": _n(now),
        }
        return {
            "TableName": self.table_name,
            "Key": self.key(job_id),
            **expression(
                values,
                UpdateExpression="SET #cancel_requested = :yes, #updated = :updated",
                ConditionExpression="#state = :running AND #expires_at > :now",
            ),
        }


def is_condition_failure(exc: BaseException) -> bool:
    return error_code(exc) == CONDITION_FAILED
