"""CloudWatchOutcomes: the outcome counts of :class:`~glasswork.jobs.metrics.EMFMetrics`, read
back from CloudWatch, for the dashboard's outcome chart where the workers are Lambda
functions (SQS).

CloudWatch turns each EMF line into metrics ``JobsDone``, ``JobsRetried``,
``JobsDeadLettered`` and ``JobsDiscarded`` in the line's namespace, with the dimensions
``JobName`` and the fixed ones of the ``EMFMetrics`` (``service``, say). Reading them is one
``ListMetrics`` per metric name (which job names have data) and ``GetMetricData`` (the sum per
minute of each), both cached for a minute: the metrics have one-minute resolution, and
``GetMetricData`` is billed per metric read. The queue is not a dimension (the EMF line
carries it as a property only), so these counts have an empty ``queue``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config

from ..drivers.records import OutcomeCount
from .emf import JOB_DIMENSION, OUTCOME_METRICS

#: The outcome kinds the chart shows, by metric name.
CHARTED = {metric: kind for kind, metric in OUTCOME_METRICS.items() if kind != "duplicate"}
#: GetMetricData takes at most this many queries a request.
MAX_QUERIES = 500
# A page waits for these calls: an unreachable CloudWatch must fail in seconds, not minutes.
_BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=15
)


class CloudWatchOutcomes:
    """Outcome counts per minute from the CloudWatch metrics of ``EMFMetrics(namespace,
    dimensions)``: every job name with data in ``namespace`` whose metrics carry the given
    ``dimensions`` (fixed name → value pairs; none: every ``service`` in the namespace).

    >>> create_app(driver, outcomes=CloudWatchOutcomes("Shop", {"service": "orders"}))
    ... # doctest: +SKIP
    """

    def __init__(
        self,
        namespace: str = "Glasswork",
        dimensions: Mapping[str, str] | None = None,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
        cache_seconds: float = 60.0,
    ) -> None:
        self.namespace = namespace
        self.dimensions = dict(dimensions or {})
        self.region = region
        self.endpoint_url = endpoint_url
        self.cache_seconds = cache_seconds
        self._client = client
        self._lock = threading.Lock()
        self._cached: tuple[float, datetime, list[OutcomeCount]] | None = None

    def __repr__(self) -> str:
        return f"CloudWatchOutcomes({self.namespace!r}, {self.dimensions!r})"

    @property
    def outcome_source(self) -> str:
        """Where the counts come from, as the dashboard says it."""
        fixed = "".join(f", {k}={v}" for k, v in sorted(self.dimensions.items()))
        return f"CloudWatch metrics (namespace {self.namespace}{fixed}) of EMFMetrics"

    @property
    def client(self) -> Any:
        """The boto3 CloudWatch client (made on first use)."""
        if self._client is None:
            self._client = boto3.client(
                "cloudwatch",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=_BOTO_CONFIG,
            )
        return self._client

    def outcome_history(self, since: datetime) -> list[OutcomeCount]:
        """Counts of the minutes from ``since`` on, oldest first (read at most once per
        ``cache_seconds``)."""
        start = _minute(since)
        with self._lock:
            cached = self._cached
            if cached is None or cached[1] > start or time.time() - cached[0] > self.cache_seconds:
                cached = self._cached = (time.time(), start, self._read(start))
        return [c for c in cached[2] if c.minute >= start]

    def _read(self, start: datetime) -> list[OutcomeCount]:
        by_id = {f"m{i}": metric for i, metric in enumerate(self._metrics())}
        queries = [
            {"Id": key, "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}}
            for key, metric in by_id.items()
        ]
        end = _minute(datetime.now(UTC)) + timedelta(minutes=1)
        counts: list[OutcomeCount] = []
        paginator = self.client.get_paginator("get_metric_data")
        for first in range(0, len(queries), MAX_QUERIES):
            for page in paginator.paginate(
                MetricDataQueries=queries[first : first + MAX_QUERIES],
                StartTime=start,
                EndTime=end,
                ScanBy="TimestampAscending",
            ):
                for result in page.get("MetricDataResults", []):
                    metric = by_id[result["Id"]]
                    job = _dimension(metric, JOB_DIMENSION)
                    kind = CHARTED[metric["MetricName"]]
                    counts.extend(
                        OutcomeCount(_minute(at), "", job, kind, round(value))
                        for at, value in zip(result["Timestamps"], result["Values"], strict=True)
                        if value
                    )
        counts.sort(key=lambda c: (c.minute, c.job_name, c.outcome))
        return counts

    def _metrics(self) -> list[dict[str, Any]]:
        """The outcome metrics with recent data: one per (metric name, dimension set)."""
        wanted = [{"Name": JOB_DIMENSION}]
        wanted += [{"Name": k, "Value": v} for k, v in sorted(self.dimensions.items())]
        paginator = self.client.get_paginator("list_metrics")
        found: dict[tuple[str, frozenset[tuple[str, str]]], dict[str, Any]] = {}
        for name in CHARTED:
            for page in paginator.paginate(
                Namespace=self.namespace,
                MetricName=name,
                Dimensions=wanted,
                RecentlyActive="PT3H",
            ):
                for metric in page.get("Metrics", []):
                    # Once each, even if listed twice (moto does), so nothing counts double.
                    dimensions = frozenset((d["Name"], d["Value"]) for d in metric["Dimensions"])
                    found.setdefault((metric["MetricName"], dimensions), metric)
        return list(found.values())


def _dimension(metric: Mapping[str, Any], name: str) -> str:
    return next((d["Value"] for d in metric.get("Dimensions", []) if d["Name"] == name), "")


def _minute(moment: datetime) -> datetime:
    return datetime.fromtimestamp(int(moment.timestamp()) // 60 * 60, UTC)
