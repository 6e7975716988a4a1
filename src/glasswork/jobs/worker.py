"""Worker: the long-running loop that receives jobs from any driver and runs them.

It translates each :class:`~glasswork.jobs.execution.Outcome` into driver calls and nothing
more: Done/Discard → ack, Retry → nack(delay), DeadLetter → dead letter, then ack. Retry
rules, hooks and error classification live in :class:`~glasswork.jobs.execution.Executor`.

>>> Worker(module=AppModule, driver=SQLiteQueueDriver("jobs.db"), concurrency=8).run()
... # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .drivers.base import QueueDriver, ReceivedMessage
from .errors import ConfigurationError
from .execution import (
    DeadLetter,
    Executor,
    Hook,
    JobHooks,
    Outcome,
    Retry,
    RunStep,
    send_to_dead_letter,
)
from .message import JobMessage
from .metrics.sink import MetricsOption, flush_metrics, metric_sinks
from .steps import worker_steps

if TYPE_CHECKING:
    from ..modules import Module
    from .idempotency.store import IdempotencyStore
    from .schedules import CronSchedule, RateSchedule

logger = logging.getLogger("glasswork.worker")
T = TypeVar("T")

#: Outcome kinds as counted in :class:`WorkerSummary`, plus ``released`` (handed back unrun
#: or unfinished at shutdown) and ``errors`` (the worker itself failed to run the job).
SUMMARY_KINDS = ("done", "retry", "dead_letter", "discarded", "duplicate", "released", "errors")
#: Jobs that take less than this on average (seconds) let the worker hold extra messages.
PREFETCH_MAX_JOB_SECONDS = 0.05


@dataclass(slots=True)
class WorkerSummary:
    """What a worker did: outcome counts, elapsed seconds, and periodic jobs fired."""

    counts: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    fired: int = 0

    @property
    def jobs(self) -> int:
        """Deliveries that ran to an outcome (released ones are not counted)."""
        return sum(
            self.counts[k]
            for k in ("done", "retry", "dead_letter", "discarded", "duplicate", "errors")
        )

    @property
    def done(self) -> int:
        """Jobs that finished."""
        return self.counts["done"]

    @property
    def dead_lettered(self) -> int:
        """Jobs sent to the dead letter."""
        return self.counts["dead_letter"]

    @property
    def retried(self) -> int:
        """Failed runs that will be retried."""
        return self.counts["retry"]

    @property
    def released(self) -> int:
        """Jobs handed back unfinished at shutdown."""
        return self.counts["released"]

    def __str__(self) -> str:
        rate = self.jobs / self.elapsed if self.elapsed > 0 else 0.0
        parts = ", ".join(f"{k}={self.counts[k]}" for k in SUMMARY_KINDS)
        fired = f", periodic fired={self.fired}" if self.fired else ""
        return f"{self.jobs} jobs in {self.elapsed:.1f}s ({rate:.0f}/s): {parts}{fired}"


@dataclass(slots=True)
class _Running:
    received: ReceivedMessage
    leased_at: float  # when it was received: its lease runs from then
    abandoned: bool = False


class Worker:
    """Run ``module``'s jobs from ``driver`` until stopped.

    * ``concurrency``: jobs in flight at most; sync handlers run in a thread pool of that
      size, async handlers on the worker's event loop;
    * ``queues``: the queues to receive from (None: all the driver has);
    * ``periodic``: also fire the module's periodic jobs on their ``schedule``, by enqueueing
      them on ``periodic_queue`` (drivers with ``claim_periodic``, such as SQLite, fire each
      time once across all workers; otherwise run one worker with ``periodic=True``);
    * ``grace_period``: seconds to let in-flight jobs finish after SIGTERM/SIGINT (or
      :meth:`stop`); jobs still running then are released to run again elsewhere;
    * ``batch_size``: messages per receive; ``wait_seconds``: long-poll time when idle;
    * ``steps``: around-run steps wrapping every job (see :class:`~glasswork.jobs.RunStep`);
    * ``metrics``: sinks counting every run (see :mod:`glasswork.jobs.metrics`);
      ``metrics_port`` serves them for Prometheus on ``metrics_host:metrics_port/metrics``,
      with ``/healthz`` answering 200 while the worker's loop is alive;
    * ``idempotency_store``: keys of ``idempotent`` jobs that name no store (default: the
      driver's, e.g. the SQLite file).

    Drivers may offer ``ack_many``/``nack_many`` (settled in batches) and ``extend_leases``
    with a ``visibility_timeout`` (leases of long jobs are kept alive); the SQLite driver has all.
    """

    def __init__(
        self,
        *,
        module: Module,
        driver: QueueDriver,
        concurrency: int = 10,
        hooks: JobHooks | Mapping[str, Hook] | None = None,
        queues: Sequence[str] | None = None,
        periodic: bool = False,
        periodic_queue: str = "default",
        grace_period: float = 30.0,
        batch_size: int | None = None,
        wait_seconds: float = 1.0,
        poll_interval: float = 0.05,
        log: logging.Logger | None = None,
        install_signal_handlers: bool = True,
        steps: Sequence[RunStep] = (),
        metrics: MetricsOption = None,
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
        idempotency_store: IdempotencyStore | None = None,
    ) -> None:
        from ..modules import Module

        if not isinstance(module, Module):
            raise ConfigurationError(f"module must come from define_module, got {module!r}")
        if not isinstance(driver, QueueDriver):
            raise ConfigurationError(f"driver must be a QueueDriver, got {driver!r}")
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        self.module = module
        self.driver = driver
        self.concurrency = concurrency
        # Job lines stay on the executor's own "glasswork.jobs" logger; ``log`` is the worker's.
        self.executor = Executor.for_module(module, hooks)
        self.metrics = metric_sinks(metrics, prometheus=metrics_port is not None, driver=driver)
        self.executor.steps = tuple(
            worker_steps(
                self.executor.registry,
                driver,
                steps,
                metrics=self.metrics,
                idempotency_store=idempotency_store,
            )
        )
        self.metrics_server = None
        if metrics_port is not None:
            from .metrics.server import MetricsServer

            self.metrics_server = MetricsServer.for_sinks(
                self.metrics, metrics_port, metrics_host, driver
            )
        self.registry = self.executor.registry
        self.services = self.executor.services
        self.log = log or logger
        self.periodic = periodic
        self.periodic_queue = periodic_queue
        self.queues = list(queues) if queues else None
        if periodic and self.queues is not None and periodic_queue not in self.queues:
            self.queues.append(periodic_queue)
        self.grace_period = grace_period
        self.batch_size = max(1, batch_size or min(concurrency, 100))
        self.wait_seconds = wait_seconds
        self.poll_interval = poll_interval
        self.install_signal_handlers = install_signal_handlers
        self.schedules = self._schedules() if periodic else {}
        self.summary = WorkerSummary()

        self._ack_many: Callable[[Sequence[ReceivedMessage]], None] | None = getattr(
            driver, "ack_many", None
        )
        self._extend: Callable[[Sequence[ReceivedMessage], float], int] | None = getattr(
            driver, "extend_leases", None
        )
        self._pending_count: Callable[[Sequence[str] | None], int] | None = getattr(
            driver, "pending_count", None
        )
        lease = getattr(driver, "visibility_timeout", None)
        self._lease = float(lease) if isinstance(lease, int | float) and self._extend else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._forced = False
        self._changed: asyncio.Event | None = None
        self._running: dict[asyncio.Task[None], _Running] = {}
        self._buffer: deque[tuple[ReceivedMessage, float]] = deque()
        self._job_seconds: float | None = None  # moving average of job run time
        self._acks: list[ReceivedMessage] = []
        self._nacks: list[tuple[ReceivedMessage, float]] = []
        self._dead: list[tuple[ReceivedMessage, DeadLetter]] = []
        self._oldest_settle = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._thread_prefix = f"glasswork-job-{id(self):x}"
        self._abandoned = 0
        self._io: ThreadPoolExecutor | None = None

    # -- public ------------------------------------------------------------------------------

    def run(self) -> WorkerSummary:
        """Run until SIGTERM/SIGINT or :meth:`stop`; returns the summary (also logged)."""
        return asyncio.run(self.serve())

    def run_until_empty(
        self, *, include_delayed: bool = False, timeout: float | None = None
    ) -> WorkerSummary:
        """Run until nothing is ready and nothing is in flight, then return the summary.

        With ``include_delayed``, also wait for delayed jobs and retries to come due (the driver
        must have ``pending_count``, as SQLite does). ``timeout`` caps the run in seconds.
        """
        return asyncio.run(
            self.serve(until_empty=True, include_delayed=include_delayed, timeout=timeout)
        )

    def stop(self) -> None:
        """Ask the worker to stop gracefully (safe from any thread or a signal handler)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stopping = True
            return
        if _on_loop(loop):
            self._request_stop()
        else:
            loop.call_soon_threadsafe(self._request_stop)

    async def serve(
        self,
        *,
        until_empty: bool = False,
        include_delayed: bool = False,
        timeout: float | None = None,
    ) -> WorkerSummary:
        """The worker as a coroutine, for callers that own an event loop."""
        if until_empty and include_delayed and self._pending_count is None:
            raise ConfigurationError(
                f"driver {self.driver.name!r} cannot count pending jobs, so the worker cannot "
                "wait for delayed ones; use run_until_empty(include_delayed=False)"
            )
        self._loop = asyncio.get_running_loop()
        if self.metrics_server is not None:
            self.metrics_server.start(self._loop)  # a port in use fails here, before any job
        self._changed = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=self._thread_prefix)
        # Driver calls block (SQLite waits on locks, SQS on the network): one thread keeps
        # them off the loop and gives the driver one connection.
        self._io = ThreadPoolExecutor(1, thread_name_prefix="glasswork-driver")
        self.summary = WorkerSummary()
        self._abandoned = 0
        started = time.monotonic()
        signals = self._install_signals()
        periodic = (
            asyncio.create_task(self._fire_periodic())
            if self.schedules and not until_empty
            else None
        )
        self.log.info(
            "worker started: %d jobs registered, queues=%s, concurrency=%d, driver=%r%s",
            len(self.registry),
            ",".join(self.queues) if self.queues else "all",
            self.concurrency,
            self.driver,
            f", periodic: {', '.join(self.schedules)}" if self.schedules else "",
        )
        try:
            deadline = None if timeout is None else started + timeout
            await self._serve(until_empty, include_delayed, deadline)
            await self._finish_in_flight()
        finally:
            if periodic is not None:
                periodic.cancel()
                await asyncio.gather(periodic, return_exceptions=True)
            for sig in signals:
                self._loop.remove_signal_handler(sig)
            if self.metrics_server is not None:
                self.metrics_server.close()
            self.summary.elapsed = time.monotonic() - started
            self._stopping = self._forced = False  # the worker may be run again
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._io.shutdown(wait=True)
            flush_metrics(self.metrics)  # counts of the last moments, before the process ends
            self.log.info("worker stopped: %s", self.summary)
        return self.summary

    @property
    def abandoned_threads(self) -> int:
        """Sync handlers still running in threads after shutdown (their jobs were released);
        a process should exit rather than wait for them."""
        if not self._abandoned:
            return 0
        threads = [t for t in threading.enumerate() if t.name.startswith(self._thread_prefix)]
        for thread in threads:
            thread.join(0.05)  # idle pool threads exit at once; busy ones stay alive
        return sum(t.is_alive() for t in threads)

    # -- the loop ----------------------------------------------------------------------------

    async def _serve(
        self, until_empty: bool, include_delayed: bool, deadline: float | None
    ) -> None:
        # Receive only when at least half a batch is wanted, so claims and acks go to the
        # driver in batches rather than one job at a time.
        low_water = max(1, min(self.batch_size, self.concurrency) // 2)
        next_heartbeat = time.monotonic() + self._heartbeat_every()
        failures = 0
        while not self._stopping:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.log.warning("stopping: the run's time limit was reached")
                break
            if now >= next_heartbeat:
                await self._heartbeat()
                next_heartbeat = now + self._heartbeat_every()
            wanted = (
                self.concurrency + self._prefetch_limit() - len(self._running) - len(self._buffer)
            )
            if wanted >= low_water:
                idle = not self._running and not self._buffer
                wait = self.wait_seconds if idle and not until_empty else 0.0
                try:
                    batch = await self._receive(min(wanted, self.batch_size), wait)
                    failures = 0
                except Exception:
                    failures += 1
                    pause = min(30.0, 0.5 * 2 ** min(failures, 6))
                    self.log.exception("receive failed; trying again in %.1fs", pause)
                    await self._wake(pause)
                    continue
                if self._stop_requested():  # a signal arrived while we waited
                    await self._release(batch, "received during shutdown")
                    break
                received_at = time.monotonic()
                self._buffer.extend((received, received_at) for received in batch)
                self._fill()
                if batch:
                    continue  # there may be more: receive again while slots are free
                if idle:
                    if until_empty and await self._drained(include_delayed):
                        break
                    if wait == 0:
                        await self._wake(self.poll_interval)
                    continue
            await self._wake(self.poll_interval)
            if self._settle_pending() and (
                time.monotonic() - self._oldest_settle >= self.poll_interval
            ):
                await self._flush()

    def _prefetch_limit(self) -> int:
        """Messages to hold beyond ``concurrency`` so a freed slot starts its next job at
        once. Only for short jobs: held messages of slow jobs would starve other workers."""
        fast = self._job_seconds is not None and self._job_seconds < PREFETCH_MAX_JOB_SECONDS
        return self.batch_size // 2 if fast else 0

    def _fill(self) -> None:
        """Start buffered messages while slots are free."""
        while self._buffer and len(self._running) < self.concurrency and not self._stopping:
            received, received_at = self._buffer.popleft()
            task = asyncio.create_task(self._run_one(received))
            self._running[task] = _Running(received, received_at)

    async def _finish_in_flight(self) -> None:
        """Give in-flight jobs the grace period, then release whatever is still running."""
        if self._buffer:
            held = [received for received, _ in self._buffer]
            self._buffer.clear()
            await self._release(held, "received but not started before shutdown")
        if self._running:
            self.log.info(
                "stopping: waiting up to %.0fs for %d in-flight job(s)",
                self.grace_period,
                len(self._running),
            )
        deadline = time.monotonic() + self.grace_period
        next_heartbeat = time.monotonic() + self._heartbeat_every()
        while self._running and not self._forced and time.monotonic() < deadline:
            await self._wake(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= next_heartbeat:
                await self._heartbeat()
                next_heartbeat = time.monotonic() + self._heartbeat_every()
            if self._settle_pending():
                await self._flush()
        left = list(self._running.items())
        self._abandoned = len(left)
        for task, job in left:
            job.abandoned = True
            task.cancel()
        if left:
            await asyncio.gather(*(t for t, _ in left), return_exceptions=True)
        await self._flush()
        if left:
            await self._release([job.received for _, job in left], "still running at shutdown")

    async def _run_one(self, received: ReceivedMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        started = time.perf_counter()
        loud = self.log.isEnabledFor(logging.INFO)
        if loud:
            name, job_id = _peek(received.body)
            self.log.info(
                "start %s %s (attempt %d, queue %s)", name, job_id, received.attempt, received.queue
            )
        outcome: Outcome | None = None
        try:
            outcome = await self.executor.execute(
                received.body,
                received.attempt,
                run_sync=self._run_sync,
                attributes=received.attributes,
            )
        except Exception:
            # Executor.execute handles everything a job does, so this is a fault in the worker
            # path: leave the lease to run out so the job is delivered again.
            self.log.exception("could not run message %s", received.message_id)
        job = self._running.pop(task, None)
        self._fill()
        self._notify()
        if job is None or job.abandoned:
            return  # released at shutdown: whoever gets it next settles it
        if outcome is None:
            self.summary.counts["errors"] += 1
            return
        self._settle(received, outcome)
        self.summary.counts[outcome.kind] += 1
        seconds = time.perf_counter() - started
        average = self._job_seconds
        self._job_seconds = seconds if average is None else 0.8 * average + 0.2 * seconds
        if loud:
            self._log_outcome(received, outcome, seconds)

    def _run_sync(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        assert self._loop is not None
        # In the job's context, so a sync handler sees what steps set (its trace span).
        run = contextvars.copy_context().run
        return self._loop.run_in_executor(self._pool, run, fn, *args)

    def _settle(self, received: ReceivedMessage, outcome: Outcome) -> None:
        if not self._settle_pending():
            self._oldest_settle = time.monotonic()
        if isinstance(outcome, Retry):
            self._nacks.append((received, outcome.delay))
        elif isinstance(outcome, DeadLetter):
            self._dead.append((received, outcome))
        else:  # Done, Discard
            self._acks.append(received)

    def _settle_pending(self) -> bool:
        return bool(self._acks or self._nacks or self._dead)

    def _take_settlements(
        self,
    ) -> tuple[
        list[ReceivedMessage],
        list[tuple[ReceivedMessage, float]],
        list[tuple[ReceivedMessage, DeadLetter]],
    ]:
        taken = (self._acks, self._nacks, self._dead)
        self._acks, self._nacks, self._dead = [], [], []
        return taken

    async def _flush(self) -> None:
        """Hand finished jobs to the driver: dead letters, acks and nacks, batched."""
        if self._settle_pending():
            await self._call(self._settle_logged, *self._take_settlements())

    async def _receive(self, max_messages: int, wait: float) -> list[ReceivedMessage]:
        """Settle finished jobs, then receive: one trip to the driver thread for both."""
        settlements = self._take_settlements() if self._settle_pending() else None

        def settle_and_receive() -> list[ReceivedMessage]:
            if settlements is not None:
                self._settle_logged(*settlements)
            return self.driver.receive(self.queues, max_messages, wait)

        return await self._call(settle_and_receive)

    def _settle_logged(
        self,
        acks: list[ReceivedMessage],
        nacks: list[tuple[ReceivedMessage, float]],
        dead: list[tuple[ReceivedMessage, DeadLetter]],
    ) -> None:
        """Dead letters, then acks, then nacks; on the driver thread. A failure is logged: the
        jobs concerned run again when their leases run out."""
        try:
            for received, outcome in dead:
                # False: the dead-letter send failed, so the job is kept (not acked).
                if send_to_dead_letter(
                    self.driver, received.body, outcome, received.queue, self.log
                ):
                    acks.append(received)
            if self._ack_many is not None:
                self._ack_many(acks)
            else:
                for received in acks:
                    self.driver.ack(received)
            for received, delay in nacks:
                self.driver.nack(received, delay)
        except Exception:
            self.log.exception(
                "could not settle %d finished job(s) with the driver; they will be delivered "
                "again when their leases run out",
                len(acks) + len(nacks) + len(dead),
            )

    async def _release(self, messages: Sequence[ReceivedMessage], why: str) -> None:
        if not messages:
            return
        nack_many: Callable[[Sequence[ReceivedMessage]], None] | None = getattr(
            self.driver, "nack_many", None
        )

        def release() -> None:
            if nack_many is not None:
                nack_many(messages)
            else:
                for received in messages:
                    self.driver.nack(received, 0.0)

        try:
            await self._call(release)
            self.summary.counts["released"] += len(messages)
            self.log.warning("released %d job(s) to run again: %s", len(messages), why)
        except Exception:
            self.log.exception(
                "could not release %d job(s); they run again when their leases run out",
                len(messages),
            )

    async def _heartbeat(self) -> None:
        """Extend the leases of jobs that have run for a third of the visibility timeout."""
        if self._lease is None or self._extend is None:
            return
        cutoff = time.monotonic() - self._lease / 3
        long_running = [j.received for j in self._running.values() if j.leased_at <= cutoff]
        long_running += [received for received, at in self._buffer if at <= cutoff]
        if not long_running:
            return
        try:
            held = await self._call(self._extend, long_running, self._lease)
        except Exception:
            self.log.exception("could not extend the leases of %d job(s)", len(long_running))
            return
        if held < len(long_running):
            self.log.warning(
                "%d running job(s) lost their lease (it ran out before it could be extended); "
                "another worker may run them again",
                len(long_running) - held,
            )

    def _heartbeat_every(self) -> float:
        return self._lease / 3 if self._lease else 3600.0

    async def _drained(self, include_delayed: bool) -> bool:
        await self._flush()
        if not include_delayed:
            return True
        assert self._pending_count is not None  # checked when the run started
        if await self._call(self._pending_count, self.queues) == 0:
            return True
        await self._wake(self.poll_interval)
        return False

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._io, fn, *args)

    async def _wake(self, timeout: float) -> None:
        """Sleep until a job finishes, a stop is requested, or ``timeout`` passes."""
        assert self._changed is not None
        if not self._changed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # -- stopping ----------------------------------------------------------------------------

    def _install_signals(self) -> list[int]:
        if not self.install_signal_handlers or threading.current_thread() is not (
            threading.main_thread()
        ):
            return []
        assert self._loop is not None
        installed: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._on_signal, sig)
            installed.append(sig)
        return installed

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._stopping:
            self.log.warning("%s again: releasing in-flight jobs and stopping now", name)
            self._forced = True
        else:
            self.log.info(
                "%s: no new jobs; finishing %d in flight (up to %.0fs; %s again to stop now)",
                name,
                len(self._running),
                self.grace_period,
                name,
            )
        self._request_stop()

    def _stop_requested(self) -> bool:
        return self._stopping

    def _request_stop(self) -> None:
        self._stopping = True
        self._notify()

    # -- periodic jobs -----------------------------------------------------------------------

    def _schedules(self) -> dict[str, RateSchedule | CronSchedule]:
        from .schedules import schedule_of

        found = {}
        for job in self.registry:
            schedule = schedule_of(job) if job.periodic else None
            if schedule is not None:
                found[job.name] = schedule
        return found

    async def _fire_periodic(self) -> None:
        claim: Callable[[str, datetime], bool] | None = getattr(self.driver, "claim_periodic", None)
        now = datetime.now(UTC)
        upcoming = {name: s.next_after(now) for name, s in self.schedules.items()}
        while not self._stopping:
            name, fire_at = min(upcoming.items(), key=lambda item: item[1])
            delay = (fire_at - datetime.now(UTC)).total_seconds()
            if delay > 0:
                await asyncio.sleep(min(delay, 60.0))  # re-check: clocks can jump
                continue
            upcoming[name] = self.schedules[name].next_after(fire_at)
            try:
                if not await asyncio.to_thread(self._fire, claim, name, fire_at):
                    continue  # another worker fired this one
            except Exception:
                self.log.exception("could not fire periodic job %s due at %s", name, fire_at)
                continue
            self.summary.fired += 1
            self.log.info(
                "fired periodic job %s (due %s, next %s)",
                name,
                fire_at.isoformat(),
                upcoming[name].isoformat(),
            )

    def _fire(self, claim: Callable[[str, datetime], bool] | None, name: str, at: datetime) -> bool:
        # Runs on its own thread: the driver thread may be blocked in a long poll.
        if claim is not None and not claim(name, at):
            return False
        self.driver.enqueue(JobMessage.create(name, None, queue=self.periodic_queue))
        return True

    # -- logging -----------------------------------------------------------------------------

    def _log_outcome(self, received: ReceivedMessage, outcome: Outcome, seconds: float) -> None:
        if outcome.message is not None:
            name, job_id = outcome.message.job_name, outcome.message.job_id
        else:
            name, job_id = _peek(received.body)
        took = f"{seconds * 1000:.1f}ms"
        if isinstance(outcome, Retry):
            detail = f"; next attempt in {outcome.delay:.1f}s"
        elif isinstance(outcome, DeadLetter):
            detail = f": {outcome.reason}"
        else:
            detail = ""
        self.log.info(
            "end %s %s: %s in %s (attempt %d)%s",
            name,
            job_id,
            outcome.kind,
            took,
            received.attempt,
            detail,
        )


def _peek(body: str) -> tuple[str, str]:
    """Job name and id of a body for log lines, without validating it."""
    try:
        data = json.loads(body)
        return str(data["jobName"]), str(data.get("jobId", "?"))
    except Exception:
        return "<malformed>", "?"


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
