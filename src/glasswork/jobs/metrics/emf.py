"""EMFMetrics: job metrics as CloudWatch Embedded Metric Format log lines, for Lambda.

At the end of each invocation the Lambda worker flushes one JSON line per job name seen in
the batch (a queue usually carries one job, so one line a batch) to stdout, which Lambda
sends to CloudWatch Logs; CloudWatch turns it into metrics. No API call, no extra latency.

One line looks like this (pretty-printed)::

    {"_aws": {"Timestamp": 1764331200000, "CloudWatchMetrics": [{
        "Namespace": "Glasswork", "Dimensions": [["service", "JobName"]],
        "Metrics": [{"Name": "JobsDone", "Unit": "Count"}, ...,
                    {"Name": "JobDuration", "Unit": "Milliseconds"}]}]},
     "service": "orders", "JobName": "send-welcome-email", "Queue": "emails",
     "JobsDone": 9, "JobsRetried": 1, "JobsDeadLettered": 0, "JobsDiscarded": 0,
     "JobsDuplicate": 0, "JobsTimedOut": 0, "JobDuration": [1.9, 2.4, ...]}

A periodic job fired by a long-running worker (``periodic=True``) also gets the counts of
its fires that were not plain: ``PeriodicCaughtUp``, ``PeriodicMissed``, ``PeriodicSkipped``
(and ``PeriodicFired``), when any is not zero; a job with a rate or concurrency limit run
by a long-running worker, ``Throttled`` (deliveries held back), when not zero.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .sink import timed_out

if TYPE_CHECKING:
    from ..execution import JobRun, Outcome

#: Count metric per outcome kind.
OUTCOME_METRICS = {
    "done": "JobsDone",
    "retry": "JobsRetried",
    "dead_letter": "JobsDeadLettered",
    "discarded": "JobsDiscarded",
    "duplicate": "JobsDuplicate",
}
TIMED_OUT_METRIC = "JobsTimedOut"
#: Count metric per periodic fire outcome (:data:`~.sink.PERIODIC_OUTCOMES`).
PERIODIC_METRICS = {
    "fired": "PeriodicFired",
    "caught_up": "PeriodicCaughtUp",
    "missed": "PeriodicMissed",
    "skipped": "PeriodicSkipped",
}
#: Deliveries held back by the job's rate or concurrency limit.
THROTTLED_METRIC = "Throttled"
DURATION_METRIC = "JobDuration"
JOB_DIMENSION = "JobName"
#: EMF allows 100 values per metric in one document; more go to further lines.
MAX_VALUES = 100
#: CloudWatch allows 30 dimensions per metric; the job name takes one.
MAX_DIMENSIONS = 29
#: Runs of one job held before a flush is forced, so memory stays bounded where nobody
#: flushes (a long-running worker; the Lambda worker flushes every invocation).
MAX_HELD = 1000


@dataclass(slots=True)
class _JobCounts:
    queue: str
    counts: dict[str, int] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)


class EMFMetrics:
    """Count runs and write them as CloudWatch EMF lines on :meth:`flush`.

    ``namespace`` defaults to ``$POWERTOOLS_METRICS_NAMESPACE``, else ``"Glasswork"``;
    ``dimensions`` (fixed name → value pairs added to every metric) default to
    ``{"service": $POWERTOOLS_SERVICE_NAME}`` when that is set, so the job metrics sit
    beside those of Powertools' ``Metrics`` (which flushes its own lines; the two never
    share a buffer). ``write`` takes each line (default: stdout, which Lambda logs).
    Nobody flushing (a long-running worker) still writes once a job has 1,000 runs held.

    >>> handler = bootstrap_worker(module=AppModule, metrics=EMFMetrics(namespace="Shop"))
    ... # doctest: +SKIP
    """

    def __init__(
        self,
        namespace: str | None = None,
        dimensions: Mapping[str, str] | None = None,
        *,
        write: Callable[[str], Any] | None = None,
    ) -> None:
        namespace = namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Glasswork"
        if dimensions is None:
            service = os.environ.get("POWERTOOLS_SERVICE_NAME")
            dimensions = {"service": service} if service else {}
        self.namespace = namespace
        self.dimensions = _check_dimensions(dimensions)
        self.write = write or _stdout
        self._jobs: dict[str, _JobCounts] = {}
        self._lock = threading.Lock()

    def record(self, run: JobRun, outcome: Outcome, seconds: float) -> None:
        name = run.job_name
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                job = self._jobs[name] = _JobCounts(run.queue)
            counts = job.counts
            counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
            if timed_out(outcome):
                counts[TIMED_OUT_METRIC] = counts.get(TIMED_OUT_METRIC, 0) + 1
            job.durations.append(round(seconds * 1000, 3))
            full = len(job.durations) >= MAX_HELD
        if full:
            self.flush()

    def record_fires(self, job_name: str, queue: str, outcome: str, count: int) -> None:
        metric = PERIODIC_METRICS.get(outcome)
        if metric is None:
            return
        with self._lock:
            job = self._jobs.get(job_name)
            if job is None:
                job = self._jobs[job_name] = _JobCounts(queue)
            job.counts[metric] = job.counts.get(metric, 0) + count

    def record_throttled(self, job_name: str, queue: str, count: int) -> None:
        with self._lock:
            job = self._jobs.get(job_name)
            if job is None:
                job = self._jobs[job_name] = _JobCounts(queue)
            job.counts[THROTTLED_METRIC] = job.counts.get(THROTTLED_METRIC, 0) + count

    def flush(self) -> None:
        """Write what was counted since the last flush: one line per job name (and one more
        per 100 durations past the first 100)."""
        with self._lock:
            jobs, self._jobs = self._jobs, {}
        if not jobs:
            return
        timestamp = int(time.time() * 1000)
        for name, job in jobs.items():
            for document in self.documents(name, job, timestamp):
                self.write(json.dumps(document, separators=(",", ":")))

    def documents(self, job_name: str, job: _JobCounts, timestamp: int) -> Iterator[dict[str, Any]]:
        """The EMF documents of one job's counts."""
        counts: dict[str, Any] = {
            metric: job.counts.get(kind, 0) for kind, metric in OUTCOME_METRICS.items()
        }
        counts[TIMED_OUT_METRIC] = job.counts.get(TIMED_OUT_METRIC, 0)
        periodic = {metric: job.counts.get(metric, 0) for metric in PERIODIC_METRICS.values()}
        if any(periodic.values()):
            counts.update(periodic)
        if job.counts.get(THROTTLED_METRIC):
            counts[THROTTLED_METRIC] = job.counts[THROTTLED_METRIC]
        chunks = [
            job.durations[i : i + MAX_VALUES] for i in range(0, len(job.durations), MAX_VALUES)
        ]
        for index, chunk in enumerate(chunks or [[]]):
            values: dict[str, Any] = dict(counts) if index == 0 else {}
            if chunk:
                values[DURATION_METRIC] = chunk
            if not values:
                continue
            yield {
                "_aws": {
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": self.namespace,
                            "Dimensions": [[*self.dimensions, JOB_DIMENSION]],
                            "Metrics": [{"Name": name, "Unit": _unit(name)} for name in values],
                        }
                    ],
                },
                **self.dimensions,
                JOB_DIMENSION: job_name,
                "Queue": job.queue,
                **values,
            }


def _unit(metric: str) -> str:
    return "Milliseconds" if metric == DURATION_METRIC else "Count"


def _check_dimensions(dimensions: Mapping[str, str]) -> dict[str, str]:
    if len(dimensions) > MAX_DIMENSIONS:
        raise ConfigurationError(
            f"EMFMetrics takes at most {MAX_DIMENSIONS} dimensions (CloudWatch allows 30 and "
            f"the job name is one), got {len(dimensions)}"
        )
    taken = {JOB_DIMENSION, "Queue", "_aws", DURATION_METRIC, TIMED_OUT_METRIC}
    taken.update(OUTCOME_METRICS.values())
    taken.update(PERIODIC_METRICS.values())
    taken.add(THROTTLED_METRIC)
    for name, value in dimensions.items():
        if not isinstance(name, str) or not name or name in taken:
            raise ConfigurationError(
                f"EMFMetrics dimension names must be non-empty strings other than "
                f"{sorted(taken)}, got {name!r}"
            )
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"EMFMetrics dimension {name!r} needs a non-empty string value, got {value!r}"
            )
    return dict(dimensions)


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
