"""LambdaConcurrency: the Lambda functions that work an SQS driver's queues and how many of
their instances ran lately, for the dashboard's workers panel (workers on SQS are Lambda
functions, which keep no heartbeat).

The functions are found through the queues' event source mappings
(``lambda:ListEventSourceMappings`` of each queue's ARN); their concurrency is CloudWatch's
``AWS/Lambda`` ``ConcurrentExecutions`` (``FunctionName`` dimension), the maximum of each
minute over the last :data:`WINDOW_MINUTES` minutes (``GetMetricData``). Both are read at
most once per ``cache_seconds``: the metric has one-minute resolution, and ``GetMetricData``
is billed per metric read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from ..drivers.sqs.driver import SQSQueueDriver

#: Minutes of ConcurrentExecutions read back.
WINDOW_MINUTES = 15
# A page waits for these calls: an unreachable service must fail in seconds.
_BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=15
)


@dataclass(frozen=True, slots=True)
class LambdaWorker:
    """A Lambda function subscribed to ``queue``: its event source mapping's ``state``,
    ``batch_size`` and ``maximum_concurrency`` (None: not capped by the mapping), and its
    ``concurrency``, the most instances that ran in the latest minute CloudWatch has (at
    ``measured_at``; None: no data in the window)."""

    function: str
    queue: str
    state: str
    batch_size: int | None
    maximum_concurrency: int | None
    concurrency: float | None
    measured_at: datetime | None


@dataclass(frozen=True, slots=True)
class LambdaWorkers:
    """What :meth:`LambdaConcurrency.read` found: ``workers``, and ``unmapped`` queues that
    no function is subscribed to."""

    workers: list[LambdaWorker]
    unmapped: list[str]


class LambdaConcurrency:
    """The Lambda functions working ``queues`` (configured name → queue URL) and their
    recent concurrency, in ``region`` (``endpoint_url``: a test server)."""

    source = (
        "the queues' Lambda event source mappings, and CloudWatch's AWS/Lambda "
        "ConcurrentExecutions (maximum per minute)"
    )

    def __init__(
        self,
        queues: Mapping[str, str],
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        sqs: Any = None,
        cache_seconds: float = 60.0,
    ) -> None:
        self.queues = dict(queues)
        self.region = region
        self.endpoint_url = endpoint_url
        self.cache_seconds = cache_seconds
        self._sqs = sqs
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._cached: tuple[float, LambdaWorkers | Exception] | None = None

    @classmethod
    def for_driver(cls, driver: SQSQueueDriver) -> LambdaConcurrency:
        """The functions working ``driver``'s queues, in its region and endpoint."""
        return cls(
            driver.queues,
            region=driver.region,
            endpoint_url=driver.endpoint_url,
            sqs=driver.client,
        )

    def _client(self, service: str) -> Any:
        if service == "sqs" and self._sqs is not None:
            return self._sqs
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=_BOTO_CONFIG,
            )
        return self._clients[service]

    def read(self) -> LambdaWorkers:
        """The functions and their concurrency, read at most once per ``cache_seconds``; a
        failure is kept as long, so a page refreshed every few seconds does not wait for
        an unreachable service each time."""
        with self._lock:
            if self._cached is None or time.time() - self._cached[0] > self.cache_seconds:
                try:
                    found: LambdaWorkers | Exception = self._read()
                except Exception as exc:
                    found = exc
                self._cached = (time.time(), found)
            result = self._cached[1]
        if isinstance(result, Exception):
            raise result
        return result

    def _read(self) -> LambdaWorkers:
        mappings: list[tuple[str, dict[str, Any]]] = []
        unmapped = []
        for queue, url in self.queues.items():
            found = self._mappings(url)
            if not found:
                unmapped.append(queue)
            mappings.extend((queue, m) for m in found)
        functions = sorted({_function_name(m["FunctionArn"]) for _, m in mappings})
        measured = self._concurrency(functions)
        workers = [
            LambdaWorker(
                _function_name(m["FunctionArn"]),
                queue,
                str(m.get("State", "unknown")),
                m.get("BatchSize"),
                m.get("ScalingConfig", {}).get("MaximumConcurrency"),
                *measured.get(_function_name(m["FunctionArn"]), (None, None)),
            )
            for queue, m in mappings
        ]
        return LambdaWorkers(workers, unmapped)

    def _mappings(self, queue_url: str) -> list[dict[str, Any]]:
        arn = self._client("sqs").get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        paginator = self._client("lambda").get_paginator("list_event_source_mappings")
        return [
            mapping
            for page in paginator.paginate(EventSourceArn=arn)
            for mapping in page.get("EventSourceMappings", [])
        ]

    def _concurrency(self, functions: list[str]) -> dict[str, tuple[float, datetime]]:
        """The latest per-minute maximum of ConcurrentExecutions of each function."""
        if not functions:
            return {}
        queries = [
            {
                "Id": f"f{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "ConcurrentExecutions",
                        "Dimensions": [{"Name": "FunctionName", "Value": name}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
            for i, name in enumerate(functions)
        ]
        end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        found: dict[str, tuple[float, datetime]] = {}
        paginator = self._client("cloudwatch").get_paginator("get_metric_data")
        for page in paginator.paginate(
            MetricDataQueries=queries,
            StartTime=end - timedelta(minutes=WINDOW_MINUTES + 1),
            EndTime=end,
            ScanBy="TimestampDescending",
        ):
            for result in page.get("MetricDataResults", []):
                name = functions[int(result["Id"][1:])]
                points = sorted(
                    zip(result["Timestamps"], result["Values"], strict=True), reverse=True
                )
                if points and name not in found:
                    at, value = points[0]
                    found[name] = (float(value), at.astimezone(UTC))
        return found


def _function_name(arn: str) -> str:
    """``arn:aws:lambda:region:account:function:name[:qualifier]`` → ``name``."""
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 and parts[5] == "function" else arn
