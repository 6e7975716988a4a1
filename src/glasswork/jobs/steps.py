"""The around-run chain every worker builds: one place decides which steps wrap a run, and
in what order (outermost first).

Order, and why:

0. :class:`~glasswork.jobs.outcome_log.OutcomeLog`, when the driver can store outcome counts
   (``record_outcomes``, as SQLite's can; ``driver.records_outcomes = False`` opts out),
   outermost, so it counts what the worker does;
1. the worker's own ``steps`` (user steps) see the final outcome of everything below;
2. the driver's steps (:meth:`~glasswork.jobs.QueueDriver.run_steps`) settle what the
   driver holds for a finished job;
3. :class:`~glasswork.jobs.timeouts.JobTimeout`, innermost, so what it cancels is the run
   itself and every step above sees the timeout as an ordinary transient failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .timeouts import JobTimeout

if TYPE_CHECKING:
    from .definition import JobDefinition
    from .drivers.base import QueueDriver
    from .execution import RunStep


def worker_steps(
    jobs: Iterable[JobDefinition[Any]],
    driver: QueueDriver | None,
    steps: Sequence[RunStep] = (),
    *,
    default_timeout: float | None = None,
) -> list[RunStep]:
    """The chain for a worker running ``jobs`` on ``driver``, with the user's ``steps`` and a
    default job timeout (None: only jobs with their own ``timeout`` are bounded). A step
    with nothing to do is left out: an empty chain costs nothing per run."""
    chain: list[RunStep] = []
    if _stores_outcomes(driver):
        from .outcome_log import OutcomeLog

        chain.append(OutcomeLog(driver))  # type: ignore[arg-type]
    chain.extend(steps)
    if driver is not None:
        chain.extend(driver.run_steps())
    if default_timeout is not None or any(job.timeout is not None for job in jobs):
        chain.append(JobTimeout(default_timeout))
    return chain


def _stores_outcomes(driver: QueueDriver | None) -> bool:
    return callable(getattr(driver, "record_outcomes", None)) and bool(
        getattr(driver, "records_outcomes", True)
    )
