"""Sending to SQS in batches: ``SendMessageBatch`` chunking, the retry of entries SQS
rejects, and the results and errors of a send; shared by the sync driver and the async
(aiobotocore) path."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import ClientError

from ...aws.errors import error_code
from ...errors import EnqueueError
from ...message import JobMessage
from ..records import EnqueueResult, FailedEnqueue

logger = logging.getLogger("glasswork.jobs")

#: Entries per SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch request.
SQS_BATCH_SIZE = 10


class BatchSender(Protocol):
    """What :class:`BatchSend` needs of the driver."""

    batch_retries: int

    def _batch_entry(
        self, entry_id: str, message: JobMessage, delay_seconds: float, attempt: int
    ) -> dict[str, Any]: ...


class BatchSend:
    """One ``SendMessageBatch`` chunk and its retries of the entries SQS rejects; the sync
    driver and the async path each make the requests."""

    def __init__(
        self,
        driver: BatchSender,
        url: str,
        messages: Sequence[JobMessage],
        chunk: list[int],
        delay_seconds: float,
        results: list[EnqueueResult | None],
    ) -> None:
        self.driver = driver
        self.url = url
        self.messages = messages
        self.pending = chunk
        self.delay_seconds = delay_seconds
        self.results = results
        self.errors: dict[int, tuple[str, str]] = {}
        self.attempts = 1 + max(0, driver.batch_retries)

    @staticmethod
    def pause(attempt: int) -> float:
        return min(1.0, 0.05 * 2.0**attempt)  # a little room for throttling

    def entries(self, attempt: int) -> list[dict[str, Any]]:
        return [
            self.driver._batch_entry(str(i), self.messages[i], self.delay_seconds, attempt)
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
