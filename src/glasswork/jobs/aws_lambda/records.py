"""The records of an SQS event as the long-running worker sees its deliveries: each record
is read once, here, into a :class:`LambdaMessage` (a
:class:`~glasswork.jobs.drivers.records.ReceivedMessage`); the batch loop, the settling,
dead letters, FIFO groups and logs read that, never the record.

A record that is not what SQS sends (not an object, a body that is not text, no or a bad
``ApproximateReceiveCount``) still becomes a message, read with care and logged: it runs,
and fails, as any other body would, so it is dead-lettered or retried, never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..drivers.records import ReceivedMessage

_new = object.__new__
# ApproximateReceiveCount as SQS writes it, read: int() of a str costs more than the rest
# of a record's read (bench/lambda_dispatch.py); other values go through int().
_COUNTS = {str(n): n for n in range(1, 101)}


@dataclass(slots=True)
class LambdaMessage(ReceivedMessage):
    """One record of a Lambda SQS event. ``receipt`` is its ``receiptHandle`` (None
    without one), ``queue`` the physical name of its queue, ``attributes`` the record's SQS
    attributes (what ``ctx.attributes`` shows the job), ``source_arn`` its
    ``eventSourceARN`` ("" without one): how a worker without a driver finds the queue."""

    source_arn: str = ""

    @property
    def group(self) -> Any:
        """The FIFO ``MessageGroupId`` (None when missing: such messages form one group)."""
        return self.attributes.get("MessageGroupId")


class RecordReader:
    """Reads the ``Records`` of SQS events into :class:`LambdaMessage` s; logs what is
    malformed to ``log``."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._queues: dict[str, str] = {}  # queue names by ARN: a batch has one source

    def read(self, records: Sequence[Any]) -> list[LambdaMessage]:
        """One message per record, in order."""
        messages: list[LambdaMessage] = []
        append = messages.append
        last_arn: Any = None
        queue = ""
        for record in records:
            # LambdaMessage(...) without its __init__ (slots set directly) and the queue
            # name looked up once per source: the cheapest read, once per message of every
            # batch (bench/lambda_dispatch.py).
            message = _new(LambdaMessage)
            try:
                body = message.body = record["body"]
                attributes = message.attributes = record["attributes"]
                count = attributes["ApproximateReceiveCount"]
                try:
                    message.attempt = _COUNTS[count]
                except KeyError:
                    message.attempt = int(count)
                arn = message.source_arn = record["eventSourceARN"]
                message.receipt = record["receiptHandle"]
                message_id = message.message_id = record["messageId"]
                if type(body) is not str or type(message_id) is not str:
                    raise TypeError
                if arn != last_arn:
                    if type(arn) is not str:
                        raise TypeError
                    queue = self._queues.get(arn) or self._queue_of(arn)
                    last_arn = arn
            except (KeyError, TypeError, ValueError):
                append(self._read_carefully(record))
                continue
            message.queue = queue
            append(message)
        return messages

    def _queue_of(self, arn: str) -> str:
        name = self._queues[arn] = queue_name(arn)
        return name

    def _read_carefully(self, record: Any) -> LambdaMessage:
        if not isinstance(record, Mapping):
            self.log.error("an SQS record is not an object: %.200r", record)
            return LambdaMessage(str(record), None, 1, "default", "", {}, "")
        body = record.get("body")
        text = body if isinstance(body, str) else "" if body is None else str(body)
        message_id = record.get("messageId")
        message_id = message_id if isinstance(message_id, str) else ""
        arn = record.get("eventSourceARN")
        arn = arn if isinstance(arn, str) else ""
        attributes = record.get("attributes")
        attributes = dict(attributes) if isinstance(attributes, Mapping) else {}
        count = attributes.get("ApproximateReceiveCount")
        try:
            attempt = int(count)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.log.warning(
                "record %s: ApproximateReceiveCount %r is not an integer; counting this "
                "delivery as attempt 1",
                message_id or "(no messageId)",
                count,
            )
            attempt = 1
        receipt = record.get("receiptHandle")
        return LambdaMessage(
            text,
            receipt if isinstance(receipt, str) and receipt else None,
            max(1, attempt),
            queue_name(arn),
            message_id,
            attributes,
            arn,
        )


def queue_name(arn: str) -> str:
    """The physical queue name of an ``eventSourceARN`` (its last part; ``default``
    without one)."""
    return arn.rsplit(":", 1)[-1] or "default"
