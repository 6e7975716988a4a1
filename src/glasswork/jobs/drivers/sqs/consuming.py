"""Consuming from SQS: receive across queues, ack, nack and lease extension, the worker's
side of :class:`~glasswork.jobs.SQSQueueDriver`."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator, Sequence

from botocore.exceptions import ClientError

from ...aws.errors import error_code
from ...errors import ConfigurationError
from ..records import ReceivedMessage
from .attempts import attempts_before
from .clients import Clients
from .queues import QueueDirectory
from .sending import SQS_BATCH_SIZE

logger = logging.getLogger("glasswork.jobs")

#: SQS's largest visibility timeout, the cap of a nack's delay and of a lease extension.
MAX_VISIBILITY_SECONDS = 43_200


class SQSConsumer:
    """Receive, ack, nack and extend leases on one driver's queues (``directory``), with its
    SQS client."""

    def __init__(self, directory: QueueDirectory, clients: Clients) -> None:
        self.directory = directory
        self.clients = clients
        self._lock = threading.Lock()
        self._next_queue = 0
        self._visibility: float | None = None

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """Receive up to ``max_messages`` (SQS gives at most 10 per request) from ``queues``
        (None: every configured queue), long polling up to ``wait_seconds`` (at most 20).

        With several queues the wait is shared between them and the starting queue rotates
        each call, so a busy queue does not starve the others."""
        names = self.directory.names(queues)
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
        url = self.directory.urls[queue]
        response = self.clients.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=[
                "ApproximateReceiveCount",
                "SentTimestamp",
                "MessageGroupId",
            ],
            MessageAttributeNames=["All"],
        )
        return [
            ReceivedMessage(
                body=m.get("Body", ""),
                receipt=m["ReceiptHandle"],
                # A copy re-sent for a throttle carries the attempts spent before it.
                attempt=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1))
                + attempts_before(m.get("MessageAttributes")),
                queue=queue,
                message_id=m["MessageId"],
                attributes={**m.get("Attributes", {}), "queue_url": url},
            )
            for m in response.get("Messages", [])
        ]

    def ack(self, received: ReceivedMessage) -> None:
        """Delete the message (``DeleteMessage``)."""
        self.clients.sqs.delete_message(
            QueueUrl=self._received_url(received), ReceiptHandle=received.receipt
        )

    def ack_many(self, received: Iterable[ReceivedMessage]) -> None:
        """Delete several messages with ``DeleteMessageBatch``, 10 a request; raises
        :class:`RuntimeError` naming the entries SQS refused."""
        failures: list[str] = []
        for url, chunk in self._batches(received):
            response = self.clients.sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": r.receipt} for i, r in enumerate(chunk)],
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
            self.clients.sqs.change_message_visibility(
                QueueUrl=self._received_url(received),
                ReceiptHandle=received.receipt,
                VisibilityTimeout=timeout,
            )
        except ClientError as exc:
            if error_code(exc) != "AWS.SimpleQueueService.MessageNotInflight":
                raise
            # Already visible again (its lease ran out): there is nothing left to release.
            logger.debug("nack of message %s: no longer in flight", received.message_id)

    # -- leases: what the long-running worker renews for long jobs -----------------------

    @property
    def visibility_timeout(self) -> float:
        """How long a received message stays hidden: the shortest ``VisibilityTimeout`` of
        the configured queues, read from SQS on first use."""
        if self._visibility is None:
            self._visibility = float(
                min(
                    int(
                        self.clients.sqs.get_queue_attributes(
                            QueueUrl=url, AttributeNames=["VisibilityTimeout"]
                        )["Attributes"]["VisibilityTimeout"]
                    )
                    for url in self.directory.urls.values()
                )
            )
        return self._visibility

    def extend_leases(self, received: Sequence[ReceivedMessage], seconds: float) -> int:
        """Keep received messages hidden ``seconds`` more from now
        (``ChangeMessageVisibilityBatch``, 10 a request; at most 12 hours, and SQS allows 12
        hours in all from a message's first receive). Returns how many are still held: a
        message whose visibility already ran out, or that reached the cap, is not."""
        timeout = min(MAX_VISIBILITY_SECONDS, max(0, math.ceil(seconds)))
        held = 0
        for url, chunk in self._batches(received):
            try:
                response = self.clients.sqs.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": r.receipt, "VisibilityTimeout": timeout}
                        for i, r in enumerate(chunk)
                    ],
                )
                held += len(response.get("Successful", []))
            except ClientError as exc:
                if error_code(exc) != "InvalidParameterValue":
                    raise
                # A message past its 12 hours can fail the whole request: one by one.
                held += sum(self._extend_one(url, r, timeout) for r in chunk)
        return held

    def _extend_one(self, url: str, received: ReceivedMessage, timeout: int) -> bool:
        try:
            self.clients.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=received.receipt, VisibilityTimeout=timeout
            )
        except ClientError:
            return False
        return True

    def _batches(
        self, received: Iterable[ReceivedMessage]
    ) -> Iterator[tuple[str, list[ReceivedMessage]]]:
        """(queue URL, up to 10 of its messages): the requests of a batch call."""
        by_url: dict[str, list[ReceivedMessage]] = {}
        for r in received:
            by_url.setdefault(self._received_url(r), []).append(r)
        for url, items in by_url.items():
            for start in range(0, len(items), SQS_BATCH_SIZE):
                yield url, items[start : start + SQS_BATCH_SIZE]

    def url_of(self, received: ReceivedMessage) -> str:
        """The URL of the queue ``received`` came from."""
        return self._received_url(received)

    def _received_url(self, received: ReceivedMessage) -> str:
        url = received.attributes.get("queue_url")
        if isinstance(url, str):
            return url
        try:
            return self.directory.queue_url(received.queue)
        except ConfigurationError:
            arn = received.attributes.get("eventSourceARN")
            if isinstance(arn, str) and arn:
                return self.directory.queue_url(arn)
            raise
