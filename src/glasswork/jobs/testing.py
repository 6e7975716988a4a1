"""Helpers for tests: build the events AWS Lambda hands a worker.

>>> event = sqs_event([message.to_json()])                 # doctest: +SKIP
>>> handler(event, None)                                   # doctest: +SKIP
{'batchItemFailures': []}
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from .message import JobMessage

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
) -> dict[str, Any]:
    """One record of an SQS → Lambda event, shaped as AWS sends it."""
    text = body.encode() if isinstance(body, JobMessage) else body
    now_ms = str(int(time.time() * 1000))
    return {
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
