"""Clients of the real moto server (SQS and DynamoDB over HTTP; ``moto_endpoint``, started
once per session by tests/conftest.py) for the integration tests: every test starts from an
empty server (moto's reset API), and clients talk to it with plain boto3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from moto_support import reset_moto  # noqa: E402

REGION = "us-east-1"


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """Fresh (reset) moto state, fake credentials, and boto3 clients for it."""
    reset_moto(moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    session = boto3.session.Session(region_name=REGION)
    return Aws(
        endpoint=moto_endpoint,
        sqs=session.client("sqs", endpoint_url=moto_endpoint),
        dynamodb=session.client("dynamodb", endpoint_url=moto_endpoint),
    )


@dataclass
class Aws:
    """Clients bound to the moto server, with helpers to make queues."""

    endpoint: str
    sqs: Any
    dynamodb: Any

    def create_queue(
        self,
        name: str,
        *,
        dead_letter: str | None = None,
        max_receive_count: int = 10,
        visibility_timeout: int = 30,
    ) -> str:
        """Create a queue (FIFO when ``name`` ends in .fifo), optionally with a redrive
        policy to the queue URL ``dead_letter``; returns its URL."""
        attributes = {"VisibilityTimeout": str(visibility_timeout)}
        if name.endswith(".fifo"):
            attributes["FifoQueue"] = "true"
        if dead_letter is not None:
            target = self.queue_arn(dead_letter)
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": target, "maxReceiveCount": str(max_receive_count)}
            )
        return str(self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])

    def queue_arn(self, url: str) -> str:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    def drain(self, url: str, *, wait: int = 0, expected: int | None = None) -> list[dict]:
        """Receive (and delete) messages from ``url`` until empty, or until ``expected`` are
        in hand; long polls up to ``wait`` seconds until the first arrives (and every time
        while fewer than ``expected`` are in hand)."""
        messages: list[dict] = []
        while expected is None or len(messages) < expected:
            response = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=wait if expected is not None or not messages else 0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
            batch = response.get("Messages", [])
            if not batch:
                break
            for m in batch:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            messages.extend(batch)
        return messages
