"""SQSQueueDriver: jobs on Amazon SQS, long delays through the DynamoDB scheduler table.

>>> driver = SQSQueueDriver(                                     # doctest: +SKIP
...     region="eu-west-1",
...     queues={"default": os.environ["JOB_QUEUE_URL"]},
...     scheduler_table=os.environ.get("SCHEDULED_JOBS_TABLE"),
... )

This is the only module (with :mod:`glasswork.jobs.scheduler`) that imports boto3.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ConfigurationError, EnqueueError, MalformedMessageError
from ..message import MAX_MESSAGE_BYTES, JobMessage
from ..telemetry import sqs_message_attributes
from .base import EnqueueResult, QueueDriver, ReceivedMessage

if TYPE_CHECKING:
    from ..scheduler import ScheduledJobsTable

logger = logging.getLogger("glasswork.jobs")

#: SQS's largest per-message delay (DelaySeconds); longer delays go to the scheduler table.
MAX_SQS_DELAY_SECONDS = 900
#: SQS's largest visibility timeout, the cap of a nack's delay.
MAX_VISIBILITY_SECONDS = 43_200
#: Entries per SendMessageBatch / DeleteMessageBatch request.
SQS_BATCH_SIZE = 10
#: Message attributes set on dead-letter sends.
REASON_ATTRIBUTE = "GlassworkReason"
SOURCE_QUEUE_ATTRIBUTE = "GlassworkSourceQueue"

# FIFO group and deduplication ids: 1-128 printable ASCII characters, no spaces.
_FIFO_ID = re.compile(r"[!-~]{1,128}")
# Characters SQS accepts in message attribute values (the XML 1.0 character set).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@dataclass(frozen=True, slots=True)
class FailedEnqueue:
    """One job a batch enqueue could not send, with SQS's error code and message."""

    job_id: str
    job_name: str
    queue: str
    code: str
    message: str


class EnqueueBatchError(EnqueueError):
    """Some jobs of an ``enqueue_many`` were not sent, even after retrying them.

    Unlike other :class:`EnqueueError` s, part of the batch may have been sent: ``sent``
    holds those results, ``failed`` the jobs that were not.
    """

    def __init__(self, failed: list[FailedEnqueue], sent: list[EnqueueResult], attempts: int):
        self.failed = failed
        self.sent = sent
        shown = "; ".join(
            f"job {f.job_name!r} (id {f.job_id}) on queue {f.queue!r}: {f.code}: {f.message}"
            for f in failed[:10]
        )
        more = f"; and {len(failed) - 10} more" if len(failed) > 10 else ""
        super().__init__(
            f"{len(failed)} of {len(failed) + len(sent)} jobs were not sent after {attempts} "
            f"attempt(s): {shown}{more}. {len(sent)} were sent (see .sent); nothing else is "
            "retried for you"
        )


