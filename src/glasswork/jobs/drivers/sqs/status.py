"""Job status on SQS: a DynamoDB table keeps each job's life (``SQSQueueDriver(status_table=...)``),
what :class:`~glasswork.jobs.drivers.contract.StatusStore` asks of the driver.

SQS itself knows nothing of a job once it is sent, and cannot delete a message by id; so
every status is an item of the table, one per job id, written by the driver at enqueue and
by the workers as the job runs::

    job_id         S  the table's partition key
    state          S  scheduled · pending · running · retrying · done · failed · dead · cancelled
    job_name S, queue S, enqueued_at N (epoch seconds), due_at N (a delayed job's due time)
    attempts       N  runs started
    progress N, progress_note S, result S (JSON text), error S, traceback S (its last 8 KB)
    cancel_requested BOOL  a running job asked to stop
    message_id     S  the SQS message of the last run (a redriven dead letter is another)
    shard S, updated S  the ``history`` index: shard "0"-"7" (crc32 of the job id) and
                   "<epoch ms, 15 digits>#<job id>" (when it last changed)
    expires_at     N  the TTL attribute: for a job that has not ended, 14 days (SQS's longest
                   retention) past its due time or last run; for one that has, its
                   ``result_ttl`` after the end

A waiting job that is cancelled keeps its item as a tombstone (state ``cancelled``): its
message still arrives, and :meth:`StatusTable.record_start`, one conditional ``UpdateItem``
before each run, refuses to start it, as it refuses a redelivery of a job whose end was
recorded. Writes at enqueue are conditional too, so the scheduler sending a long-delayed
job on (through the driver's ``enqueue_many``) leaves its status, a tombstone included,
alone. ``scheduled`` is read as ``pending`` once the due time has passed: nothing is written
when a delay ends.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...aws.errors import CONDITION_FAILED, error_code
from ...aws.expressions import expression
from ...aws.tables import Index, dynamodb_client, ensure_table
from ...errors import ConfigurationError, EnqueueError
from ...message import JobMessage
from ..records import FinalStatus, JobStatus, ReceivedMessage
from .clients import Clients
from .consuming import SQSConsumer
from .history import (
    HISTORY_ATTRIBUTES,
    HISTORY_INDEX,
    HISTORY_SHARDS,
    TTL_ATTRIBUTE,
    StatusHistory,
    status_of,
)
from .problems import Settings

logger = logging.getLogger("glasswork.jobs")

#: How long the status of a job that has not ended is kept past its due time or last run:
#: SQS's longest message retention, after which no message of it can arrive.
LIVE_SECONDS = 14 * 86400
#: Bytes kept of an error (its start) and of a traceback (its end).
TEXT_LIMIT = 8192
#: The largest result kept (JSON bytes); DynamoDB items hold 400 KB.
RESULT_LIMIT = 350_000
#: Items per TransactWriteItems, BatchWriteItem and BatchGetItem request (DynamoDB's limits).
TRANSACT_BATCH, WRITE_BATCH, READ_BATCH = 100, 25, 100
#: Starts recorded side by side by record_start_many (a Lambda batch holds up to 10).
START_THREADS = 10
#: Where record_start leaves the attempt count for finish (in ReceivedMessage.attributes).
ATTEMPTS_SEEN = "glasswork.attempts"

_RETRIED = 5


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


class NoStatusTable:
    """The status of a driver without a status table: the worker's calls cost nothing
    (a run always starts, finishing is acknowledging), and asking for a status is a
    :class:`ConfigurationError` saying how to keep them."""

    enabled = False

    def __init__(self, consumer: SQSConsumer, settings: Settings) -> None:
        self.consumer = consumer
        self.settings = settings

    def unavailable(self) -> ConfigurationError:
        # TODO(issue 20 merge): StatusUnavailableError, the service's class for this.
        where = (
            "?status_table=<table> in the sqs:// URL"
            if self.settings.url is not None
            else "status_table=<table>"
        )
        return ConfigurationError(
            f"SQSQueueDriver keeps no job status: pass status_table=... or ?status_table= in "
            f"the sqs:// URL ({where}); create it with create_status_table(...)"
        )

    def enqueued(self, messages: Sequence[JobMessage], due: float | None) -> list[str]:
        return []

    def forget(self, job_ids: Iterable[str]) -> None:
        return None

    def record_start(self, received: ReceivedMessage) -> bool:
        return True

    def record_start_many(self, received: Sequence[ReceivedMessage]) -> list[bool]:
        return [True] * len(received)

    def record_retry(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        return None

    def record_progress(self, job_id: str, fraction: float, note: str | None) -> None:
        return None

    def finish(self, received: ReceivedMessage, final: FinalStatus) -> None:
        if final.state != "dead":  # a dead one was consumed by its dead-lettering
            self.consumer.ack(received)

    def finish_many(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> None:
        acked = [received for received, final in finished if final.state != "dead"]
        if acked:
            self.consumer.ack_many(acked)

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        return set()  # nothing can have been asked: cancel() needs the table

    def job_status(self, job_id: str) -> JobStatus | None:
        raise self.unavailable()

    def job_history(self, **query: Any) -> list[JobStatus]:
        raise self.unavailable()

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        raise self.unavailable()


class StatusTable:
    """The statuses of one driver's jobs in the DynamoDB table ``table_name`` (see the
    module), on the driver's clients; finishing deletes messages through its ``consumer``."""

    enabled = True

    def __init__(self, table_name: str, clients: Clients, consumer: SQSConsumer) -> None:
        self.table_name = table_name
        self.requests = StatusRequests(table_name)
        self.clients = clients
        self.consumer = consumer
        self.history = StatusHistory(table_name, clients)
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"StatusTable({self.table_name!r})"

    # -- producing -------------------------------------------------------------------------

    def enqueued(self, messages: Sequence[JobMessage], due: float | None) -> list[str]:
        """Write the status of ``messages`` before they are sent (``due``: when delayed
        ones are due); returns the job ids written (not those whose status lives already:
        see :data:`StatusRequests.ENQUEUE_CONDITION`). One conditional ``PutItem``, or one
        ``TransactWriteItems`` per 100 jobs (the only batch write that takes conditions).
        A failure is an :class:`EnqueueError`: nothing is sent then."""
        now = time.time()
        unique = list({m.job_id: m for m in reversed(messages)}.values())[::-1]
        written: list[str] = []
        for start in range(0, len(unique), TRANSACT_BATCH):
            written += self._create(unique[start : start + TRANSACT_BATCH], due, now)
        return written

    def _create(self, chunk: list[JobMessage], due: float | None, now: float) -> list[str]:
        pending = chunk
        try:
            for attempt in range(_RETRIED):
                if attempt:
                    time.sleep(min(1.0, 0.05 * 2.0**attempt))
                if len(pending) == 1:
                    try:
                        self.client.put_item(**self.requests.enqueued(pending[0], due, now))
                    except ClientError as exc:
                        if is_condition_failure(exc):
                            return []
                        raise
                    return [pending[0].job_id]
                items = [{"Put": self.requests.enqueued(m, due, now)} for m in pending]
                try:
                    self.client.transact_write_items(TransactItems=items)
                    return [m.job_id for m in pending]
                except ClientError as exc:
                    if error_code(exc) != "TransactionCanceledException":
                        raise
                    pending = self._uncontested(pending, exc)
                    if not pending:
                        return []
            raise RuntimeError(f"conflicting writes after {_RETRIED} attempts")
        except (ClientError, BotoCoreError, RuntimeError) as exc:
            raise self.failure(pending, exc) from exc

    def failure(self, messages: Sequence[JobMessage], exc: Exception) -> EnqueueError:
        """The error of an enqueue whose status could not be written (nothing was sent)."""
        first = messages[0]
        others = f" and {len(messages) - 1} other(s)" if len(messages) > 1 else ""
        return EnqueueError(
            f"could not record job {first.job_name!r} (id {first.job_id}){others} in the "
            f"status table {self.table_name!r}, so nothing was sent: {exc}"
        )

    @staticmethod
    def _uncontested(pending: list[JobMessage], exc: ClientError) -> list[JobMessage]:
        """What to try again after a cancelled transaction: all but the jobs whose status
        lives already. Any other reason than a condition or a conflict is raised."""
        reasons = exc.response.get("CancellationReasons") or []
        if len(reasons) != len(pending):
            raise exc
        codes = [str(reason.get("Code") or "None") for reason in reasons]
        if set(codes) - {"None", "ConditionalCheckFailed", "TransactionConflict"}:
            raise exc
        return [
            m for m, code in zip(pending, codes, strict=True) if code != "ConditionalCheckFailed"
        ]

    def forget(self, job_ids: Iterable[str]) -> None:
        """Delete the status of jobs whose send failed (if they have not run since)."""
        for job_id in job_ids:
            try:
                self.client.delete_item(**self.requests.forget(job_id))
            except (ClientError, BotoCoreError) as exc:
                if not is_condition_failure(exc):
                    logger.warning(
                        "could not delete the status of job %s, which was not sent; it shows "
                        "as waiting until it expires: %s",
                        job_id,
                        exc,
                    )

    # -- the worker's side -----------------------------------------------------------------

    @property
    def client(self) -> Any:
        return self.clients.dynamodb

    def record_start(self, received: ReceivedMessage) -> bool:
        """One conditional ``UpdateItem``: False when the job was cancelled, or ended
        before (this is a redelivery), and must not run."""
        job = Delivered.of(received)
        if job is None:
            return True  # no job id to keep a status under: the worker dead-letters it
        request = self.requests.start(job, received.message_id, time.time())
        try:
            response = self.client.update_item(**request)
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        attempts = response.get("Attributes", {}).get("attempts", {}).get("N")
        if attempts is not None:
            received.attributes[ATTEMPTS_SEEN] = int(attempts)
        return True

    def record_start_many(self, received: Sequence[ReceivedMessage]) -> list[bool]:
        """:meth:`record_start` of each, the requests side by side (a Lambda batch of 10
        waits for one round trip, not ten): DynamoDB has no batch of conditional updates
        that returns each new attempt count."""
        if len(received) <= 1:
            return [self.record_start(r) for r in received]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(START_THREADS, thread_name_prefix="glasswork-status")
        return list(self._pool.map(self.record_start, received))

    def record_retry(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        """One ``UpdateItem``: ``retrying``, with the error (a job that ended is left be;
        one asked to stop while it ran ends ``cancelled`` instead)."""
        job = Delivered.of(received)
        if job is None:
            return
        now = time.time()
        try:
            self.client.update_item(**self.requests.retry(job.job_id, error, traceback, now))
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            old = exc.response.get("Item") or {}
            if old.get("cancel_requested", {}).get("BOOL"):
                # Asked to stop, it failed instead: it ends cancelled, and the delivery the
                # worker hands back is refused at its next start.
                self._update(self.requests.cancel_failed(job.job_id, error, traceback, now))

    def record_progress(self, job_id: str, fraction: float, note: str | None) -> None:
        """One ``UpdateItem``, if the job is running."""
        self._update(self.requests.progress(job_id, fraction, note, time.time()))

    def _update(self, request: dict[str, Any]) -> None:
        try:
            self.client.update_item(**request)
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise

    def finish(self, received: ReceivedMessage, final: FinalStatus) -> None:
        """Record how the job ended, then delete its message (a ``dead`` one only
        records)."""
        self.finish_many([(received, final)])

    def finish_many(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> None:
        """Record how the jobs ended, one ``BatchWriteItem`` per 25 (a job kept 0 seconds
        is deleted), then delete their messages, one ``DeleteMessageBatch`` per 10."""
        now = time.time()
        writes: dict[str, dict[str, Any]] = {}  # by job id: a job delivered twice, once
        updates: list[dict[str, Any]] = []
        for received, final in finished:
            job = Delivered.of(received)
            if job is None:
                continue
            attempts = received.attributes.get(ATTEMPTS_SEEN)
            if final.keep_for <= 0:
                writes[job.job_id] = {"DeleteRequest": {"Key": self.requests.key(job.job_id)}}
            elif isinstance(attempts, int):
                item = self.requests.ended_item(job, received.message_id, attempts, final, now)
                writes[job.job_id] = {"PutRequest": {"Item": item}}
            else:
                updates.append(self.requests.ended_update(job, received.message_id, final, now))
        # The end is written before the messages are deleted. Dying between the two leaves
        # a message whose job has ended: SQS delivers it again, record_start refuses it
        # (the end is recorded) and the worker deletes it without running it. The other
        # order could leave a finished job shown as running, and a status must never say
        # done for a job that did not finish, which writing done only after the handler
        # returned guarantees. A write that fails does not keep the messages: the jobs ran,
        # and must not run again.
        try:
            self._write(list(writes.values()))
            for request in updates:
                self.client.update_item(**request)
        except (ClientError, BotoCoreError, RuntimeError):
            logger.error(
                "could not record the end of %d job(s) in the status table %r; their status "
                "shows their last state until it expires",
                len(finished),
                self.table_name,
                exc_info=True,
            )
        acked = [received for received, final in finished if final.state != "dead"]
        if acked:
            self.consumer.ack_many(acked)

    def _write(self, entries: list[dict[str, Any]]) -> None:
        """``BatchWriteItem`` 25 at a time, retrying what DynamoDB leaves unprocessed."""
        for start in range(0, len(entries), WRITE_BATCH):
            chunk = entries[start : start + WRITE_BATCH]
            for attempt in range(_RETRIED):
                if attempt:
                    time.sleep(min(1.0, 0.05 * 2.0**attempt))
                response = self.client.batch_write_item(RequestItems={self.table_name: chunk})
                chunk = response.get("UnprocessedItems", {}).get(self.table_name, [])
                if not chunk:
                    break
            else:
                raise RuntimeError(f"DynamoDB left {len(chunk)} status write(s) unprocessed")

    # -- cancelling --------------------------------------------------------------------------

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """A waiting job becomes a tombstone (one conditional ``UpdateItem``); a running
        one is asked to stop (a second). False for a job unknown, expired or ended."""
        for _ in range(3):  # the job may move on between the two writes: look again
            now = time.time()
            try:
                self.client.update_item(**self.requests.cancel_waiting(job_id, reason, now))
                return True
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                old = exc.response.get("Item") or {}
            if old.get("state", {}).get("S") != "running":
                return False
            try:
                self.client.update_item(**self.requests.cancel_running(job_id, now))
                return True
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
        return False

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these running jobs were asked to stop: ``BatchGetItem``, 100 a request."""
        ids = list(dict.fromkeys(job_ids))
        asked: set[str] = set()
        for start in range(0, len(ids), READ_BATCH):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [
                        self.requests.key(job_id) for job_id in ids[start : start + READ_BATCH]
                    ],
                    **expression({}, ProjectionExpression="#job_id, #cancel_requested, #state"),
                }
            }
            for attempt in range(_RETRIED):
                if attempt:
                    time.sleep(min(1.0, 0.05 * 2.0**attempt))
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    if item.get("cancel_requested", {}).get("BOOL") and (
                        item.get("state", {}).get("S") == "running"
                    ):
                        asked.add(item["job_id"]["S"])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
        return asked

    # -- reading ---------------------------------------------------------------------------

    def job_status(self, job_id: str) -> JobStatus | None:
        """``GetItem`` (strongly consistent)."""
        item = self.client.get_item(
            TableName=self.table_name, Key=self.requests.key(job_id), ConsistentRead=True
        ).get("Item")
        return status_of(item, time.time()) if item else None

    def job_history(self, **query: Any) -> list[JobStatus]:
        """See :class:`~.history.StatusHistory`."""
        return self.history.page(**query)


def create_status_table(
    table_name: str,
    *,
    client: Any = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    wait: bool = True,
) -> str:
    """Create the status table (on-demand billing, TTL on ``expires_at``, the ``history``
    index) if it does not exist; returns its ARN. The same schema in CloudFormation is in
    ``docs/sqs.md``."""
    client = client or dynamodb_client(region, endpoint_url)
    history = Index(HISTORY_INDEX, ("shard", "updated"), HISTORY_ATTRIBUTES)
    return ensure_table(
        client, table_name, ("job_id",), TTL_ATTRIBUTE, wait=wait, indexes=[history]
    )
