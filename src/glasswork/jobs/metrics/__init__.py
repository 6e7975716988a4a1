"""Job metrics: outcome counts and run durations per job, queue depth per queue.

* :class:`EMFMetrics`: CloudWatch Embedded Metric Format lines, for the Lambda worker
  (``bootstrap_worker(metrics=EMFMetrics(...))``);
* :class:`PrometheusMetrics`: Prometheus series, for the long-running worker
  (``Worker(metrics_port=9100)``, ``glasswork worker --metrics-port 9100``), served with a
  ``/healthz`` liveness endpoint by :class:`MetricsServer`;
* :class:`MetricsSink`: the interface of both, for your own (and :class:`PeriodicFireSink`,
  for counts of periodic fires, :class:`ThrottleSink`, for deliveries held back by limits);
* :class:`CloudWatchOutcomes`: the outcome counts of ``EMFMetrics`` read back from CloudWatch
  (for the dashboard's chart);
* :class:`OutcomeLog`: the sink every worker adds for the dashboard's outcome history;
* :class:`JobMetrics`: the around-run step that feeds the sinks.

``EMFMetrics`` and ``PrometheusMetrics`` are also exported by ``glasswork.jobs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..extras import load_lazily
from .sink import (
    JobMetrics,
    MetricsOption,
    MetricsSink,
    PeriodicFireSink,
    ThrottleSink,
    flush_metrics,
    metric_sinks,
)

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .cloudwatch import CloudWatchOutcomes
    from .emf import EMFMetrics
    from .outcome_log import OutcomeLog
    from .prometheus import PrometheusMetrics
    from .server import MetricsServer

# These import prometheus-client or boto3 (optional extras) when first used; the outcome
# log imports the executor, which imports this package; EMF only for the workers using it.
_LAZY = {
    "EMFMetrics": ".emf",
    "PrometheusMetrics": ".prometheus",
    "MetricsServer": ".server",
    "CloudWatchOutcomes": ".cloudwatch",
    "OutcomeLog": ".outcome_log",
}


def __getattr__(name: str) -> Any:
    return load_lazily(__name__, _LAZY, name)


__all__ = [
    "CloudWatchOutcomes",
    "EMFMetrics",
    "JobMetrics",
    "MetricsOption",
    "MetricsServer",
    "MetricsSink",
    "OutcomeLog",
    "PeriodicFireSink",
    "PrometheusMetrics",
    "ThrottleSink",
    "flush_metrics",
    "metric_sinks",
]