class SQSQueueDriver(QueueDriver):
    """Send jobs to SQS queues and, for workers, receive, ack, nack and dead-letter them.

    ``queues`` maps a job's ``queue`` name to a queue URL; a URL ending in ``.fifo`` is a
    FIFO queue. Delays up to 15 minutes use SQS ``DelaySeconds``; longer delays, and any
    delay on a FIFO queue, are written to the DynamoDB ``scheduler_table`` (see
    :mod:`glasswork.jobs.scheduler`). ``dead_letter_queues`` maps queue names to DLQ URLs;
    a queue without one uses the DLQ of its redrive policy, looked up once.

    ``client`` / ``dynamodb_client`` take ready boto3 clients (otherwise they are made on
    first use from ``region`` and ``endpoint_url``).
    """

    name = "sqs"

    def __init__(
        self,
        *,
        queues: Mapping[str, str],
        region: str | None = None,
        scheduler_table: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
        dead_letter_queues: Mapping[str, str] | None = None,
        dynamodb_client: Any = None,
        scheduler_retention: timedelta = timedelta(days=7),
        batch_retries: int = 2,
    ) -> None:
        if not isinstance(queues, Mapping) or not queues:
            raise ConfigurationError(
                "SQSQueueDriver needs queues={'default': 'https://sqs.<region>.amazonaws.com/"
                "<account>/<queue>', ...}"
            )
        for queue, url in queues.items():
            _check_url(f"queues[{queue!r}]", url)
        dead_letter_queues = dict(dead_letter_queues or {})
        for queue, url in dead_letter_queues.items():
            _check_url(f"dead_letter_queues[{queue!r}]", url)
            if queue not in queues:
                raise ConfigurationError(
                    f"dead_letter_queues names queue {queue!r}, which is not in queues "
                    f"({', '.join(sorted(queues))})"
                )
        self.queues: dict[str, str] = dict(queues)
        self.dead_letter_queues = dead_letter_queues
        self.region = region
        self.endpoint_url = endpoint_url
        self.scheduler_table = scheduler_table
        self.scheduler_retention = scheduler_retention
        self.batch_retries = batch_retries
        self._client = client
        self._dynamodb_client = dynamodb_client
        self._table: ScheduledJobsTable | None = None
        # Physical queue name (the last part of a URL or ARN) -> configured name, so
        # records from Lambda, which carry only the queue ARN, find their URL.
        self._by_physical = {url.rstrip("/").rsplit("/", 1)[-1]: q for q, url in queues.items()}
        self._discovered_dlq: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._next_queue = 0

    # -- configuration -----------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The boto3 SQS client (made on first use)."""
        if self._client is None:
            self._client = boto3.client(
                "sqs", region_name=self.region, endpoint_url=self.endpoint_url, config=_BOTO_CONFIG
            )
        return self._client

    @property
    def table(self) -> ScheduledJobsTable:
        """The DynamoDB scheduler table; a :class:`ConfigurationError` without
        ``scheduler_table``."""
        if self._table is None:
            if not self.scheduler_table:
                raise ConfigurationError(
                    "this job needs the DynamoDB scheduler table, but SQSQueueDriver has no "
                    "scheduler_table: set scheduler_table='<table name>' (create it with "
                    "glasswork.jobs.scheduler.create_scheduler_table) and run the scheduler"
                )
            from ..scheduler import ScheduledJobsTable

            self._table = ScheduledJobsTable(
                self.scheduler_table,
                client=self._dynamodb_client,
                region=self.region,
                endpoint_url=self.endpoint_url,
                retention=self.scheduler_retention,
            )
        return self._table

    def queue_name(self, queue: str) -> str:
        """The configured name for ``queue``: a configured name, a physical queue name, a
        queue URL or a queue ARN. Raises :class:`ConfigurationError` for an unknown queue."""
        if queue in self.queues:
            return queue
        physical = queue.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        found = self._by_physical.get(physical)
        if found is None:
            raise ConfigurationError(
                f"unknown queue {queue!r}: SQSQueueDriver(queues=...) configures "
                f"{', '.join(repr(q) for q in sorted(self.queues))}; add {queue!r} to queues "
                "or set the job's queue to one of these"
            )
        return found

    def queue_url(self, queue: str) -> str:
        """The URL of ``queue`` (any form :meth:`queue_name` accepts)."""
        return self.queues[self.queue_name(queue)]

    def is_fifo(self, queue: str) -> bool:
        """Whether ``queue`` is a FIFO queue (its URL ends in ``.fifo``)."""
        return self.queue_url(queue).endswith(".fifo")

    def accepts_delay(self, queue: str, delay_seconds: float) -> bool:
        """Whether SQS itself can hold a message for ``delay_seconds`` on ``queue``."""
        return delay_seconds <= MAX_SQS_DELAY_SECONDS and not self.is_fifo(queue)

    # -- producing ---------------------------------------------------------------------

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        return self._send(message, 0)

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self._route(message, delay_seconds, time.time() + delay_seconds)

    def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        if run_at.tzinfo is None:
            raise ValueError(f"enqueue_at needs an aware datetime, got naive {run_at}")
        due = run_at.timestamp()
        return self._route(message, due - time.time(), due)

    def _route(self, message: JobMessage, delay: float, due: float) -> EnqueueResult:
        """Send now, with SQS's own delay, or through the scheduler table, as ``delay``
        (seconds from now; ``due`` is the same moment as an epoch time) allows."""
        if delay <= 0:
            return self._send(message, 0)
        if self.accepts_delay(message.queue, delay):
            return self._send(message, delay)
        return self._schedule(message, due)

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        """Send ``messages`` with ``SendMessageBatch``, 10 a request (fewer when the bodies
        pass SQS's 256 KiB request limit). Entries SQS rejects are retried ``batch_retries``
        times; any still failing raise :class:`EnqueueBatchError` listing them. Messages
        SQS cannot delay go to the scheduler table one by one."""
        results: list[EnqueueResult | None] = [None] * len(messages)
        batched: dict[str, list[int]] = {}
        scheduled: list[int] = []
        # Resolve every queue first, so a bad one fails the call before anything is sent.
        for index, message in enumerate(messages):
            if delay_seconds > 0 and not self.accepts_delay(message.queue, delay_seconds):
                scheduled.append(index)
            else:
                batched.setdefault(self.queue_url(message.queue), []).append(index)

        failed: list[FailedEnqueue] = []
        due = time.time() + delay_seconds
        for index in scheduled:
            message = messages[index]
            try:
                results[index] = self._schedule(message, due)
            except EnqueueError as exc:
                cause = exc.__cause__
                code = (
                    _error_code(cause) if isinstance(cause, ClientError) else type(cause).__name__
                )
                failed.append(
                    FailedEnqueue(message.job_id, message.job_name, message.queue, code, str(exc))
                )
        attempts = 1 + max(0, self.batch_retries)
        for url, indexes in batched.items():
            for chunk in _chunks(indexes, [messages[i].encode() for i in indexes]):
                failed.extend(self._send_chunk(url, messages, chunk, delay_seconds, results))
        sent = [r for r in results if r is not None]
        if failed:
            raise EnqueueBatchError(failed, sent, attempts)
        return sent

    def _send_chunk(
        self,
        url: str,
        messages: Sequence[JobMessage],
        chunk: list[int],
        delay_seconds: float,
        results: list[EnqueueResult | None],
    ) -> list[FailedEnqueue]:
        pending = chunk
        errors: dict[int, tuple[str, str]] = {}
        for attempt in range(1 + max(0, self.batch_retries)):
            if attempt:
                time.sleep(min(1.0, 0.05 * 2**attempt))  # a little room for throttling
            entries = [
                self._batch_entry(str(i), messages[i], delay_seconds, attempt) for i in pending
            ]
            try:
                response = self.client.send_message_batch(QueueUrl=url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                # A whole-request failure (botocore has already retried throttling and
                # connection errors): every entry of it failed.
                code = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
                response = {
                    "Failed": [{"Id": e["Id"], "Code": code, "Message": str(exc)} for e in entries]
                }
            scheduled_at = _scheduled_at(delay_seconds)
            for ok in response.get("Successful", []):
                i = int(ok["Id"])
                m = messages[i]
                results[i] = EnqueueResult(ok["MessageId"], m.job_id, m.queue, scheduled_at)
                errors.pop(i, None)
            pending = []
            for bad in response.get("Failed", []):
                i = int(bad["Id"])
                errors[i] = (bad.get("Code", "?"), bad.get("Message", ""))
                pending.append(i)
            if not pending:
                break
            logger.warning(
                "SQS rejected %d of %d batch entries for %s; retrying them",
                len(pending),
                len(entries),
                url,
            )
        return [
            FailedEnqueue(messages[i].job_id, messages[i].job_name, messages[i].queue, *errors[i])
            for i in pending
        ]

    def _batch_entry(
        self, entry_id: str, message: JobMessage, delay_seconds: float, attempt: int
    ) -> dict[str, Any]:
        """One SendMessageBatch entry (``attempt`` counts retries of this entry from 0)."""
        return {"Id": entry_id, **self._send_params(message, delay_seconds)}

    def _send_params(self, message: JobMessage, delay_seconds: float) -> dict[str, Any]:
        params: dict[str, Any] = {"MessageBody": message.encode()}
        if message.trace and (attributes := sqs_message_attributes(message)):
            params["MessageAttributes"] = attributes  # the trace context, for any consumer
        if self.is_fifo(message.queue):
            params["MessageGroupId"] = fifo_id(message.group_id or message.job_name)
            params["MessageDeduplicationId"] = deduplication_id(message)
        elif delay_seconds > 0:
            params["DelaySeconds"] = min(MAX_SQS_DELAY_SECONDS, math.ceil(delay_seconds))
        return params

    def _send(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        url = self.queue_url(message.queue)
        try:
            response = self.client.send_message(
                QueueUrl=url, **self._send_params(message, delay_seconds)
            )
        except (ClientError, BotoCoreError) as exc:
            raise EnqueueError(
                f"SQS did not take job {message.job_name!r} (id {message.job_id}) for queue "
                f"{message.queue!r} ({url}): {exc}"
            ) from exc
        return EnqueueResult(
            response["MessageId"], message.job_id, message.queue, _scheduled_at(delay_seconds)
        )

    def _schedule(self, message: JobMessage, due: float) -> EnqueueResult:
        self.queue_url(message.queue)  # an unknown queue fails now, not at dispatch
        if not self.scheduler_table:
            fifo = self.is_fifo(message.queue)
            why = (
                f"queue {message.queue!r} is FIFO, and SQS FIFO queues take no per-message delay"
                if fifo
                else f"the delay is over SQS's {MAX_SQS_DELAY_SECONDS // 60}-minute limit"
            )
            raise ConfigurationError(
                f"job {message.job_name!r} is due in {due - time.time():.0f}s but {why}: set "
                "SQSQueueDriver(scheduler_table='<DynamoDB table>') and run the scheduler "
                "(glasswork.jobs.create_scheduler_handler)"
            )
        try:
            key = self.table.put(message, due)
        except (ClientError, BotoCoreError) as exc:
            raise EnqueueError(
                f"could not store job {message.job_name!r} (id {message.job_id}), due "
                f"{datetime.fromtimestamp(due, UTC).isoformat()}, in the scheduler table "
                f"{self.scheduler_table!r}: {exc}"
            ) from exc
        return EnqueueResult(
            f"scheduled:{key}", message.job_id, message.queue, datetime.fromtimestamp(due, UTC)
        )

    # -- consuming ---------------------------------------------------------------------

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """Receive up to ``max_messages`` (SQS gives at most 10 per request) from ``queues``
        (None: every configured queue), long polling up to ``wait_seconds`` (at most 20).

        With several queues the wait is shared between them and the starting queue rotates
        each call, so a busy queue does not starve the others."""
        names = [self.queue_name(q) for q in queues] if queues is not None else list(self.queues)
        if not names:
            return []
        with self._lock:
            start = self._next_queue % len(names)
            self._next_queue += 1
        names = names[start:] + names[:start]
        wait = min(20, math.ceil(max(0.0, wait_seconds) / len(names)))
        received: list[ReceivedMessage] = []
        for name in names:
            wanted = min(10, max_messages - len(received))
            if wanted <= 0:
                break
            received.extend(self._receive_from(name, wanted, 0 if received else wait))
        return received

    def _receive_from(self, queue: str, count: int, wait: int) -> list[ReceivedMessage]:
        url = self.queues[queue]
        response = self.client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        return [
            ReceivedMessage(
                body=m.get("Body", ""),
                receipt=m["ReceiptHandle"],
                attempt=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                queue=queue,
                message_id=m["MessageId"],
                attributes={**m.get("Attributes", {}), "queue_url": url},
            )
            for m in response.get("Messages", [])
        ]

    def ack(self, received: ReceivedMessage) -> None:
        """Delete the message (``DeleteMessage``)."""
        self.client.delete_message(
            QueueUrl=self._received_url(received), ReceiptHandle=received.receipt
        )

    def ack_many(self, received: Iterable[ReceivedMessage]) -> None:
        """Delete several messages with ``DeleteMessageBatch``, 10 a request; raises
        :class:`RuntimeError` naming the entries SQS refused."""
        by_url: dict[str, list[ReceivedMessage]] = {}
        for r in received:
            by_url.setdefault(self._received_url(r), []).append(r)
        failures: list[str] = []
        for url, items in by_url.items():
            for start in range(0, len(items), SQS_BATCH_SIZE):
                chunk = items[start : start + SQS_BATCH_SIZE]
                response = self.client.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": r.receipt} for i, r in enumerate(chunk)
                    ],
                )
                failures.extend(
                    f"{chunk[int(f['Id'])].message_id}: {f.get('Code')}: {f.get('Message')}"
                    for f in response.get("Failed", [])
                )
        if failures:
            raise RuntimeError(f"SQS did not delete {len(failures)} message(s): {failures}")

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        """Make the message visible again after ``delay_seconds`` (``ChangeMessageVisibility``;
        SQS caps it at 12 hours). The retry backoff itself comes from the job's
        :class:`~glasswork.jobs.RetryPolicy`."""
        timeout = min(MAX_VISIBILITY_SECONDS, max(0, math.ceil(delay_seconds)))
        try:
            self.client.change_message_visibility(
                QueueUrl=self._received_url(received),
                ReceiptHandle=received.receipt,
                VisibilityTimeout=timeout,
            )
        except ClientError as exc:
            if _error_code(exc) != "AWS.SimpleQueueService.MessageNotInflight":
                raise
            # Already visible again (its lease ran out): there is nothing left to release.
            logger.debug("nack of message %s: no longer in flight", received.message_id)

    def _received_url(self, received: ReceivedMessage) -> str:
        url = received.attributes.get("queue_url")
        if isinstance(url, str):
            return url
        try:
            return self.queue_url(received.queue)
        except ConfigurationError:
            arn = received.attributes.get("eventSourceARN")
            if isinstance(arn, str) and arn:
                return self.queue_url(arn)
            raise

    # -- dead letters ------------------------------------------------------------------

    def dead_letter(self, body: str, reason: str, *, queue: str | None = None) -> bool:
        """Send ``body`` to the dead-letter queue of ``queue``, with ``reason`` and the source
        queue as message attributes. The DLQ is ``dead_letter_queues[queue]`` or else the
        ``deadLetterTargetArn`` of the queue's redrive policy; returns False when the queue
        has neither.

        A queue this driver does not know raises :class:`ConfigurationError` rather than
        return False: the worker then leaves the message on its queue, where the queue's
        redrive policy still catches it, instead of dropping it."""
        name = self.queue_name(queue or "default")
        dlq = self.dead_letter_queue_url(name)
        if dlq is None:
            return False
        params: dict[str, Any] = {
            "QueueUrl": dlq,
            "MessageBody": body,
            "MessageAttributes": _dead_letter_attributes(body, reason, name),
        }
        if dlq.endswith(".fifo"):
            digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
            params["MessageGroupId"] = fifo_id(_group_of(body) or "dead-letter")
            params["MessageDeduplicationId"] = digest
        self.client.send_message(**params)
        return True

    def dead_letter_queue_url(self, queue: str) -> str | None:
        """The DLQ URL for ``queue``: configured, or from its redrive policy (cached)."""
        name = self.queue_name(queue)
        configured = self.dead_letter_queues.get(name)
        if configured is not None:
            return configured
        if name not in self._discovered_dlq:
            self._discovered_dlq[name] = self._discover_dlq(self.queues[name])
        return self._discovered_dlq[name]

    def _discover_dlq(self, url: str) -> str | None:
        response = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
        policy = response.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            logger.warning("queue %s has no redrive policy and no DLQ is configured", url)
            return None
        target = str(json.loads(policy).get("deadLetterTargetArn", ""))
        parts = target.split(":")
        if len(parts) != 6:
            return None
        account, dlq_name = parts[4], parts[5]
        # A DLQ lives in its source queue's account and region, so its URL is the source URL
        # with the last two parts swapped (no sqs:GetQueueUrl permission needed).
        base = url.rstrip("/").rsplit("/", 2)[0]
        return f"{base}/{account}/{dlq_name}"

    # -- monitoring --------------------------------------------------------------------

    def stats(self, queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """Approximate message counts per queue: ``visible``, ``in_flight``, ``delayed``."""
        names = [self.queue_name(q) for q in queues] if queues is not None else list(self.queues)
        counts = {}
        for name in names:
            attributes = self.client.get_queue_attributes(
                QueueUrl=self.queues[name],
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            ).get("Attributes", {})
            counts[name] = {
                "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
                "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
            }
        return counts


# -- helpers ------------------------------------------------------------------------------


def fifo_id(value: str) -> str:
    """``value`` as a FIFO group or deduplication id: kept when SQS accepts it (1-128
    printable ASCII characters), else its SHA-256, so equal values still map together."""
    if _FIFO_ID.fullmatch(value):
        return value
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def deduplication_id(message: JobMessage) -> str:
    """The FIFO deduplication id: ``<job name>:<unique key>`` for jobs with a unique key (so
    SQS drops a repeat within its 5-minute window), else the job id."""
    if message.unique_key is not None:
        return fifo_id(f"{message.job_name}:{message.unique_key}")
    return fifo_id(message.job_id)


def _check_url(setting: str, url: object) -> None:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ConfigurationError(f"{setting} must be an SQS queue URL (https://...), got {url!r}")


def _chunks(indexes: list[int], bodies: list[str]) -> Iterable[list[int]]:
    """Split into SendMessageBatch requests: at most 10 entries and 256 KiB of bodies."""
    chunk: list[int] = []
    size = 0
    for index, body in zip(indexes, bodies, strict=True):
        length = len(body.encode("utf-8"))
        if chunk and (len(chunk) == SQS_BATCH_SIZE or size + length > MAX_MESSAGE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(index)
        size += length
    if chunk:
        yield chunk


def _scheduled_at(delay_seconds: float) -> datetime | None:
    if delay_seconds <= 0:
        return None
    return datetime.now(UTC) + timedelta(seconds=delay_seconds)


def _error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError (e.g. ``InvalidParameterValue``)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _group_of(body: str) -> str | None:
    try:
        message = JobMessage.from_json(body)
    except MalformedMessageError:
        return None
    return message.group_id or message.job_name


def _dead_letter_attributes(body: str, reason: str, queue: str) -> dict[str, Any]:
    # The reason rides along as an attribute, within what the message's size leaves.
    room = MAX_MESSAGE_BYTES - len(body.encode("utf-8")) - 256
    text = _NOT_XML.sub("?", reason)[: max(0, min(4096, room))] or "unknown"
    return {
        REASON_ATTRIBUTE: {"DataType": "String", "StringValue": text},
        SOURCE_QUEUE_ATTRIBUTE: {"DataType": "String", "StringValue": queue},
    }
