"""Run one received job and decide its outcome: the only place retry rules live.

Every worker (Lambda, long-running, the mock driver's ``drain``) calls
:meth:`Executor.execute` and only translates the :class:`Outcome` it returns:

* :class:`Done`: the handler returned.
* :class:`Retry`: a transient failure below ``retry.max_attempts``; run again after ``delay``.
* :class:`DeadLetter`: a permanent failure, retries used up, an invalid payload, an unknown
  job or a malformed body; keep the message in the dead letter.
* :class:`Discard`: a failure of a job defined with ``retry=False``.
* :class:`Cancelled`: the job was asked to stop and did (:class:`JobCancelledError`, or an
  ``async def`` handler's task cancelled after ``ctx.request_cancel``); never retried.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from .context import NO_ATTRIBUTES, UNVALIDATED, JobContext, JobLogger, fields_of
from .dead_lettering import DeadLetterSender
from .decoding import BodyDecoder, StringCache
from .definition import JobDefinition
from .errors import (
    ConfigurationError,
    InvalidJobPayloadError,
    JobCancelledError,
    MalformedMessageError,
    PermanentJobError,
    TransientJobError,
    UnknownJobError,
    is_deliberate,
)
from .message import ENVELOPE_VERSION, JobMessage
from .outcomes import Cancelled, DeadLetter, Discard, Done, Outcome, Retry, done_for

if TYPE_CHECKING:
    from ..modules import Module
    from ..services import Services

logger = logging.getLogger("glasswork.jobs")
_new = object.__new__
# What execute_prepared_sync(keep_done=False) returns for a finished run: nobody reads it.
_FINISHED = Done(None)

# Outcomes and the handler's context live in their own modules; they are part of this
# module's interface (workers import them from here).
__all__ = [
    "CallNext",
    "Cancelled",
    "DeadLetter",
    "DeadLetterSender",
    "Discard",
    "Done",
    "Executor",
    "Hook",
    "JobContext",
    "JobHooks",
    "JobLogger",
    "JobRegistry",
    "JobRun",
    "Outcome",
    "Retry",
    "RunStep",
    "send_to_dead_letter",
]

# -- hooks, registry ------------------------------------------------------------------------

Hook = Callable[..., Any]
HOOK_NAMES = (
    "on_job_start",
    "on_job_complete",
    "on_job_failed",
    "on_job_dead_letter",
    "on_job_cancelled",
)


@dataclass(frozen=True, slots=True)
class JobHooks:
    """Lifecycle hooks, sync or async: ``on_job_start(job, ctx)``,
    ``on_job_complete(job, ctx)``, ``on_job_failed(job, ctx, err)``,
    ``on_job_dead_letter(job, ctx, err)``, ``on_job_cancelled(job, ctx, err)`` (a job that
    was asked to stop and did: ``on_job_failed`` is not called for it). A hook that raises
    is logged and changes nothing.
    """

    on_job_start: Hook | None = None
    on_job_complete: Hook | None = None
    on_job_failed: Hook | None = None
    on_job_dead_letter: Hook | None = None
    on_job_cancelled: Hook | None = None

    @classmethod
    def from_option(cls, hooks: JobHooks | Mapping[str, Hook] | None) -> JobHooks:
        """Accept a :class:`JobHooks`, a mapping of hook names, or None."""
        if hooks is None:
            return cls()
        if isinstance(hooks, JobHooks):
            return hooks
        if isinstance(hooks, Mapping):
            unknown = set(hooks) - set(HOOK_NAMES)
            if unknown:
                raise ConfigurationError(
                    f"unknown hook(s) {sorted(unknown)}; hooks are {', '.join(HOOK_NAMES)}"
                )
            for name, fn in hooks.items():
                if fn is not None and not callable(fn):
                    raise ConfigurationError(f"hook {name!r} must be callable, got {fn!r}")
            return cls(**hooks)
        raise ConfigurationError(f"hooks must be a mapping or JobHooks, not {hooks!r}")

    def names(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


class JobRegistry:
    """Job definitions by name; refuses two different jobs with one name."""

    def __init__(self, jobs: Iterable[JobDefinition[Any]]) -> None:
        self._jobs: dict[str, JobDefinition[Any]] = {}
        for job in jobs:
            if not isinstance(job, JobDefinition):
                raise ConfigurationError(
                    f"jobs must be made with define_job or define_periodic_job, got {job!r}"
                )
            existing = self._jobs.get(job.name)
            if existing is not None and existing is not job:
                raise ConfigurationError(
                    f"two different jobs are named {job.name!r}; job names must be unique "
                    "across a module and everything it imports"
                )
            self._jobs[job.name] = job

    @classmethod
    def for_module(cls, module: Module) -> JobRegistry:
        """Every job of ``module`` and of the modules it imports."""
        return cls(job for m in module.walk() for job in m.jobs)

    def get(self, name: str) -> JobDefinition[Any] | None:
        return self._jobs.get(name)

    def names(self) -> list[str]:
        return sorted(self._jobs)

    def __iter__(self) -> Any:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs


# -- execution ------------------------------------------------------------------------------

RunSync = Callable[..., Awaitable[Any]]


class Delivery(Protocol):
    """What :meth:`Executor.prepare_all` reads of a delivery (a
    :class:`~glasswork.jobs.drivers.records.ReceivedMessage` has it)."""

    @property
    def body(self) -> str | bytes | JobMessage: ...
    @property
    def attempt(self) -> int: ...
    @property
    def attributes(self) -> Mapping[str, Any] | None: ...


CallNext = Callable[[], Awaitable["Outcome"]]


class JobRun:
    """One delivery on its way through the around-run steps (see :class:`RunStep`).

    ``message``, ``definition`` (None for a job this worker does not know) and ``ctx`` (the
    handler's :class:`JobContext`). :meth:`fail` turns an error into the outcome the job's
    retry rules give, so a step that stops a run (a timeout, say) never decides retries itself.
    """

    __slots__ = ("_executor", "_message", "ctx", "definition")

    def __init__(
        self,
        message: JobMessage | None,
        definition: JobDefinition[Any] | None,
        ctx: JobContext,
        executor: Executor,
    ) -> None:
        self._message = message
        self.definition = definition
        self.ctx = ctx
        self._executor = executor

    @property
    def message(self) -> JobMessage:
        """The job's message."""
        message = self._message
        if message is None:
            message = self._message = self.ctx.job
        return message

    @property
    def attempt(self) -> int:
        """1 on the first delivery."""
        return self.ctx.attempt

    @property
    def job_name(self) -> str:
        """The message's job name (without reading the whole message)."""
        return str(self.ctx._fields["job_name"])

    @property
    def queue(self) -> str:
        """The message's queue (without reading the whole message)."""
        return str(self.ctx._fields["queue"])

    async def fail(self, error: BaseException) -> Outcome:
        """The outcome of this run failing with ``error`` (hooks called, as for any failure)."""
        if self.definition is None:
            return await self._executor._dead_letter(self.ctx, error, notify_failed=False)
        return await self._executor._failed(self.ctx, self.definition, error)


class RunStep(Protocol):
    """A step around every run: ``await call_next()`` runs the rest of the chain (the
    handler last) and returns its :class:`Outcome`; a step may act before and after, or
    return an outcome of its own without calling on (say, a completed idempotency key).

    Steps are how timeouts, tracing, metrics and idempotency wrap a run without the workers
    knowing about them. ``call_next`` never raises for what the job does; a step that stops a
    run early turns its reason into an outcome with :meth:`JobRun.fail`.

    A step that is sometimes idle (tracing before any SDK is configured) may also have
    ``is_active() -> bool``: while every such step is idle, runs skip them, and a chain of
    only idle steps costs a run nothing.
    """

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome: ...


class Executor:
    """Runs messages against a registry with services and hooks, returning an :class:`Outcome`.

    :meth:`execute` is a coroutine for workers with an event loop (pass ``run_sync`` to move
    sync handlers off the loop); :meth:`execute_sync` runs the same code without one.
    ``steps`` wrap every run, outermost first (see :class:`RunStep`). A worker that wants to
    look at a delivery before running it (say, to check it has time for the job) calls
    :meth:`prepare`, then :meth:`execute_prepared` or :meth:`execute_prepared_sync`.
    """

    def __init__(
        self,
        registry: JobRegistry,
        services: Services,
        hooks: JobHooks | None = None,
        log: logging.Logger | None = None,
        steps: Sequence[RunStep] = (),
    ) -> None:
        self.registry = registry
        self.services = services
        self.hooks = hooks or JobHooks()
        self.log = log or logger
        self.steps = tuple(steps)
        self._private = PrivateLoop()
        self._decoder: BodyDecoder | None = None
        #: pydantic's string cache while decoding bodies: every string (fastest) or keys
        #: only (what a long-running worker uses, to keep its memory flat).
        self.string_cache: StringCache = "all"

    @property
    def steps(self) -> tuple[RunStep, ...]:
        """The around-run steps, outermost first."""
        return self._steps

    @steps.setter
    def steps(self, steps: Sequence[RunStep]) -> None:
        self._steps: tuple[RunStep, ...] = tuple(steps)
        # Steps that may be idle, and the chain without them (used while all of them are).
        self._switchable: tuple[Callable[[], bool], ...] = tuple(
            check for step in self._steps if callable(check := getattr(step, "is_active", None))
        )
        self._always: tuple[RunStep, ...] = tuple(
            step for step in self._steps if not callable(getattr(step, "is_active", None))
        )

    def current_steps(self) -> tuple[RunStep, ...]:
        """The steps runs take now: all of them, or only those that are never idle while
        every switchable step is (a few attribute reads). A worker running a batch asks
        once for the batch (:meth:`execute_prepared_sync`'s ``steps``)."""
        if self._switchable:  # _chain(), inline: asked once a batch
            for is_active in self._switchable:
                if is_active():
                    return self._steps
            return self._always
        return self._steps

    def _chain(self) -> tuple[RunStep, ...]:
        for is_active in self._switchable:
            if is_active():
                return self._steps
        return self._always

    @classmethod
    def for_module(
        cls,
        module: Module,
        hooks: JobHooks | Mapping[str, Hook] | None = None,
        log: logging.Logger | None = None,
        steps: Sequence[RunStep] = (),
    ) -> Executor:
        """The executor of ``module``'s jobs and services (and those of its imports);
        duplicate job names raise :class:`ConfigurationError` here."""
        from ..services import Services

        return cls(
            JobRegistry.for_module(module),
            Services.for_module(module),
            JobHooks.from_option(hooks),
            log,
            steps,
        )

    async def execute(
        self,
        body: str | bytes | JobMessage,
        attempt: int = 1,
        *,
        lambda_context: Any = None,
        run_sync: RunSync | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Run one delivery of a message; never raises for anything the job does (a
        ``BaseException`` from the handler included), only for a cancellation of the
        caller's own task. ``attributes``: the delivery's, as :class:`JobContext` has them."""
        ctx = self.prepare(body, attempt, lambda_context, attributes)
        if isinstance(ctx, Outcome):
            return ctx
        return await self.execute_prepared(ctx, run_sync)

    def execute_sync(
        self,
        body: str | bytes | JobMessage,
        attempt: int = 1,
        *,
        lambda_context: Any = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """:meth:`execute` for callers without an event loop. Sync handlers run on the
        calling thread; async ones on a private loop kept for the life of the executor (so
        Lambda reuses it), where steps such as the job timeout apply to them."""
        ctx = self.prepare(body, attempt, lambda_context, attributes)
        if isinstance(ctx, Outcome):
            return ctx
        if asyncio._get_running_loop() is not None:
            return self.run_on_loop(self.execute_prepared(ctx))  # type: ignore[no-any-return]
        return self.execute_prepared_sync(ctx)

    def prepare(
        self,
        body: str | bytes | JobMessage,
        attempt: int = 1,
        lambda_context: Any = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> JobContext | Outcome:
        """Read one delivery: the :class:`JobContext` of its run (``ctx.definition`` is the
        job, None for one this worker does not know), or the :class:`DeadLetter` of a body
        that is not a job envelope (logged). ``attributes``: what the queue says of the
        delivery (``ctx.attributes``)."""
        job: JobMessage | None = None
        definition: JobDefinition[Any] | None
        max_attempts: int | None
        if type(body) is str or not isinstance(body, JobMessage):
            decoder = self._decoder
            if decoder is None:
                decoder = self._decoder = BodyDecoder(self.registry, self.string_cache)
            try:  # decoder.decode(body), inline: a call less per message
                fields = decoder.validator.validate_json(body)
            except ValidationError:
                fields = None
            if fields is not None and fields["version"] == ENVELOPE_VERSION:
                # The common case: the envelope and the payload are valid, in one go; the
                # message itself is parsed from the body only if someone asks for it.
                definition, max_attempts = decoder.jobs[fields["job_name"]]
            else:
                try:
                    job = JobMessage.from_json(body)
                except MalformedMessageError as exc:
                    self.log.error(
                        "dead-lettering a malformed message: %s; body: %.1000r", exc, body
                    )
                    return DeadLetter(None, str(exc), exc)
        else:
            job = body
        if job is not None:
            definition = self.registry.get(job.job_name)
            retry = definition.retry if definition is not None else None
            max_attempts = retry.max_attempts if retry is not None else None
            fields = fields_of(job)
        # A JobContext with `job` and `logger` made on first read (their slots left unset),
        # built here rather than by a constructor: this runs once per message.
        ctx = _new(JobContext)
        ctx.services = self.services
        ctx._log = self.log
        ctx._body = None if job is not None else body  # type: ignore[assignment]
        ctx._fields = fields
        ctx.attempt = attempt
        ctx.max_attempts = max_attempts
        ctx.lambda_context = lambda_context
        ctx.attributes = attributes or NO_ATTRIBUTES
        ctx.definition = definition
        if job is not None:
            ctx._job = job
        return ctx

    def prepare_all(
        self, deliveries: Iterable[Delivery], lambda_context: Any = None
    ) -> list[JobContext | Outcome]:
        """:meth:`prepare` for each of ``deliveries``, in order (a batch's records). The
        common case, a valid envelope in a text body, is read here without a call per
        delivery; any other body goes through :meth:`prepare`."""
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = BodyDecoder(self.registry, self.string_cache)
        validate = decoder.validator.validate_json
        jobs = decoder.jobs
        services = self.services
        log = self.log
        prepared: list[JobContext | Outcome] = []
        append = prepared.append
        for delivery in deliveries:
            body = delivery.body
            if type(body) is str:
                try:
                    fields = validate(body)
                except ValidationError:
                    fields = None
                if fields is not None and fields["version"] == ENVELOPE_VERSION:
                    # As prepare() builds it for the common case.
                    definition, max_attempts = jobs[fields["job_name"]]
                    ctx = _new(JobContext)
                    ctx.services = services
                    ctx._log = log
                    ctx._body = body
                    ctx._fields = fields
                    ctx.attempt = delivery.attempt
                    ctx.max_attempts = max_attempts
                    ctx.lambda_context = lambda_context
                    ctx.attributes = delivery.attributes or NO_ATTRIBUTES
                    ctx.definition = definition
                    append(ctx)
                    continue
            append(self.prepare(body, delivery.attempt, lambda_context, delivery.attributes))
        return prepared

    def execute_prepared(
        self, ctx: JobContext, run_sync: RunSync | None = None
    ) -> Awaitable[Outcome]:
        """Run a prepared delivery through the steps and the handler (a coroutine)."""
        return self._execute_with(self.current_steps(), ctx, run_sync)

    def _execute_with(
        self, chain: tuple[RunStep, ...], ctx: JobContext, run_sync: RunSync | None
    ) -> Awaitable[Outcome]:
        if not chain:  # the hot path: no chain to build
            return self._run(ctx, run_sync)
        return self._call_step(chain, 0, JobRun(None, ctx.definition, ctx, self), run_sync)

    def execute_prepared_sync(
        self,
        ctx: JobContext,
        log_done: bool | None = None,
        steps: tuple[RunStep, ...] | None = None,
        keep_done: bool = True,
    ) -> Outcome:
        """:meth:`execute_prepared` on the calling thread, which must not be running an
        event loop: sync handlers run here; async handlers (with their steps) and async
        hooks on the private loop (:attr:`loop`). ``log_done`` says whether the DEBUG line
        of a finished job is wanted, and ``steps`` what :meth:`current_steps` said (None:
        ask now; a worker running a batch asks once for all its runs). ``keep_done=False``:
        the caller looks only at failures, so a run that finished on this path may return
        a shared, empty :class:`Done` (no context, no value) rather than its own."""
        definition: JobDefinition[Any] | None = ctx.definition
        value = ctx._fields["payload"]
        if steps is None:
            steps = self._chain() if self._switchable else self._steps
        if definition is not None and definition.is_async:
            # The whole run on the private loop, so steps such as the job's timeout bound
            # it there (driven without a loop, they could not).
            ran: Outcome = self.run_on_loop(self._execute_with(steps, ctx, None))
            return ran
        if steps or definition is None or value is UNVALIDATED:
            outcome: Outcome = _drive(self._execute_with(steps, ctx, None))
            return outcome
        # The Lambda worker's hot path: _run's hooks, in the same order, and the same
        # classification, without a coroutine per message (tests/test_execution_paths.py
        # holds it to _run). With no event loop running, a
        # CancelledError here can only be the job's own: a failure, like any other.
        hooks = self.hooks
        if hooks.on_job_start is not None:
            _drive(self._hook(hooks.on_job_start, ctx))
        try:
            result = definition._call(value, ctx)  # definition.run, inline: a call less
            if result is not None and inspect.isawaitable(result):
                result = self.run_on_loop(as_coroutine(result))
        except BaseException as exc:
            failed: Outcome = _drive(self._failed(ctx, definition, exc))
            return failed
        if hooks.on_job_complete is not None:
            _drive(self._hook(hooks.on_job_complete, ctx))
        if log_done or (log_done is None and self.log.isEnabledFor(logging.DEBUG)):
            ctx.logger.debug("done")
        if not keep_done:
            return _FINISHED
        done = _new(Done)  # done_for(ctx, result), inline: once per message
        done._message = None
        done._ctx = ctx
        done.value = result
        return done

    def run_on_loop(self, coro: Awaitable[Any]) -> Any:
        """Run ``coro`` to completion on the executor's private loop (see
        :class:`~glasswork.jobs.loops.PrivateLoop`)."""
        return self._private.run(coro)

    def _call_step(
        self, chain: tuple[RunStep, ...], index: int, run: JobRun, run_sync: RunSync | None
    ) -> Awaitable[Outcome]:
        if index == len(chain):
            return self._run(run.ctx, run_sync)
        return chain[index](run, lambda: self._call_step(chain, index + 1, run, run_sync))

    async def _run(self, ctx: JobContext, run_sync: RunSync | None) -> Outcome:
        """Validate, call the hooks and the handler, and classify what happened."""
        definition: JobDefinition[Any] | None = ctx.definition
        if definition is None:
            unknown = UnknownJobError(ctx.job.job_name, self.registry.names())
            return await self._dead_letter(ctx, unknown, notify_failed=False)

        value = ctx._fields["payload"]
        if value is UNVALIDATED:
            try:
                value = definition.validate(ctx.job.payload)
            except InvalidJobPayloadError as exc:
                return await self._dead_letter(ctx, exc)

        # The `is not None` tests below skip a coroutine per unused hook and per sync
        # handler's None result: this is the per-message hot path of every worker.
        hooks = self.hooks
        if hooks.on_job_start is not None:
            await self._hook(hooks.on_job_start, ctx)
        try:
            if run_sync is None or definition.is_async:
                result = definition.run(value, ctx)
            else:
                result = await run_sync(definition.run, value, ctx)
            if result is not None and inspect.isawaitable(result):
                result = await self._await(result)
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt, GeneratorExit or a CancelledError the handler
            # raised itself are this job's failure; only a cancellation of our own task (a
            # timeout step, a worker shutting down) passes through, unless the job was asked
            # to stop: that cancellation is its end.
            if _cancelled_from_outside(exc):
                if not ctx.cancelled:
                    raise
                return await self.cancelled(ctx, exc)
            return await self._failed(ctx, definition, exc)
        if hooks.on_job_complete is not None:
            await self._hook(hooks.on_job_complete, ctx)
        if self.log.isEnabledFor(logging.DEBUG):
            ctx.logger.debug("done")
        return done_for(ctx, result)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The private event loop async handlers run on when no loop is running (made on
        first use and kept, so a Lambda container reuses it between invocations)."""
        return self._private.loop

    async def _await(self, awaitable: Awaitable[Any]) -> Any:
        if asyncio._get_running_loop() is not None:
            return await awaitable
        return self.run_on_loop(as_coroutine(awaitable))

    async def _failed(
        self, ctx: JobContext, definition: JobDefinition[Any], error: BaseException
    ) -> Outcome:
        """The outcome of a run that raised ``error``, logged once: WARNING for a retry or a
        discard, ERROR for a dead letter. The first attempt's line (and the dead letter's)
        carries the traceback, except for a deliberate job error (see
        :func:`~glasswork.jobs.errors.failure_traceback`). Workers log no failure lines of
        their own: this is the one place, for Lambda and the long-running worker alike.

        The rules, first match wins: a :class:`JobCancelledError`, or any failure of a job
        asked to stop (``ctx.cancelled``), cancels; a :class:`PermanentJobError`
        dead-letters; a :class:`TransientJobError` is retried; an error of the job's
        ``retry["dead_letter_on"]`` (and not more closely of its ``retry_on``) dead-letters;
        anything else is retried, until ``max_attempts``."""
        if isinstance(error, JobCancelledError) or ctx.cancelled:
            return await self.cancelled(ctx, error)
        policy = definition.retry
        if isinstance(error, PermanentJobError) or (
            policy is not None
            and policy.dead_letter_on
            and not isinstance(error, TransientJobError)
            and policy.dead_letters(error)
        ):
            return await self._dead_letter(ctx, error)
        await self._hook(self.hooks.on_job_failed, ctx, error)
        if policy is None:
            ctx.logger.warning(
                "failed and discarded (retry=False): %r", error, exc_info=_traced(error)
            )
            return Discard(ctx.job, _describe(error), error)
        if ctx.attempt >= policy.max_attempts:
            reason = f"failed {ctx.attempt} of {policy.max_attempts} attempts: {_describe(error)}"
            return await self._dead_letter(ctx, error, reason=reason, notify_failed=False)
        retry_after = error.retry_after if isinstance(error, TransientJobError) else None
        delay = retry_after if retry_after is not None else policy.delay_for(ctx.attempt)
        ctx.logger.warning(
            "attempt %d of %d failed, retrying in %.1fs: %r",
            ctx.attempt,
            policy.max_attempts,
            delay,
            error,
            # Later attempts leave it out: it was shown at the first failure.
            exc_info=_traced(error) if ctx.attempt == 1 else None,
        )
        return Retry(ctx.job, delay, error)

    async def cancelled(self, ctx: JobContext, error: BaseException | None = None) -> Cancelled:
        """The outcome of a run that stopped because it was asked to (``error``: the
        :class:`JobCancelledError`, the cancellation of an async handler's task, or how a
        job asked to stop failed; None: it was asked before it started), logged at INFO,
        ``on_job_cancelled`` called with a :class:`JobCancelledError`. Must be awaited from
        the job's own task, if it has one (its cancellation, the job's end, is taken back)."""
        if isinstance(error, JobCancelledError):
            reason = error.reason
        else:
            if isinstance(error, asyncio.CancelledError):
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            reason = ctx.cancel_reason or "cancelled"
            cause, error = error, JobCancelledError(reason)
            error.__cause__ = cause
        ctx.logger.info("cancelled: %s", reason)
        await self._hook(self.hooks.on_job_cancelled, ctx, error)
        return Cancelled(ctx.job, reason, error)

    async def _dead_letter(
        self,
        ctx: JobContext,
        error: BaseException,
        *,
        reason: str | None = None,
        notify_failed: bool = True,
    ) -> DeadLetter:
        if notify_failed:
            await self._hook(self.hooks.on_job_failed, ctx, error)
        reason = reason or _describe(error)
        ctx.logger.error("dead-lettered: %s", reason, exc_info=_traced(error))
        await self._hook(self.hooks.on_job_dead_letter, ctx, error)
        return DeadLetter(ctx.job, reason, error)

    async def _hook(self, hook: Hook | None, ctx: JobContext, *error: BaseException) -> None:
        if hook is None:
            return
        try:
            result = hook(ctx.job, ctx, *error)
            if inspect.isawaitable(result):
                await self._await(result)
        except BaseException as exc:
            if _cancelled_from_outside(exc):
                raise
            ctx.logger.exception("hook %s raised; the job's outcome is unchanged", _name(hook))


def _cancelled_from_outside(error: BaseException) -> bool:
    """Whether ``error`` is a cancellation of the running task (by a timeout or a worker),
    as opposed to a CancelledError that job code raised on its own."""
    if not isinstance(error, asyncio.CancelledError):
        return False
    task = asyncio.current_task() if asyncio._get_running_loop() is not None else None
    return task is not None and task.cancelling() > 0


def _drive(coro: Awaitable[Any]) -> Any:
    """Run a coroutine that never suspends (no event loop is running: every await inside
    completes at once, see :meth:`Executor._await`) to its result."""
    try:
        coro.send(None)  # type: ignore[attr-defined]
    except StopIteration as finished:
        return finished.value
    coro.close()  # type: ignore[attr-defined]
    raise RuntimeError("job execution suspended outside an event loop")


def send_to_dead_letter(
    sender: DeadLetterSender,
    body: str,
    outcome: DeadLetter,
    queue: str,
    log: logging.Logger,
) -> bool:
    """Hand a :class:`DeadLetter` outcome's message (with its reason and traceback) to the
    driver of ``sender``; shared by every worker. True: it is dealt with (kept, or logged at
    ERROR when the driver has no dead letter), so acknowledge it. False: the send failed, so
    keep the message for retry."""
    try:
        kept = sender.send(body, outcome, queue)
    except Exception:
        log.exception("dead-letter send failed; reporting the message for retry")
        return False
    if not kept:
        log.error(
            "no dead-letter queue configured; dropping message after logging it. "
            "reason: %s; body: %s",
            outcome.reason,
            body,
        )
    return True


def _traced(error: BaseException) -> BaseException | None:
    """``exc_info`` for a failure's log line: None for a deliberate job error."""
    return None if is_deliberate(error) else error


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


# -- the private event loop ------------------------------------------------------------------


class PrivateLoop:
    """One event loop, made on first use and kept, so a Lambda container reuses it between
    invocations; :meth:`run` runs a coroutine to completion on it."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop

    def run(self, coro: Awaitable[Any]) -> Any:
        """Run ``coro`` to completion here; from a thread whose own loop is running (an
        async caller), on a fresh loop in a helper thread instead."""
        if asyncio._get_running_loop() is not None:
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, as_coroutine(coro)).result()
        loop = self.loop
        try:
            return loop.run_until_complete(coro)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # SystemExit/KeyboardInterrupt leave the loop mid-iteration, with a stale
                # stop callback queued: start the next run on a fresh loop.
                self._loop = None
                loop.close()
            raise


async def as_coroutine(awaitable: Awaitable[Any]) -> Any:
    """Any awaitable as a coroutine (what ``run_until_complete`` and ``asyncio.run`` take)."""
    return await awaitable
