"""The queues SQS records come from, as the Lambda worker sees them: each queue's URL, derived
from a record's ``eventSourceARN``, and its redrive policy (DLQ and ``maxReceiveCount``),
read once per queue.

A worker given no driver dead-letters through here: the DLQ of the queue's redrive policy,
with the reason and traceback attached exactly as :class:`~glasswork.jobs.SQSQueueDriver`
does (a driver for the one queue does the send). boto3 is imported only when a queue is
first looked up.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("glasswork.jobs")

#: How long a failed lookup (no permission, network) is remembered before it is tried again.
RETRY_LOOKUP_SECONDS = 60.0

ClientFactory = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class QueueSetup:
    """What the worker knows about one source queue: its ``url``, the ``dead_letter_url``
    and ``max_receive_count`` of its redrive policy (None without one), or why it could not
    be read (``problem``)."""

    arn: str
    name: str
    url: str | None = None
    dead_letter_url: str | None = None
    max_receive_count: int | None = None
    problem: str | None = None


def in_lambda() -> bool:
    """Whether this process is a Lambda function (the runtime sets
    ``AWS_LAMBDA_FUNCTION_NAME``). Outside Lambda the worker makes no AWS calls of its own:
    tests stay offline."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def parse_queue_arn(arn: str) -> tuple[str, str, str] | None:
    """``arn:aws:sqs:<region>:<account>:<name>`` → (region, account, name)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        return None
    return parts[3], parts[4], parts[5]


def default_client(region: str) -> Any:
    """A boto3 SQS client for ``region`` (endpoint from the usual AWS settings, including
    ``AWS_ENDPOINT_URL_SQS``)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5)
    return boto3.client("sqs", region_name=region, config=config)


class RecordQueues:
    """Source queues by ARN, each looked up once (thread-safe), and the dead-letter send of
    a worker without a driver. ``client_for(region)`` gives the SQS client to use."""

    def __init__(self, client_for: ClientFactory = default_client) -> None:
        self._client_for = client_for
        self._clients: dict[str, Any] = {}
        self._setups: dict[str, tuple[QueueSetup, float]] = {}
        self._drivers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def setup(self, arn: str) -> QueueSetup:
        """The queue of ``arn``: looked up on first use (and again a minute after a failed
        lookup)."""
        with self._lock:
            known = self._setups.get(arn)
            if known is not None and (known[0].problem is None or time.monotonic() < known[1]):
                return known[0]
            found = self._look_up(arn)
            self._setups[arn] = (found, time.monotonic() + RETRY_LOOKUP_SECONDS)
            return found

    def known(self, arn: str) -> QueueSetup | None:
        """The queue of ``arn`` if it has been looked up (never looks it up)."""
        known = self._setups.get(arn)
        return known[0] if known is not None else None

    def dead_letter(
        self, arn: str, body: str, reason: str, traceback: str | None = None
    ) -> str | None:
        """Send ``body`` to the DLQ of the queue ``arn``, with ``reason`` and ``traceback``.
        None when it is kept there; else why not (the record must then stay on its queue)."""
        setup = self.setup(arn)
        if setup.problem is not None:
            return setup.problem
        if setup.dead_letter_url is None:
            return f"queue {setup.name} has no redrive policy, so there is no DLQ to send it to"
        try:
            self._driver(setup).dead_letter(body, reason, queue=setup.name, traceback=traceback)
        except Exception as exc:
            return f"the send to {setup.dead_letter_url} failed: {type(exc).__name__}: {exc}"
        return None

    def delete(self, arn: str, receipt: str) -> None:
        """Delete one message of the queue ``arn`` (raises on failure)."""
        setup = self.setup(arn)
        if setup.url is None:
            raise RuntimeError(setup.problem or f"no URL for queue {arn}")
        self._client(setup).delete_message(QueueUrl=setup.url, ReceiptHandle=receipt)

    def _client(self, setup: QueueSetup) -> Any:
        return self._client_in(setup.arn.split(":")[3])

    def _client_in(self, region: str) -> Any:
        client = self._clients.get(region)
        if client is None:
            client = self._clients[region] = self._client_for(region)
        return client

    def _driver(self, setup: QueueSetup) -> Any:
        driver = self._drivers.get(setup.arn)
        if driver is None:
            from ..drivers.sqs.driver import SQSQueueDriver

            assert setup.url is not None
            assert setup.dead_letter_url is not None
            driver = SQSQueueDriver(
                queues={setup.name: setup.url},
                dead_letter_queues={setup.name: setup.dead_letter_url},
                client=self._client(setup),
            )
            self._drivers[setup.arn] = driver
        return driver

    def _look_up(self, arn: str) -> QueueSetup:
        parsed = parse_queue_arn(arn)
        if parsed is None:
            return QueueSetup(arn, arn, problem=f"{arn!r} is not an SQS queue ARN")
        region, account, name = parsed
        try:
            client = self._client_in(region)
        except ImportError:
            return QueueSetup(
                arn, name, problem="boto3 is not installed (pip install 'glasswork[sqs]')"
            )
        # Queue URLs are <endpoint>/<account>/<name>: no sqs:GetQueueUrl permission needed.
        endpoint = str(client.meta.endpoint_url).rstrip("/")
        url = f"{endpoint}/{account}/{name}"
        try:
            attributes = client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["RedrivePolicy"]
            ).get("Attributes", {})
        except Exception as exc:
            return QueueSetup(
                arn,
                name,
                url,
                problem=f"cannot read the redrive policy of {url} (the worker's role needs "
                f"sqs:GetQueueAttributes): {type(exc).__name__}: {exc}",
            )
        policy = json.loads(attributes.get("RedrivePolicy") or "{}")
        target = parse_queue_arn(str(policy.get("deadLetterTargetArn", "")))
        count = policy.get("maxReceiveCount")
        return QueueSetup(
            arn,
            name,
            url,
            dead_letter_url=f"{endpoint}/{target[1]}/{target[2]}" if target else None,
            max_receive_count=int(count) if count is not None else None,
        )
