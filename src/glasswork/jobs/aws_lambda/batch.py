"""Run the records of one SQS batch for the Lambda worker.

* A batch of sync jobs runs in order on the calling thread, with no event loop: the
  cheapest path, and the one most handlers take.
* A batch with async jobs (or with ``sync_concurrency`` above 1) runs on one event loop:
  async handlers concurrently, up to ``batch_concurrency`` records at a time; sync handlers
  inline in order, or on a pool of ``sync_concurrency`` threads.
* FIFO queues: the records of one ``MessageGroupId`` run one after another, in order;
  different groups may run side by side. Once a record of a group is to be retried, for
  whatever reason, the later records of that group are held back (reported too), so the
  group's order holds; other groups go on.
* Time: no record starts unless the invocation has time left for it (the job's ``timeout``
  when set, else the longest record of the batch so far) plus ``deadline_margin`` to settle
  the batch; async records still running at that point are cancelled. Both are reported
  for retry; a finished record never is.

Each outcome is handed to ``settle`` (the worker's dead-letter and retry-delay path), which
returns why the record must be reported for retry, or None.

With a :class:`~glasswork.jobs.aws_lambda.watch.BatchWatch` (a driver that keeps statuses),
the batch's jobs are watched while it runs (cancellations, progress), a job cancelled
before its turn does not start (it ends cancelled), and every run is kept in
:attr:`BatchResult.ran` for the status store; without one, none of this is done.

The records come read, as :class:`~glasswork.jobs.aws_lambda.records.LambdaMessage` s. The two
loops (in order, and on an event loop) share what is done for one message before it runs
(:meth:`BatchRunner._admit`) and after (:meth:`BatchRunner._settled`); the loop in order
inlines only the common case, a run with no deadline that finished, so it costs no call.
tests/test_lambda_batch_paths.py runs the same batches through both and compares them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..execution import Done, Executor, JobContext, Outcome, RunSync
from .limits import LIMITS_FAILED, LambdaLimits
from .records import LambdaMessage
from .status import Ran
from .watch import BatchWatch

Settle = Callable[[LambdaMessage, Outcome], "str | None"]
Prepared = JobContext | Outcome

# Why a message is reported for retry (besides what ``settle`` says).
HELD_BACK = "held back behind an earlier record of its FIFO group"
NO_TIME = "not started: too little time left in the invocation"
CUT = "stopped at the invocation's deadline"
FAULT = "the worker could not settle it"


class BatchResult:
    """What a batch left to do: ``reported`` (message, why) pairs to retry, in record order
    within each FIFO group; ``counts`` of outcome kinds (when asked for); the ``job_names``
    seen (when asked for); the batch's ``deadline`` (``time.monotonic()``; None without a
    Lambda context) and the time it had at the start (``seconds_left``); the records that
    ``ran`` (or began to), for the status store (when asked for: see
    :data:`~glasswork.jobs.aws_lambda.status.Ran`)."""

    __slots__ = ("counts", "deadline", "job_names", "ran", "reported", "seconds_left")

    def __init__(self, deadline: float | None, count: bool, names: bool, ran: bool = False) -> None:
        self.reported: list[tuple[LambdaMessage, str]] = []
        self.counts: Counter[str] | None = Counter() if count else None
        self.job_names: set[str] | None = set() if names else None
        self.ran: list[Ran] | None = [] if ran else None
        self.deadline = deadline
        self.seconds_left = None if deadline is None else deadline - time.monotonic()


class BatchRunner:
    """Runs batches through ``executor``; see the module docstring."""

    def __init__(
        self,
        executor: Executor,
        settle: Settle,
        *,
        batch_concurrency: int | None = None,
        sync_concurrency: int = 1,
        deadline_margin: float = 0.5,
        log: logging.Logger,
        watch: BatchWatch | None = None,
        limits: LambdaLimits | None = None,
    ) -> None:
        self.executor = executor
        self.watch = watch
        self.limits = limits
        self.settle = settle
        self.batch_concurrency = batch_concurrency
        self.sync_concurrency = sync_concurrency
        self.deadline_margin = deadline_margin
        self.log = log
        self._longest = 0.0  # of the current batch; batches do not overlap
        self._fifo = False  # the current batch's queue is FIFO
        self._pool: ThreadPoolExecutor | None = None
        self._async_jobs = any(job.is_async for job in executor.registry)

    def run(
        self,
        messages: Sequence[LambdaMessage],
        context: Any,
        *,
        fifo: bool,
        job_names: bool = False,
    ) -> BatchResult:
        """Run ``messages`` (the records of an SQS event) with the Lambda ``context``."""
        watch = self.watch
        result = BatchResult(
            self._deadline(context),
            self.log.isEnabledFor(logging.INFO),
            job_names,
            ran=watch is not None,
        )
        self._longest = 0.0
        self._fifo = fifo
        prepared = self.executor.prepare_all(messages, context)
        if watch is None:
            self._run(messages, prepared, result, fifo)
            return result
        watch.begin([c for c in prepared if type(c) is JobContext])
        try:
            self._run(messages, prepared, result, fifo)
        finally:
            watch.end()
        return result

    def _run(
        self,
        messages: Sequence[LambdaMessage],
        prepared: list[Prepared],
        result: BatchResult,
        fifo: bool,
    ) -> None:
        if (
            (self._async_jobs or self.sync_concurrency > 1)
            and (
                self.sync_concurrency > 1
                or any(type(c) is JobContext and _is_async(c) for c in prepared)
            )
        ) or asyncio._get_running_loop() is not None:
            pairs = list(zip(messages, prepared, strict=True))
            self.executor.run_on_loop(self._run_concurrently(pairs, result, fifo))
        else:
            self._run_in_order(messages, prepared, result, fifo)

    def run_watched(self, ctx: JobContext) -> Outcome:
        """Run one job (an EventBridge event's) watched by :attr:`watch`, which must be set."""
        watch = self.watch
        assert watch is not None
        watch.begin([ctx])
        try:
            if _is_async(ctx) or asyncio._get_running_loop() is not None:
                ran: Outcome = self.executor.run_on_loop(self._execute_watched(watch, ctx, None))
                return ran
            if ctx.cancelled:
                ran = self.executor.run_on_loop(self.executor.cancelled(ctx))
                return ran
            return self.executor.execute_prepared_sync(ctx)
        finally:
            watch.end()

    # -- in order, no event loop -------------------------------------------------------------

    def _run_in_order(
        self,
        messages: Sequence[LambdaMessage],
        prepared: list[Prepared],
        result: BatchResult,
        fifo: bool,
    ) -> None:
        """Run messages one after another: the worker's per-message hot path."""
        execute = self.executor.execute_prepared_sync
        log_done = self.executor.log.isEnabledFor(logging.DEBUG)
        # Chosen once a batch: a tracing SDK set up mid-batch applies from the next one.
        steps = self.executor.current_steps()
        watched = result.ran is not None
        plain = (
            result.deadline is None
            and result.job_names is None
            and not watched
            and self.limits is None
        )
        counts = result.counts
        keep = counts is not None or watched  # every outcome, not only failures
        held: set[Any] | None = set() if fifo else None
        for message, ctx in zip(messages, prepared, strict=True):
            if held and message.group in held:
                result.reported.append((message, HELD_BACK))
                continue
            outcome: Outcome
            if type(ctx) is not JobContext:
                outcome = ctx  # type: ignore[assignment]  # prepare() gave an outcome
            elif plain:
                outcome = execute(ctx, log_done, steps, keep)
            else:
                why = self._admit(message, ctx, result)
                if why is not None:
                    if why:
                        self._report(message, why, result, held)
                    continue
                if watched and ctx.cancelled:  # asked to stop while it waited (BatchWatch)
                    outcome = self.executor.run_on_loop(self.executor.cancelled(ctx))
                else:
                    started = time.monotonic()
                    outcome = execute(ctx, log_done, steps)
                    self._ran(started)
            if keep or type(outcome) is not Done:
                why = self._settled(message, outcome, result, ctx)
                if why is not None:
                    self._report(message, why, result, held)

    # -- on an event loop --------------------------------------------------------------------

    async def _run_concurrently(
        self, pairs: list[tuple[LambdaMessage, Prepared]], result: BatchResult, fifo: bool
    ) -> None:
        limit = self.batch_concurrency
        gate = asyncio.Semaphore(limit) if limit is not None and limit < len(pairs) else None
        run_sync = self._run_in_pool if self.sync_concurrency > 1 else None

        async def one(message: LambdaMessage, ctx: Prepared) -> bool:
            if gate is None:
                return await self._one(message, ctx, result, run_sync)
            async with gate:
                return await self._one(message, ctx, result, run_sync)

        async def group(items: list[tuple[LambdaMessage, Prepared]]) -> None:
            for index, (message, ctx) in enumerate(items):
                if await one(message, ctx):
                    result.reported.extend((m, HELD_BACK) for m, _ in items[index + 1 :])
                    return

        tasks: Iterable[Awaitable[Any]]
        if fifo:
            groups: dict[Any, list[tuple[LambdaMessage, Prepared]]] = {}
            for pair in pairs:
                groups.setdefault(pair[0].group, []).append(pair)
            tasks = (group(items) for items in groups.values())
        else:
            tasks = (one(message, ctx) for message, ctx in pairs)
        await asyncio.gather(*tasks)

    async def _one(
        self,
        message: LambdaMessage,
        ctx: Prepared,
        result: BatchResult,
        run_sync: RunSync | None,
    ) -> bool:
        """Run one message; True when it is reported for retry."""
        if isinstance(ctx, JobContext):
            why = self._admit(message, ctx, result)
            if why is not None:
                if not why:  # put back by its limits, not to be reported
                    return False
                self._report(message, why, result, None)
                return True
            deadline = result.deadline
            if deadline is None:
                outcome = await self._execute(ctx, run_sync)
            else:
                started = time.monotonic()
                try:
                    # The loop's clock is time.monotonic(), the deadline's clock.
                    async with asyncio.timeout_at(deadline):
                        outcome = await self._execute(ctx, run_sync)
                except TimeoutError:
                    if result.ran is not None:
                        result.ran.append((message, ctx, None, CUT))
                    self._report(message, CUT, result, None)
                    return True
                self._ran(started)
        else:
            outcome = ctx
        why = self._settled(message, outcome, result, ctx)
        if why is None:
            return False
        self._report(message, why, result, None)
        return True

    def _execute(self, ctx: JobContext, run_sync: RunSync | None) -> Awaitable[Outcome]:
        if self.watch is None:
            return self.executor.execute_prepared(ctx, run_sync)
        return self._execute_watched(self.watch, ctx, run_sync)

    async def _execute_watched(
        self, watch: BatchWatch, ctx: JobContext, run_sync: RunSync | None
    ) -> Outcome:
        """Run ``ctx``'s job so that its cancellation reaches it (see :class:`BatchWatch`)."""
        executor = self.executor
        if ctx.cancelled:  # asked to stop while it waited its turn
            return await executor.cancelled(ctx)
        if not _is_async(ctx):
            return await executor.execute_prepared(ctx, run_sync)
        watch.running(ctx)
        try:
            return await executor.execute_prepared(ctx, run_sync)
        except asyncio.CancelledError as exc:
            # Asked to stop outside the handler (in a step): the job's end all the same.
            if ctx.cancel_reason is None:
                raise
            return await executor.cancelled(ctx, exc)
        finally:
            watch.stopped(ctx)

    # -- one message: shared by both loops ---------------------------------------------------

    def _admit(self, message: LambdaMessage, ctx: JobContext, result: BatchResult) -> str | None:
        """Before a run: note its job's name (when asked for); why it must not start
        (:data:`NO_TIME`, or its limits), ``""`` when its limits put it back unreported, or
        None."""
        definition = ctx.definition
        if result.job_names is not None and definition is not None:
            result.job_names.add(definition.name)
        deadline = result.deadline
        if deadline is not None:
            needed = definition.timeout if definition is not None else None
            if time.monotonic() + (needed or self._longest) >= deadline:
                return NO_TIME
        if self.limits is None:
            return None
        why = self.limits.may_start(message, ctx, self._fifo)
        if why is not None and result.counts is not None:
            result.counts["throttled"] += why != LIMITS_FAILED
        return why

    def _ran(self, started: float) -> None:
        """After a run that started at ``started``: the longest run of the batch so far."""
        self._longest = max(self._longest, time.monotonic() - started)

    def _settled(
        self, message: LambdaMessage, outcome: Outcome, result: BatchResult, ctx: Prepared
    ) -> str | None:
        """After a run (or a body that is no job, whose ``ctx`` is its outcome): count the
        outcome (when asked for), settle it and keep it in ``result.ran`` (when asked for);
        why the message is reported for retry, or None."""
        if result.counts is not None:
            result.counts[outcome.kind] += 1
        why: str | None = None
        if type(outcome) is not Done:
            try:
                why = self.settle(message, outcome)
            except Exception:  # a fault of the worker, not of the job: keep the message
                self.log.exception(
                    "could not settle message %s; reporting it", message.message_id or "?"
                )
                why = FAULT
        if result.ran is not None:
            result.ran.append((message, ctx if type(ctx) is JobContext else None, outcome, why))
        return why

    @staticmethod
    def _report(
        message: LambdaMessage, why: str, result: BatchResult, held: set[Any] | None
    ) -> None:
        result.reported.append((message, why))
        if held is not None:
            held.add(message.group)

    def _run_in_pool(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.sync_concurrency, thread_name_prefix="glasswork-lambda"
            )
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _deadline(self, context: Any) -> float | None:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return None
        return time.monotonic() + float(remaining()) / 1000 - self.deadline_margin


def _is_async(ctx: JobContext) -> bool:
    return ctx.definition is not None and ctx.definition.is_async
