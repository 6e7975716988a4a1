"""Running a mock driver's jobs through the real Lambda path (``MockQueueDriver.drain``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...errors import BatchRetryError
from ...testing import sqs_record
from ..records import ReceivedMessage


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What :meth:`MockQueueDriver.drain` ran: deliveries made, how many were reported for
    retry, and how many messages went to the dead letter."""

    deliveries: int
    retried: int
    dead_lettered: int


class Drainable(Protocol):
    """What :func:`drain` needs of the mock driver."""

    @property
    def dead_letters(self) -> Sequence[object]: ...

    def receive(
        self,
        queues: Sequence[str] | None = None,
        max_messages: int = 10,
        wait_seconds: float = 0.0,
        *,
        include_delayed: bool = False,
    ) -> list[ReceivedMessage]: ...

    def ack(self, received: ReceivedMessage) -> None: ...

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None: ...


def drain(
    driver: Drainable,
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    *,
    include_delayed: bool,
    max_deliveries: int,
) -> DrainResult:
    """Hand ``driver``'s jobs to the Lambda ``handler`` as SQS events until none is left
    (see :meth:`MockQueueDriver.drain`)."""
    deliveries = retried = 0
    dead_before = len(driver.dead_letters)
    while batch := driver.receive(max_messages=10, include_delayed=include_delayed):
        deliveries += len(batch)
        if deliveries > max_deliveries:
            for r in batch:
                driver.nack(r)
            raise RuntimeError(
                f"drain stopped after {max_deliveries} deliveries: a job keeps failing "
                "or enqueuing more jobs"
            )
        event = {
            "Records": [
                sqs_record(
                    r.body,
                    message_id=r.message_id,
                    receipt_handle=str(r.receipt),
                    receive_count=r.attempt,
                    queue=r.queue,
                )
                for r in batch
            ]
        }
        try:
            response = handler(event, None)
        except BatchRetryError as exc:  # Lambda returns the batch (finished ones deleted)
            response = {"batchItemFailures": [{"itemIdentifier": i} for i in exc.retried]}
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        for r in batch:
            if r.message_id in failed:
                retried += 1
                driver.nack(r)  # no-op when the worker already nacked it with its backoff
            else:
                driver.ack(r)
    return DrainResult(deliveries, retried, len(driver.dead_letters) - dead_before)
