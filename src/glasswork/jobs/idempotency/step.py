"""The idempotency step: run an idempotent job's handler at most once per key.

Before the handler runs, the step claims the run's key in the store with a conditional
write ("in progress" until the run's time is up). Then:

* the run is done: the key is marked completed, remembered for the job's ``expires``;
* the run failed (retry, dead letter, discard) or was cancelled: the claim is released,
  so the retry, or a redrive of the dead letter, runs again;
* the key was completed already: the delivery is acknowledged without running
  (a :class:`Duplicate` outcome, counted by the metrics);
* another run holds the key: this delivery is retried after a while
  (:class:`~glasswork.jobs.errors.JobInProgressError`), never run at the same time;
* a worker died mid-run: its claim lapses after the job's timeout, and the next delivery
  runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..errors import ConfigurationError, InvalidJobPayloadError, JobInProgressError
from ..execution import CallNext, Done, JobRun, Outcome, Retry
from .options import Idempotency, idempotency_key
from .store import IdempotencyStore

if TYPE_CHECKING:
    from ..definition import JobDefinition
    from ..drivers.contract import QueueDriver
    from ..message import JobMessage

T = TypeVar("T")
logger = logging.getLogger("glasswork.jobs")

#: How long a run may hold its key when neither the job nor the worker sets a timeout
#: (the longest a Lambda function runs).
DEFAULT_CLAIM_SECONDS = 900.0
#: The wait before a delivery that found its key in progress tries again, at most.
IN_PROGRESS_RETRY_SECONDS = 10.0


class Duplicate(Done):
    """The job's idempotency key was completed already: acknowledged without running."""

    __slots__ = ("key",)
    kind: ClassVar[str] = "duplicate"
    _fields = ("key",)

    def __init__(self, message: JobMessage | None, key: str) -> None:
        super().__init__(message)
        self.key = key


class IdempotencyStep:
    """The around-run step of idempotent jobs: ``jobs`` maps job names to their option and
    store (see :func:`idempotency_step`); ``default_timeout`` bounds claims of jobs with no
    ``timeout`` of their own."""

    __slots__ = ("default_timeout", "jobs")

    def __init__(
        self,
        jobs: Mapping[str, tuple[Idempotency, IdempotencyStore]],
        default_timeout: float | None = None,
    ) -> None:
        self.jobs = dict(jobs)
        self.default_timeout = default_timeout

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome:
        entry = self.jobs.get(run.job_name) if run.definition is not None else None
        if entry is None:
            return await call_next()
        option, store = entry
        try:
            key = self._key(run, option)
        except Exception as exc:  # the job's key function failed: the job's failure
            return await run.fail(exc)
        if key is None:
            return await call_next()
        token = os.urandom(12).hex()  # names this run's claim
        try:
            held = await _call(store, store.claim, key, token, time.time() + self._claim(run))
        except Exception as exc:
            # Whether this is a duplicate is unknown: the job fails, and is retried.
            run.ctx.logger.warning("idempotency store %r failed to claim %s", store, key)
            return await run.fail(exc)
        if held is not None:
            return self._held(run, key, held.completed, held.expires_at)
        try:
            outcome = await call_next()
        except BaseException:
            # A worker shutting down cancelled the run: free the key for the next delivery.
            _settle(run, store.release, key, token)
            raise
        if isinstance(outcome, Done):
            expires = time.time() + option.expires
            await _call(store, _settle, run, store.complete, key, token, expires)
        else:
            await _call(store, _settle, run, store.release, key, token)
        return outcome

    def _key(self, run: JobRun, option: Idempotency) -> str | None:
        if option.key is None:
            return idempotency_key(run.message.job_name, run.message.job_id)
        assert run.definition is not None
        try:
            value = run.definition.validate(run.message.payload)
        except InvalidJobPayloadError:
            return None  # the run itself dead-letters it
        key = option.key(value)
        return None if key is None else idempotency_key(run.message.job_name, key)

    def _claim(self, run: JobRun) -> float:
        """Seconds the run may hold its key: the job's timeout, else the worker's, capped
        by what is left of the Lambda invocation."""
        assert run.definition is not None
        seconds = run.definition.timeout or self.default_timeout or DEFAULT_CLAIM_SECONDS
        remaining = getattr(run.ctx.lambda_context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            seconds = min(seconds, max(1.0, remaining() / 1000))
        return seconds

    def _held(self, run: JobRun, key: str, completed: bool, expires_at: float) -> Outcome:
        if completed:
            run.ctx.logger.info("already done (idempotency key %s): acknowledged, not run", key)
            return Duplicate(run.message, key)
        left = max(0.0, expires_at - time.time())
        policy = run.definition.retry if run.definition is not None else None
        backoff = policy.delay_for(run.attempt) if policy else IN_PROGRESS_RETRY_SECONDS
        delay = min(left, backoff, IN_PROGRESS_RETRY_SECONDS)
        run.ctx.logger.info("already running elsewhere (key %s); retrying in %.1fs", key, delay)
        return Retry(run.message, delay, JobInProgressError(run.message.job_name, key, left))


def idempotency_step(
    jobs: Iterable[JobDefinition[Any]],
    driver: QueueDriver | None,
    store: IdempotencyStore | None = None,
    default_timeout: float | None = None,
) -> IdempotencyStep | None:
    """The step for the idempotent ones among ``jobs`` (None when there are none). Each job
    uses its own ``Idempotency(store=...)``, else ``store``, else the driver's default;
    a job left without one raises :class:`ConfigurationError` here, at bootstrap."""
    chosen: dict[str, tuple[Idempotency, IdempotencyStore]] = {}
    fallback = store
    for job in jobs:
        option = job.idempotency
        if option is None:
            continue
        if option.store is None and fallback is None and driver is not None:
            fallback = driver.idempotency_store()
        job_store = option.store if option.store is not None else fallback
        if job_store is None:
            raise ConfigurationError(
                f"job {job.name!r} is idempotent but has no idempotency store: pass "
                "idempotent=Idempotency(store=DynamoDBIdempotencyStore('<table>')) or the "
                "worker's idempotency_store=...; only the SQLite and mock drivers bring one"
            )
        chosen[job.name] = (option, job_store)
    return IdempotencyStep(chosen, default_timeout) if chosen else None


def _settle(run: JobRun, write: Callable[..., bool], key: str, token: str, *args: Any) -> None:
    """Complete or release a claim; a failure is logged, since the run's outcome stands and
    the claim then simply lapses at its time."""
    try:
        if not write(key, token, *args):
            run.ctx.logger.warning(
                "idempotency key %s was taken over by another run before this one settled it",
                key,
            )
    except Exception:
        run.ctx.logger.exception(
            "could not %s idempotency key %s; it lapses at the end of the run's time",
            getattr(write, "__name__", "settle"),
            key,
        )


async def _call(store: IdempotencyStore, fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn`` off the event loop when the store blocks and a loop runs (the long-running
    worker); inline otherwise (the Lambda worker runs steps without a loop)."""
    if store.blocking and asyncio._get_running_loop() is not None:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)
