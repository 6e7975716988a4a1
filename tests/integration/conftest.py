"""A real moto server (SQS and DynamoDB over HTTP) for the integration tests.

The server runs as a subprocess on a free port for the whole session; every test starts
from an empty server (moto's reset API), and clients talk to it with plain boto3.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, method: str = "GET") -> None:
    urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5).read()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Start ``python -m moto.server`` on 127.0.0.1 and yield its URL."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # The server logs every request: to a file, since a pipe nobody drains fills up and
    # blocks it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_up(endpoint, process, log)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(endpoint: str, process: subprocess.Popen, log: IO[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _request(f"{endpoint}/moto-api/")
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")[-4000:]
                pytest.fail(f"moto server exited with {process.returncode}: {output}")
            if time.monotonic() > deadline:
                pytest.fail("moto server did not answer within 30 s")
            time.sleep(0.05)


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """Fresh (reset) moto state, fake credentials, and boto3 clients for it."""
    _request(f"{moto_endpoint}/moto-api/reset", method="POST")
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
