"""Helpers for tests: build the events (and the context) AWS Lambda hands a worker.

The in-memory driver for tests is :class:`~glasswork.jobs.MockQueueDriver` (exported by
``glasswork.jobs``); its records (``DrainResult``, ``EnqueuedJob``, ``DeadLetterEntry``) are
in :mod:`glasswork.jobs.drivers`.

>>> event = sqs_event([message.to_json()])                 # doctest: +SKIP
>>> handler(event, None)                                   # doctest: +SKIP
{'batchItemFailures': []}

Against a real (or moto) queue, turn what ``receive_message`` returned into the event
Lambda's SQS integration would deliver, and give the handler a context with a deadline:

>>> messages = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["All"])
>>> event = sqs_event_from_messages(messages["Messages"], queue_arn)  # doctest: +SKIP
>>> handler(event, FakeLambdaContext(remaining_ms=3000))    # doctest: +SKIP
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..message import JobMessage

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"


def queue_arn(queue: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    """The ARN of an SQS queue called ``queue``."""
    return f"arn:aws:sqs:{region}:{account}:{queue}"


def sqs_record(
    body: str | JobMessage,
    *,
    message_id: str | None = None,
    receipt_handle: str | None = None,
    receive_count: int = 1,
    queue: str = "default",
    region: str = DEFAULT_REGION,
    group_id: str | None = None,
) -> dict[str, Any]:
    """One record of an SQS → Lambda event, shaped as AWS sends it (``group_id``: the
    ``MessageGroupId`` of a record from a FIFO queue)."""
    text = body.encode() if isinstance(body, JobMessage) else body
    now_ms = str(int(time.time() * 1000))
    record: dict[str, Any] = {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or uuid.uuid4().hex,
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": now_ms,
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": now_ms,
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn(queue, region),
        "awsRegion": region,
    }
    if group_id is not None:
        record["attributes"]["MessageGroupId"] = group_id
    return record


def sqs_event(
    bodies: Sequence[str | JobMessage], *, queue: str = "default", receive_count: int = 1
) -> dict[str, Any]:
    """An SQS → Lambda event carrying ``bodies`` (message objects or raw text)."""
    return {"Records": [sqs_record(b, queue=queue, receive_count=receive_count) for b in bodies]}


def eventbridge_event(job_name: str, payload: Any = None) -> dict[str, Any]:
    """A scheduled EventBridge event whose ``detail`` names a periodic job."""
    detail: dict[str, Any] = {"jobName": job_name}
    if payload is not None:
        detail["payload"] = payload
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": DEFAULT_ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": DEFAULT_REGION,
        "resources": [],
        "detail": detail,
    }


def sqs_event_from_messages(
    messages: Sequence[Mapping[str, Any]], queue_arn: str
) -> dict[str, Any]:
    """The event Lambda's SQS integration delivers for ``messages``, as boto3's
    ``receive_message`` returned them (ask for ``MessageSystemAttributeNames=["All"]`` and
    ``MessageAttributeNames=["All"]`` to carry them over) from the queue ``queue_arn``."""
    region = queue_arn.split(":")[3]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m.get("Body", ""),
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "binaryValue": value.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value.get("DataType", "String"),
                    }
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class FakeLambdaContext:
    """A stand-in for the context object Lambda passes a handler: the function's name and
    ARN, and ``get_remaining_time_in_millis()`` counting down from ``remaining_ms`` (wall
    clock) from when it was made."""

    def __init__(
        self,
        remaining_ms: float = 900_000,
        *,
        function_name: str = "worker",
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "test"
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
