"""The per-job timeout: an around-run step that bounds each run.

A job's ``timeout`` (``define_job(timeout=...)``), else the worker's default, limits one run.
Past it, the run is cancelled and fails with :class:`~glasswork.jobs.JobTimeoutError`, a
transient error: retried up to ``retry.max_attempts``, then dead-lettered.

* ``async def`` handlers are cancelled at the timeout.
* A sync handler running in a worker's thread cannot be interrupted: the worker stops
  waiting for it, frees its slot and settles the job; the thread runs on, abandoned, and its
  late result is ignored.
* A sync handler called inline (the Lambda worker runs them on its own thread, with no
  event loop) is not bounded here; the Lambda worker uses the timeout to decide whether a
  record can still finish in the invocation's remaining time.
"""

from __future__ import annotations

import asyncio

from .errors import JobTimeoutError
from .execution import CallNext, JobRun, Outcome


class JobTimeout:
    """The timeout step: ``JobTimeout(default=900)`` bounds every run by the job's own
    ``timeout``, else ``default`` seconds (None: only jobs with a timeout are bounded)."""

    __slots__ = ("default",)

    def __init__(self, default: float | None = None) -> None:
        if default is not None and not default > 0:
            raise ValueError(f"a default job timeout must be positive seconds, got {default!r}")
        self.default = default

    def seconds_for(self, run: JobRun) -> float | None:
        """The limit of ``run``: its job's timeout, else the default."""
        own = run.definition.timeout if run.definition is not None else None
        return own if own is not None else self.default

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome:
        seconds = self.seconds_for(run)
        if seconds is None or asyncio._get_running_loop() is None:
            return await call_next()
        try:
            async with asyncio.timeout(seconds):
                return await call_next()
        except TimeoutError:
            # Only our own deadline lands here: call_next turns whatever the job raised
            # (its own TimeoutError included) into an outcome. run.fail logs the failure
            # (its error says it timed out): one line per failed run.
            return await run.fail(JobTimeoutError(run.job_name, seconds))
