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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..execution import Done, Executor, JobContext, Outcome, RunSync

Record = Mapping[str, Any]
Settle = Callable[[Record, Outcome], "str | None"]

# Why a record is reported for retry (besides what ``settle`` says).
HELD_BACK = "held back behind an earlier record of its FIFO group"
NO_TIME = "not started: too little time left in the invocation"
CUT = "stopped at the invocation's deadline"
FAULT = "the worker could not settle it"


class BatchResult:
    """What a batch left to do: ``reported`` (record, why) pairs to retry, in record order
    within each FIFO group; ``counts`` of outcome kinds (when asked for); the ``job_names``
    seen (when asked for); the batch's ``deadline`` (``time.monotonic()``; None without a
    Lambda context) and the time it had at the start (``seconds_left``)."""

    __slots__ = ("counts", "deadline", "job_names", "reported", "seconds_left")

    def __init__(self, deadline: float | None, count: bool, names: bool) -> None:
        self.reported: list[tuple[Record, str]] = []
        self.counts: Counter[str] | None = Counter() if count else None
        self.job_names: set[str] | None = set() if names else None
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
    ) -> None:
        self.executor = executor
        self.settle = settle
        self.batch_concurrency = batch_concurrency
        self.sync_concurrency = sync_concurrency
        self.deadline_margin = deadline_margin
        self.log = log
        self._longest = 0.0  # of the current batch; batches do not overlap
        self._pool: ThreadPoolExecutor | None = None
        self._async_jobs = any(job.is_async for job in executor.registry)

    def run(
        self, records: Sequence[Any], context: Any, *, fifo: bool, job_names: bool = False
    ) -> BatchResult:
        """Run ``records`` (the ``Records`` of an SQS event) with the Lambda ``context``."""
        result = BatchResult(
            self._deadline(context), self.log.isEnabledFor(logging.INFO), job_names
        )
        self._longest = 0.0
        loop_running = asyncio._get_running_loop() is not None
        if not self._async_jobs and self.sync_concurrency == 1 and not loop_running:
            self._run_in_order(records, context, result, fifo)
            return result
        prepared = [(record, self._prepare(record, context)) for record in records]
        if (
            loop_running
            or self.sync_concurrency > 1
            or any(type(c) is JobContext and _is_async(c) for _, c in prepared)
        ):
            self.executor.run_on_loop(self._run_concurrently(prepared, result, fifo))
        else:
            self._run_in_order(prepared, context, result, fifo, prepared=True)
        return result

    def _prepare(self, record: Any, context: Any) -> JobContext | Outcome:
        """The record's run (its context), or the outcome of a body that is no job."""
        try:
            body = record["body"]
            if type(body) is str:
                attempt = int(record["attributes"]["ApproximateReceiveCount"])
            else:
                body, attempt = self._read_carefully(record)
        except (KeyError, TypeError, ValueError):
            body, attempt = self._read_carefully(record)
        return self.executor.prepare(body, attempt, context, _attributes(record))

    # -- in order, no event loop -------------------------------------------------------------

    def _run_in_order(
        self,
        items: Sequence[Any],
        context: Any,
        result: BatchResult,
        fifo: bool,
        prepared: bool = False,
    ) -> None:
        """Run records one after another. ``items`` are the records, or with ``prepared``
        (record, :meth:`_prepare`'s result) pairs. The worker's per-message hot path: it
        reads the record as :meth:`_prepare` does, inline, as a call less per message
        measured 3% of the whole (bench/lambda_dispatch.py)."""
        execute, settle, counts = self.executor.execute_prepared_sync, self._settle, result.counts
        prepare = self.executor.prepare
        log_done = self.executor.log.isEnabledFor(logging.DEBUG)
        # Chosen once a batch: a tracing SDK set up mid-batch applies from the next one.
        steps = self.executor.current_steps()
        deadline, names = result.deadline, result.job_names
        held: set[Any] = set()
        for item in items:
            if prepared:
                record, ctx = item
            else:
                record = item
                try:
                    body = record["body"]
                    if type(body) is not str:
                        raise TypeError
                    attributes = record["attributes"]
                    attempt = int(attributes["ApproximateReceiveCount"])
                except (KeyError, TypeError, ValueError):
                    body, attempt = self._read_carefully(record)
                    attributes = _attributes(record)
                ctx = prepare(body, attempt, context, attributes)
            if fifo and held and _group(record) in held:
                result.reported.append((record, HELD_BACK))
                continue
            outcome: Outcome
            if type(ctx) is JobContext:
                if names is not None and ctx.definition is not None:
                    names.add(ctx.definition.name)
                if deadline is None:
                    outcome = execute(ctx, log_done, steps)
                elif self._no_time_for(ctx, deadline):
                    self._report(record, NO_TIME, result, held if fifo else None)
                    continue
                else:
                    started = time.monotonic()
                    outcome = execute(ctx, log_done, steps)
                    self._longest = max(self._longest, time.monotonic() - started)
            else:
                outcome = ctx  # prepare() gave an outcome
            if counts is not None:
                counts[outcome.kind] += 1
            if type(outcome) is not Done:
                why = settle(record, outcome)
                if why is not None:
                    self._report(record, why, result, held if fifo else None)

    # -- on an event loop --------------------------------------------------------------------

    async def _run_concurrently(
        self, prepared: list[tuple[Record, JobContext | Outcome]], result: BatchResult, fifo: bool
    ) -> None:
        limit = self.batch_concurrency
        gate = asyncio.Semaphore(limit) if limit is not None and limit < len(prepared) else None
        run_sync = self._run_in_pool if self.sync_concurrency > 1 else None

        async def one(record: Record, ctx: JobContext | Outcome) -> bool:
            if gate is None:
                return await self._one(record, ctx, result, run_sync)
            async with gate:
                return await self._one(record, ctx, result, run_sync)

        async def group(items: list[tuple[Record, JobContext | Outcome]]) -> None:
            for index, (record, ctx) in enumerate(items):
                if await one(record, ctx):
                    result.reported.extend((r, HELD_BACK) for r, _ in items[index + 1 :])
                    return

        tasks: Iterable[Awaitable[Any]]
        if fifo:
            groups: dict[Any, list[tuple[Record, JobContext | Outcome]]] = {}
            for item in prepared:
                groups.setdefault(_group(item[0]), []).append(item)
            tasks = (group(items) for items in groups.values())
        else:
            tasks = (one(record, ctx) for record, ctx in prepared)
        await asyncio.gather(*tasks)

    async def _one(
        self,
        record: Record,
        ctx: JobContext | Outcome,
        result: BatchResult,
        run_sync: RunSync | None,
    ) -> bool:
        """Run one record; True when it is reported for retry."""
        if isinstance(ctx, JobContext):
            if result.job_names is not None and ctx.definition is not None:
                result.job_names.add(ctx.definition.name)
            deadline = result.deadline
            if deadline is None:
                outcome = await self.executor.execute_prepared(ctx, run_sync)
            elif self._no_time_for(ctx, deadline):
                self._report(record, NO_TIME, result, None)
                return True
            else:
                started = time.monotonic()
                try:
                    # The loop's clock is time.monotonic(), the deadline's clock.
                    async with asyncio.timeout_at(deadline):
                        outcome = await self.executor.execute_prepared(ctx, run_sync)
                except TimeoutError:
                    self._report(record, CUT, result, None)
                    return True
                self._longest = max(self._longest, time.monotonic() - started)
        else:
            outcome = ctx
        if result.counts is not None:
            result.counts[outcome.kind] += 1
        if outcome.kind == "done":
            return False
        why = self._settle(record, outcome)
        if why is None:
            return False
        self._report(record, why, result, None)
        return True

    def _settle(self, record: Any, outcome: Outcome) -> str | None:
        try:
            return self.settle(record, outcome)
        except Exception:  # a fault of the worker, not of the job: keep the record
            self.log.exception("could not settle message %s; reporting it", _message_id(record))
            return FAULT

    def _run_in_pool(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.sync_concurrency, thread_name_prefix="glasswork-lambda"
            )
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- helpers -----------------------------------------------------------------------------

    def _deadline(self, context: Any) -> float | None:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return None
        return time.monotonic() + float(remaining()) / 1000 - self.deadline_margin

    def _no_time_for(self, ctx: JobContext, deadline: float) -> bool:
        definition = ctx.definition
        needed = definition.timeout if definition is not None else None
        return time.monotonic() + (needed or self._longest) >= deadline

    @staticmethod
    def _report(record: Record, why: str, result: BatchResult, held: set[Any] | None) -> None:
        result.reported.append((record, why))
        if held is not None:
            held.add(_group(record))

    def _read_carefully(self, record: Any) -> tuple[str, int]:
        if not isinstance(record, Mapping):
            self.log.error("an SQS record is not an object: %.200r", record)
            return str(record), 1
        body = record.get("body")
        text = body if isinstance(body, str) else "" if body is None else str(body)
        attributes = record.get("attributes")
        count = (
            attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
        )
        try:
            attempt = int(count)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.log.warning(
                "record %s: ApproximateReceiveCount %r is not an integer; counting this "
                "delivery as attempt 1",
                record.get("messageId"),
                count,
            )
            attempt = 1
        return text, max(1, attempt)


def _is_async(ctx: JobContext) -> bool:
    return ctx.definition is not None and ctx.definition.is_async


def _message_id(record: Any) -> Any:
    return record.get("messageId") if isinstance(record, Mapping) else None


def _group(record: Any) -> Any:
    """A FIFO record's MessageGroupId (None when missing: such records form one group)."""
    try:
        return record["attributes"]["MessageGroupId"]
    except (KeyError, TypeError):
        return None


def _attributes(record: Any) -> Mapping[str, Any] | None:
    """A record's SQS attributes (``AWSTraceHeader`` and the like), when it has them."""
    attributes = record.get("attributes") if isinstance(record, Mapping) else None
    return attributes if isinstance(attributes, Mapping) else None
