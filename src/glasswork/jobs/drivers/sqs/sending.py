"""Sending to SQS: the parameters of a send (:class:`Sender`), ``SendMessageBatch``
chunking, the retry of entries SQS rejects (:class:`BatchSend`), and the results and errors
of a send; shared by the sync driver and the async (aiobotocore) path."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...aws.errors import error_code
from ...errors import EnqueueError
from ...message import JobMessage
from ...telemetry import sqs_message_attributes
from ..records import EnqueueResult, FailedEnqueue
from .clients import Clients
from .fifo import deduplication_id, fifo_id
from .queues import MAX_SQS_DELAY_SECONDS, QueueDirectory

logger = logging.getLogger("glasswork.jobs")

#: Entries per SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch request.
SQS_BATCH_SIZE = 10


class Sender:
    """Sends one driver's messages to its queues (``directory``) on its SQS client:
    ``SendMessage`` one at a time, ``SendMessageBatch`` 10 (or a request's size limit) at a
    time, each rejected entry retried ``batch_retries`` times. ``by_unique_key``: FIFO
    deduplication ids come from unique keys (when no unique-key table enforces them)."""

    def __init__(
        self,
        directory: QueueDirectory,
        clients: Clients,
        *,
        batch_retries: int,
        by_unique_key: bool,
    ) -> None:
        self.directory = directory
        self.clients = clients
        self.batch_retries = batch_retries
        self.by_unique_key = by_unique_key

    def params(self, message: JobMessage, delay_seconds: float) -> dict[str, Any]:
        """``SendMessage`` parameters (less the queue URL); shared with the async path."""
        limit = self.directory.message_limit(message.queue)
        params: dict[str, Any] = {"MessageBody": message.encode(limit)}
        if message.trace and (attributes := sqs_message_attributes(message, limit)):
            params["MessageAttributes"] = attributes  # the trace context, for any consumer
        if self.directory.is_fifo(message.queue):
            # FIFO keeps its groups (the order within one); a fairness key changes nothing.
            params["MessageGroupId"] = fifo_id(message.group_id or message.job_name)
            params["MessageDeduplicationId"] = deduplication_id(
                message, by_unique_key=self.by_unique_key
            )
            return params
        if message.fairness_key is not None:
            # The tenant of an SQS fair queue (a standard queue: no order, no dedup).
            params["MessageGroupId"] = fifo_id(message.fairness_key)
        if delay_seconds > 0:
            params["DelaySeconds"] = min(MAX_SQS_DELAY_SECONDS, math.ceil(delay_seconds))
        return params

    def batch_entry(
        self, entry_id: str, message: JobMessage, delay_seconds: float, attempt: int
    ) -> dict[str, Any]:
        """One ``SendMessageBatch`` entry (``attempt`` counts retries of this entry from 0)."""
        return {"Id": entry_id, **self.params(message, delay_seconds)}

    def send(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        """``SendMessage`` with SQS's own delay (at most 15 minutes)."""
        url = self.directory.queue_url(message.queue)
        try:
            response = self.clients.sqs.send_message(
                QueueUrl=url, **self.params(message, delay_seconds)
            )
        except (ClientError, BotoCoreError) as exc:
            raise send_error(message, url, exc) from exc
        return sent(message, response, delay_seconds)

    def chunks(
        self, url: str, messages: Sequence[JobMessage], indexes: list[int]
    ) -> Iterable[list[int]]:
        """``indexes`` split into ``SendMessageBatch`` requests: at most 10 entries, and
        bodies within the queue's size limit in total."""
        limit = self.directory.limit_of_url(url)
        return chunks(indexes, [messages[i].encode() for i in indexes], limit)

    def send_chunk(
        self,
        url: str,
        messages: Sequence[JobMessage],
        chunk: list[int],
        delay_seconds: float,
        results: list[EnqueueResult | None],
    ) -> list[FailedEnqueue]:
        """Send ``messages[chunk]`` in one request, retrying the entries SQS rejects; fills
        ``results`` and returns what still failed."""
        batch = BatchSend(self, url, messages, chunk, delay_seconds, results)
        for attempt in range(batch.attempts):
            if attempt:
                time.sleep(batch.pause(attempt))
            entries = batch.entries(attempt)
            try:
                response = self.clients.sqs.send_message_batch(QueueUrl=url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                response = batch.failed_request(exc, entries)
            if batch.settle(response):
                break
        return batch.failures()


class BatchSend:
    """One ``SendMessageBatch`` chunk and its retries of the entries SQS rejects; the sync
    driver and the async path each make the requests."""

    def __init__(
        self,
        sender: Sender,
        url: str,
        messages: Sequence[JobMessage],
        chunk: list[int],
        delay_seconds: float,
        results: list[EnqueueResult | None],
    ) -> None:
        self.sender = sender
        self.url = url
        self.messages = messages
        self.pending = chunk
        self.delay_seconds = delay_seconds
        self.results = results
        self.errors: dict[int, tuple[str, str]] = {}
        self.attempts = 1 + max(0, sender.batch_retries)

    @staticmethod
    def pause(attempt: int) -> float:
        return min(1.0, 0.05 * 2.0**attempt)  # a little room for throttling

    def entries(self, attempt: int) -> list[dict[str, Any]]:
        return [
            self.sender.batch_entry(str(i), self.messages[i], self.delay_seconds, attempt)
            for i in self.pending
        ]

    @staticmethod
    def failed_request(exc: Exception, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """A whole-request failure (botocore has already retried throttling and connection
        errors): every entry of it failed."""
        code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        return {"Failed": [{"Id": e["Id"], "Code": code, "Message": str(exc)} for e in entries]}

    def settle(self, response: Mapping[str, Any]) -> bool:
        """Record a response; True when nothing is left to retry."""
        scheduled_at = due_time(self.delay_seconds)
        for ok in response.get("Successful", []):
            i = int(ok["Id"])
            m = self.messages[i]
            self.results[i] = EnqueueResult(ok["MessageId"], m.job_id, m.queue, scheduled_at)
            self.errors.pop(i, None)
        tried = len(self.pending)
        self.pending = []
        for bad in response.get("Failed", []):
            i = int(bad["Id"])
            self.errors[i] = (bad.get("Code", "?"), bad.get("Message", ""))
            self.pending.append(i)
        if self.pending:
            logger.warning(
                "SQS rejected %d of %d batch entries for %s; retrying them",
                len(self.pending),
                tried,
                self.url,
            )
        return not self.pending

    def failures(self) -> list[FailedEnqueue]:
        return [
            FailedEnqueue(m.job_id, m.job_name, m.queue, *self.errors[i])
            for i in self.pending
            for m in (self.messages[i],)
        ]


def chunks(indexes: list[int], bodies: list[str], limit: int) -> Iterable[list[int]]:
    """Split into SendMessageBatch requests: at most 10 entries and ``limit`` bytes of
    bodies."""
    chunk: list[int] = []
    size = 0
    for index, body in zip(indexes, bodies, strict=True):
        length = len(body.encode("utf-8"))
        if chunk and (len(chunk) == SQS_BATCH_SIZE or size + length > limit):
            yield chunk
            chunk, size = [], 0
        chunk.append(index)
        size += length
    if chunk:
        yield chunk


def send_error(message: JobMessage, url: str, exc: Exception) -> EnqueueError:
    """The error for a ``SendMessage`` SQS refused (or that never reached it)."""
    return EnqueueError(
        f"SQS did not take job {message.job_name!r} (id {message.job_id}) for queue "
        f"{message.queue!r} ({url}): {exc}"
    )


def sent(message: JobMessage, response: Mapping[str, Any], delay_seconds: float) -> EnqueueResult:
    """The result of a ``SendMessage`` SQS took."""
    return EnqueueResult(
        response["MessageId"], message.job_id, message.queue, due_time(delay_seconds)
    )


def due_time(delay_seconds: float) -> datetime | None:
    if delay_seconds <= 0:
        return None
    return datetime.now(UTC) + timedelta(seconds=delay_seconds)
