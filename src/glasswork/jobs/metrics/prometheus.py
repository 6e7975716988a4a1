"""PrometheusMetrics: job counts, durations and queue depth for a Prometheus scrape.

Needs ``prometheus-client`` (``pip install 'glasswork[prometheus]'``), imported when a
:class:`PrometheusMetrics` is made. Series (with the default ``namespace="glasswork"``):

* ``glasswork_jobs_total{job, queue, outcome}``: runs by outcome (``done``, ``retry``,
  ``dead_letter``, ``discarded``, ``duplicate``);
* ``glasswork_job_timeouts_total{job, queue}``: runs stopped by their timeout (also counted
  under their outcome);
* ``glasswork_job_duration_seconds{job, queue}``: a histogram of run times;
* ``glasswork_periodic_fires_total{job, queue, outcome}``: periodic fires by outcome
  (``fired``, ``caught_up``, ``missed``, ``skipped``), from a worker with ``periodic=True``;
* ``glasswork_jobs_throttled_total{job, queue}``: deliveries held back by their job's rate
  or concurrency limit (put back for later, not runs);
* ``glasswork_queue_messages{queue, state}``: depth per ``state`` (``ready``, ``delayed``,
  ``in_flight``, ``dead``), read from the driver's ``stats()`` at scrape time (at most every
  ``stats_interval`` seconds) when the driver can tell.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..drivers.contract import capabilities_of
from ..extras import needs_extra
from .sink import timed_out

if TYPE_CHECKING:
    from ..drivers.contract import QueueCounts, QueueDriver
    from ..execution import JobRun, Outcome

logger = logging.getLogger("glasswork.worker")

#: Histogram buckets (seconds): from a millisecond job to a quarter-hour one.
DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
)
DEPTH_STATES = ("ready", "delayed", "in_flight", "dead")


class PrometheusMetrics:
    """A metrics sink that keeps Prometheus series in ``registry`` (default: a registry of
    its own, so several workers in one process do not collide; pass
    ``prometheus_client.REGISTRY`` to serve them with your other metrics).

    >>> Worker(module=AppModule, driver=driver, metrics_port=9100)   # doctest: +SKIP

    makes one and serves it on ``:9100/metrics``.
    """

    def __init__(
        self,
        registry: Any = None,
        *,
        namespace: str = "glasswork",
        buckets: Sequence[float] = DURATION_BUCKETS,
        stats_interval: float = 5.0,
    ) -> None:
        with needs_extra("prometheus", "Prometheus metrics need prometheus-client"):
            from prometheus_client import CollectorRegistry, Counter, Histogram
        self.registry = registry if registry is not None else CollectorRegistry()
        self.namespace = namespace
        self.stats_interval = stats_interval
        self.jobs = Counter(
            "jobs",
            "Job runs by outcome",
            ["job", "queue", "outcome"],
            namespace=namespace,
            registry=self.registry,
        )
        self.timeouts = Counter(
            "job_timeouts",
            "Job runs stopped by their timeout",
            ["job", "queue"],
            namespace=namespace,
            registry=self.registry,
        )
        self.duration = Histogram(
            "job_duration_seconds",
            "Run time of jobs, in seconds",
            ["job", "queue"],
            namespace=namespace,
            registry=self.registry,
            buckets=tuple(buckets),
        )
        self.periodic_fires = Counter(
            "periodic_fires",
            "Periodic fires by outcome: fired, caught_up, missed, skipped",
            ["job", "queue", "outcome"],
            namespace=namespace,
            registry=self.registry,
        )
        self.throttled = Counter(
            "jobs_throttled",
            "Deliveries held back by their job's rate or concurrency limit",
            ["job", "queue"],
            namespace=namespace,
            registry=self.registry,
        )
        self._watched: QueueDepth | None = None

    def record(self, run: JobRun, outcome: Outcome, seconds: float) -> None:
        name, queue = run.job_name, run.queue
        self.jobs.labels(name, queue, outcome.kind).inc()
        self.duration.labels(name, queue).observe(seconds)
        if timed_out(outcome):
            self.timeouts.labels(name, queue).inc()

    def record_fires(self, job_name: str, queue: str, outcome: str, count: int) -> None:
        self.periodic_fires.labels(job_name, queue, outcome).inc(count)

    def record_throttled(self, job_name: str, queue: str, count: int) -> None:
        self.throttled.labels(job_name, queue).inc(count)

    def flush(self) -> None:
        """Nothing to do: Prometheus pulls."""

    def watch(self, driver: QueueDriver) -> None:
        """Report ``driver``'s queue depth at each scrape (drivers with queue counts:
        :class:`~glasswork.jobs.drivers.contract.QueueCounts`)."""
        counts = capabilities_of(driver).stats
        if self._watched is not None or counts is None:
            return
        self._watched = QueueDepth(counts, f"{self.namespace}_queue_messages", self.stats_interval)
        self.registry.register(self._watched)


class QueueDepth:
    """A Prometheus collector of ``driver.stats()``, cached for ``interval`` seconds so a
    busy scraper does not load the queue."""

    def __init__(self, driver: QueueCounts, name: str, interval: float) -> None:
        self.driver = driver
        self.name = name
        self.interval = interval
        self._cached: dict[str, dict[str, int]] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # the queues are known only at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            self.name,
            "Messages per queue and state, as the driver reports them",
            labels=["queue", "state"],
        )
        for queue, states in sorted(self.depths().items()):
            for state, count in states.items():
                family.add_metric([queue, state], count)
        yield family

    def depths(self) -> dict[str, dict[str, int]]:
        """Messages per queue and state (empty when the driver could not be read)."""
        with self._lock:
            if time.monotonic() - self._read_at >= self.interval:
                self._read_at = time.monotonic()
                try:
                    self._cached = _depths(self.driver.stats())
                except Exception:
                    logger.warning("could not read queue depth from %r", self.driver, exc_info=True)
                    self._cached = {}
            return self._cached


def _depths(stats: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Per-queue counts from ``stats()``: :class:`QueueStats` (every driver's shape) or the
    older ``{"visible", "in_flight", "delayed"}`` dicts."""
    depths: dict[str, dict[str, int]] = {}
    for queue, value in stats.items():
        if isinstance(value, Mapping):
            states = {
                "ready": value.get("ready", value.get("visible")),
                "delayed": value.get("delayed"),
                "in_flight": value.get("in_flight"),
                "dead": value.get("dead"),
            }
        else:
            states = {state: getattr(value, state, None) for state in DEPTH_STATES}
        depths[str(queue)] = {s: int(n) for s, n in states.items() if n is not None}
    return depths
