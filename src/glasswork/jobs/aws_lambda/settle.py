"""What the Lambda worker does with a record's outcome besides the batch response.

* :class:`~glasswork.jobs.Retry`: the job's backoff, as the message's visibility timeout,
  through the driver when it can (SQS); the record is reported for retry.
* :class:`~glasswork.jobs.DeadLetter`: the driver's dead letter; with no driver, the DLQ of
  the record's queue, found from its ``eventSourceARN`` and redrive policy
  (:mod:`glasswork.jobs.aws_lambda.source_queues`). When the dead letter cannot be kept (no DLQ, no
  permission, a failed send), the record is reported for retry instead, so SQS keeps it and
  its redrive policy applies: a failed message kept nowhere is never deleted.
* Finished records of a batch the worker must raise for are deleted first (:meth:`ack`), so
  Lambda returning the batch does not run them again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..drivers.contract import QueueDriver, ReceivedMessage
from ..execution import DeadLetter, DeadLetterSender, Outcome, Retry
from .source_queues import RecordQueues, in_lambda

Record = Mapping[str, Any]

RETRY = "retry"
NOT_KEPT = "dead letter not kept"


class Settler:
    """Settles outcomes for one worker: ``settler(record, outcome)`` returns why the record
    must be reported for retry, or None."""

    def __init__(self, driver: QueueDriver | None, queues: RecordQueues, log: logging.Logger):
        self.driver = driver
        self.queues = queues
        self.log = log
        # Whether the driver's dead_letter takes the traceback: decided once, here.
        self.dead_letters = DeadLetterSender(driver)

    def __call__(self, record: Any, outcome: Outcome) -> str | None:
        if isinstance(outcome, Retry):
            self._delay_retry(record, outcome)
            return RETRY
        if isinstance(outcome, DeadLetter):
            return None if self._dead_letter(record, outcome) else NOT_KEPT
        return None  # Done, Discard

    def keep(self, body: str, outcome: DeadLetter, queue: str) -> str | None:
        """Hand a dead letter to the driver: None when it is kept, else why not."""
        if self.driver is None:
            return "no driver is configured to keep it"
        try:
            kept = self.dead_letters.send(body, outcome, queue)
        except Exception as exc:
            return f"the dead-letter send failed: {type(exc).__name__}: {exc}"
        if not kept:
            target = outcome.message.queue if outcome.message is not None else queue
            return f"the {self.driver.name} driver has no dead letter for queue {target!r}"
        return None

    def ack(self, records: Iterable[Record]) -> None:
        """Delete finished records' messages (before the worker raises for their batch)."""
        for record in records:
            receipt = record.get("receiptHandle")
            if not receipt:
                continue
            try:
                if self.driver is not None:
                    self.driver.ack(_received(record))
                else:
                    self.queues.delete(str(record.get("eventSourceARN", "")), receipt)
            except Exception as exc:
                self.log.warning(
                    "could not delete finished message %s (%s: %s); it will run again when "
                    "Lambda returns its batch",
                    record.get("messageId"),
                    type(exc).__name__,
                    exc,
                )

    def _dead_letter(self, record: Any, outcome: DeadLetter) -> bool:
        if not isinstance(record, Mapping):  # not an SQS record at all: keep what it was
            record = {"body": str(record)}
        body = record.get("body")
        text = body if isinstance(body, str) else "" if body is None else str(body)
        arn = record.get("eventSourceARN")
        if self.driver is not None or not isinstance(arn, str):
            why = self.keep(text, outcome, queue_name(record))
        elif not in_lambda():
            why = "no driver is configured, and outside Lambda the worker does not look up DLQs"
        else:
            why = self.queues.dead_letter(arn, text, outcome.reason, outcome.traceback)
        if why is None:
            return True
        self.log.error(
            "could not dead-letter message %s: %s. Reporting it for retry so SQS keeps it "
            "(the queue's redrive policy applies). Reason: %s; body: %.1000s",
            record.get("messageId"),
            why,
            outcome.reason,
            text,
        )
        return False

    def _delay_retry(self, record: Record, outcome: Retry) -> None:
        """Apply the job's backoff by pushing the message's visibility out, when the driver
        can (SQS); otherwise SQS redelivers after the queue's visibility timeout."""
        if self.driver is None:
            return
        try:
            self.driver.nack(_received(record), outcome.delay)
        except NotImplementedError:
            pass
        except Exception:
            self.log.warning(
                "could not set the retry delay of message %s",
                record.get("messageId"),
                exc_info=True,
            )


def queue_name(record: Record) -> str:
    """The physical queue name of a record (the last part of its ARN)."""
    return str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1] or "default"


def _received(record: Record) -> ReceivedMessage:
    attributes = record.get("attributes")
    try:
        attempt = int(attributes["ApproximateReceiveCount"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        attempt = 1
    return ReceivedMessage(
        body=str(record.get("body") or ""),
        receipt=record.get("receiptHandle"),
        attempt=attempt,
        queue=queue_name(record),
        message_id=str(record.get("messageId")),
        attributes={"eventSourceARN": record.get("eventSourceARN")},
    )
