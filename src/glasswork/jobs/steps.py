"""The around-run chain every worker builds: one place decides which steps wrap a run, and
in what order (outermost first).

Order, and why:

1. :class:`~glasswork.jobs.telemetry.Tracing` (while tracing is on), outermost, so the
   CONSUMER span covers everything the run does, idempotency checks and driver steps
   included, and is the current span for all of it (their logs and the handler's own spans
   land in the job's trace); its status is the run's final outcome;
2. :class:`~glasswork.jobs.metrics.JobMetrics` (when the worker has ``metrics`` sinks, the
   dashboard's :class:`~glasswork.jobs.metrics.OutcomeLog` among them), so the counts and durations
   are those of the final outcome too: a timeout, a duplicate skipped by idempotency,
   whatever a user step decided;
3. the worker's own ``steps`` (user steps) see the outcome of everything below;
4. the driver's steps (:meth:`~glasswork.jobs.QueueDriver.run_steps`) settle what the
   driver holds for a finished job, a skipped duplicate included;
5. :class:`~glasswork.jobs.idempotency.IdempotencyStep` (for idempotent jobs) sits right
   around the timed run: it claims the key before the run and completes or releases it
   after, outside the timeout, so a timeout can never cancel its store writes half way
   and a timed-out run frees its key for the retry;
6. :class:`~glasswork.jobs.timeouts.JobTimeout`, innermost, so what it cancels is the run
   itself and every step above sees the timeout as an ordinary transient failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .idempotency.step import idempotency_step
from .metrics.sink import JobMetrics
from .telemetry import consumer_step
from .timeouts import JobTimeout

if TYPE_CHECKING:
    from .definition import JobDefinition
    from .drivers.contract import QueueDriver
    from .execution import RunStep
    from .idempotency.store import IdempotencyStore
    from .metrics.sink import MetricsSink


def worker_steps(
    jobs: Iterable[JobDefinition[Any]],
    driver: QueueDriver | None,
    steps: Sequence[RunStep] = (),
    *,
    default_timeout: float | None = None,
    metrics: Sequence[MetricsSink] = (),
    idempotency_store: IdempotencyStore | None = None,
) -> list[RunStep]:
    """The chain for a worker running ``jobs`` on ``driver``, with the user's ``steps``, a
    default job timeout (None: only jobs with their own ``timeout`` are bounded), metrics
    sinks and a default store for idempotent jobs. A step with nothing to do is left out:
    an empty chain costs nothing per run."""
    jobs = list(jobs)
    chain: list[RunStep] = []
    tracing = consumer_step(driver)
    if tracing is not None:
        chain.append(tracing)
    if metrics:
        chain.append(JobMetrics(metrics))
    chain.extend(steps)
    if driver is not None:
        chain.extend(driver.run_steps())
    idempotency = idempotency_step(jobs, driver, idempotency_store, default_timeout)
    if idempotency is not None:
        chain.append(idempotency)
    if default_timeout is not None or any(job.timeout is not None for job in jobs):
        chain.append(JobTimeout(default_timeout))
    return chain
