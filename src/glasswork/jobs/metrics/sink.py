"""What metrics see of a run, and the step that reports it: sinks count, exporters flush.

A sink is anything with ``record(run, outcome, seconds)`` and ``flush()``:
:class:`~glasswork.jobs.metrics.EMFMetrics` (CloudWatch, one log line per Lambda batch),
:class:`~glasswork.jobs.metrics.PrometheusMetrics` (the long-running worker's ``/metrics``),
or your own (a dashboard's per-minute counts, say). One :class:`JobMetrics` step times each
run and hands it to every sink.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..drivers.contract import capabilities_of, records_outcomes
from ..errors import ConfigurationError, JobTimeoutError

if TYPE_CHECKING:
    from ..execution import CallNext, JobRun, Outcome

logger = logging.getLogger("glasswork.jobs")


@runtime_checkable
class MetricsSink(Protocol):
    """Receives every finished run. ``record`` is called on the worker's hot path (keep it
    to counting); ``flush`` when the worker has a natural point to export (the end of each
    Lambda invocation). Neither may raise into the job: errors are logged and dropped."""

    def record(self, run: JobRun, outcome: Outcome, seconds: float) -> None:
        """Count one run of ``run.message``, which ended in ``outcome`` after ``seconds``."""

    def flush(self) -> object:
        """Export what was counted since the last flush (a no-op for pull exporters); what
        it returns is ignored."""


#: What became of periodic fires, as :class:`PeriodicFireSink` counts them: ``fired`` on
#: time, ``caught_up`` (missed while no worker ran, then run), ``missed`` (not run, by
#: ``catchup``), ``skipped`` (an earlier run had not finished, ``overlap=False``).
PERIODIC_OUTCOMES = ("fired", "caught_up", "missed", "skipped")


@runtime_checkable
class PeriodicFireSink(Protocol):
    """A sink that also counts periodic fires (the long-running worker's firer calls it;
    :class:`PrometheusMetrics` and :class:`EMFMetrics` are ones)."""

    def record_fires(self, job_name: str, queue: str, outcome: str, count: int) -> None:
        """Count ``count`` fires of ``job_name`` (enqueued on ``queue``) that ended in
        ``outcome``, one of :data:`PERIODIC_OUTCOMES`."""


@runtime_checkable
class ThrottleSink(Protocol):
    """A sink that also counts deliveries held back by their job's rate or concurrency
    limit (the long-running worker calls it; :class:`PrometheusMetrics` and
    :class:`EMFMetrics` are ones)."""

    def record_throttled(self, job_name: str, queue: str, count: int) -> None:
        """Count ``count`` deliveries of ``job_name`` (on ``queue``) put back for later."""


def throttle_sinks(metrics: Sequence[object]) -> list[ThrottleSink]:
    """The sinks of ``metrics`` that count throttles."""
    return [sink for sink in metrics if isinstance(sink, ThrottleSink)]


MetricsOption = MetricsSink | Sequence[MetricsSink] | None


def metric_sinks(
    option: MetricsOption, *, prometheus: bool = False, driver: object = None
) -> tuple[MetricsSink, ...]:
    """Read a worker's ``metrics=`` option: a sink, a sequence of sinks, or None. With
    ``prometheus`` (the worker serves ``/metrics``), a :class:`PrometheusMetrics` is added
    unless one is there; a ``driver`` that stores outcome counts for the dashboard
    (:class:`~glasswork.jobs.drivers.contract.OutcomeStore`, as SQLite's and PostgreSQL's
    do, unless ``driver.records_outcomes = False``) gets an
    :class:`~glasswork.jobs.metrics.OutcomeLog` feeding it."""
    if option is None:
        sinks: tuple[MetricsSink, ...] = ()
    else:
        sinks = (option,) if isinstance(option, MetricsSink) else tuple(option)
    for sink in sinks:
        if not isinstance(sink, MetricsSink):
            raise ConfigurationError(
                f"metrics must be sinks with record() and flush() (EMFMetrics, "
                f"PrometheusMetrics, ...), got {sink!r}"
            )
    if prometheus:
        from .prometheus import PrometheusMetrics

        if not any(isinstance(sink, PrometheusMetrics) for sink in sinks):
            sinks += (PrometheusMetrics(),)
    store = capabilities_of(driver).outcome_store if driver is not None else None
    if store is not None and records_outcomes(store):
        from .outcome_log import OutcomeLog

        sinks += (OutcomeLog(store),)
    return sinks


def flush_metrics(sinks: Sequence[MetricsSink]) -> None:
    """Flush every sink; a sink that fails is logged, never raised into the worker."""
    for sink in sinks:
        try:
            sink.flush()
        except Exception:
            logger.exception("metrics sink %r failed to flush", sink)


def timed_out(outcome: Outcome) -> bool:
    """Whether the run ended because it passed its timeout."""
    return isinstance(getattr(outcome, "error", None), JobTimeoutError)


class JobMetrics:
    """The metrics step: times each run and reports it to ``sinks``."""

    __slots__ = ("sinks",)

    def __init__(self, sinks: Sequence[MetricsSink]) -> None:
        self.sinks = tuple(sinks)

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome:
        started = time.perf_counter()
        outcome = await call_next()
        seconds = time.perf_counter() - started
        for sink in self.sinks:
            try:
                sink.record(run, outcome, seconds)
            except Exception:
                logger.exception("metrics sink %r failed to record a run", sink)
        return outcome
