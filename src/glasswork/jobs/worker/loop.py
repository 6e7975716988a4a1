"""Worker: the long-running loop that receives jobs from any driver and runs them.

The control thread (the one calling :meth:`Worker.run`) owns the driver: it receives jobs,
hands them to the job threads (:class:`~.pool.JobPool`), settles their outcomes in batches
(:class:`~.settling.Settler`), keeps their leases alive (:class:`~.leases.Leases`), takes
jobs past their timeout away from their threads, and handles stop requests
(:class:`~.shutdown.StopControl`). It never runs a handler, so whatever a job does, the
worker stays responsive. Retry rules, hooks and error classification live in
:class:`~glasswork.jobs.execution.Executor`; the worker only translates outcomes.

>>> Worker(module=AppModule, driver=SQLiteQueueDriver("jobs.db"), concurrency=8).run()
... # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..drivers.contract import QueueDriver, capabilities_of, driver_label
from ..drivers.records import BEAT_SECONDS
from ..durations import Delay, positive_seconds
from ..errors import ConfigurationError
from ..execution import Executor, Hook, JobHooks, RunStep
from ..fairness import refuse_unfair_jobs
from ..limits import refuse_unheld_limits
from ..metrics.sink import MetricsOption, MetricsSink, flush_metrics, metric_sinks
from ..steps import worker_steps
from ..stop_signals import STOP_SIGNALS
from ..timeouts import JobTimeout
from .event_loop import AsyncJobs
from .heartbeats import HeartbeatWriter
from .leases import Leases
from .limits import FlowGate, LimitedReceiver
from .logs import logger
from .periodic import PeriodicFirer, schedules_of
from .pool import JobPool
from .receiving import Receiver
from .settling import Settler, cannot_consume
from .shutdown import StopControl
from .slots import Held, SlotWatch
from .status import JobStatuses
from .summary import WorkerSummary

if TYPE_CHECKING:
    from ...modules import Module
    from ..idempotency.store import IdempotencyStore
    from ..metrics.server import Heartbeat, MetricsServer

#: The default per-job timeout: Lambda's maximum, 15 minutes.
DEFAULT_JOB_TIMEOUT = 900.0


class Worker:
    """Run ``module``'s jobs from ``driver`` until stopped.

    * ``concurrency``: jobs in flight at most, each on one of as many job threads (an
      ``async def`` handler runs on the worker's event loop while its thread waits);
    * ``job_timeout``: the limit of one run of a job without its own ``timeout`` (seconds,
      ``"30s"``, a timedelta; default 15 minutes; None: no limit). Past it an async job is
      cancelled; a sync job's thread is abandoned and replaced, and the run counts as a
      :class:`~glasswork.jobs.JobTimeoutError` (retried, then dead-lettered);
    * ``queues``: the queues to receive from (None: all the driver has);
    * ``periodic``: also fire the module's periodic jobs on their ``schedule``, by enqueueing
      them on ``periodic_queue`` (drivers with periodic claims, SQLite and PostgreSQL, fire
      each time once across all workers; otherwise run one worker with ``periodic=True``);
    * ``grace_period``: seconds (0 or more) to let in-flight jobs finish after SIGTERM,
      SIGINT or SIGHUP (or :meth:`stop`); jobs still running then are released to run
      again elsewhere;
    * ``batch_size``: most messages per receive; ``wait_seconds``: long-poll time when idle;
    * ``steps``: around-run steps wrapping every job (see :class:`~glasswork.jobs.RunStep`);
    * ``metrics``: sinks counting every run (see :mod:`glasswork.jobs.metrics`);
      ``metrics_port`` serves them for Prometheus on ``metrics_host:metrics_port/metrics``,
      with ``/healthz`` answering 200 while the control loop turns;
    * ``idempotency_store``: keys of ``idempotent`` jobs that name no store (default: the
      driver's, e.g. the SQLite file);
    * ``heartbeat_seconds``: how often the worker writes its heartbeat (host, pid, queues,
      concurrency, jobs in flight) where the driver keeps them (SQLite, PostgreSQL), for the
      dashboard's workers panel; it is shown as gone after three missed beats.

    The driver must be able to receive jobs (:class:`~glasswork.jobs.drivers.contract.
    Consuming`); a :class:`ConfigurationError` says so at once otherwise. The worker uses
    what else it can do (:func:`~glasswork.jobs.drivers.contract.capabilities_of`): batch
    acks, hand-backs at shutdown that are not attempts, lease extension for long jobs,
    periodic claims, an exact pending count (``run_until_empty(include_delayed=True)``) and
    heartbeats; the SQLite and PostgreSQL drivers have all, the SQS driver batch acks and
    lease extension. What the driver lacks is said once when the worker starts.
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
        job_timeout: Delay | None = DEFAULT_JOB_TIMEOUT,
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
        heartbeat_seconds: float = BEAT_SECONDS,
    ) -> None:
        from ...modules import Module

        if not isinstance(module, Module):
            raise ConfigurationError(f"module must come from define_module, got {module!r}")
        if not isinstance(driver, QueueDriver):
            raise ConfigurationError(f"driver must be a QueueDriver, got {driver!r}")
        self.capabilities = capabilities = capabilities_of(driver)
        if capabilities.consuming is None:
            raise ConfigurationError(cannot_consume(driver))
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        if not 0 <= grace_period < float("inf"):
            raise ConfigurationError(f"grace_period must be 0 or more seconds, got {grace_period}")
        self.module = module
        self.driver = driver
        self.concurrency = concurrency
        self.job_timeout = (
            None if job_timeout is None else positive_seconds(job_timeout, "job_timeout")
        )
        # Job lines stay on the executor's own "glasswork.jobs" logger; ``log`` is the worker's.
        self.executor = Executor.for_module(module, hooks)
        self.executor.string_cache = "keys"  # a process that lives long keeps memory flat
        limits = {job.name: job.limits for job in self.executor.registry if job.limits}
        # A limited claim picks rows as the plain claim does, not in turns across fairness
        # keys: beside fair jobs, limits are taken by the gate instead (fair claim kept).
        fair_jobs = any(job.fairness_key is not None for job in self.executor.registry)
        claim_limits = capabilities.claim_limits if limits and not fair_jobs else None
        holds_limits = claim_limits or capabilities.flow_limits
        refuse_unheld_limits(self.executor.registry, holds_limits, driver_label(driver), "worker")
        refuse_unfair_jobs(
            self.executor.registry, capabilities.fairness, driver_label(driver), "worker"
        )
        self.metrics = metric_sinks(metrics, prometheus=metrics_port is not None, driver=driver)
        self.executor.steps = _chain(
            self.executor, driver, steps, self.job_timeout, self.metrics, idempotency_store
        )
        self.metrics_server: MetricsServer | None = None
        self._heartbeat: Heartbeat | None = None
        if metrics_port is not None:
            from ..metrics.server import Heartbeat, MetricsServer

            self.metrics_server = MetricsServer.for_sinks(
                self.metrics, metrics_port, metrics_host, driver
            )
            self._heartbeat = Heartbeat()
        self.registry = self.executor.registry
        self.services = self.executor.services
        self.log = log or logger
        self.periodic = periodic
        self.periodic_queue = periodic_queue
        self.queues = list(queues) if queues else None
        if periodic and self.queues is not None and periodic_queue not in self.queues:
            self.queues.append(periodic_queue)
        self.grace_period = grace_period
        self.heartbeat_seconds = positive_seconds(heartbeat_seconds, "heartbeat_seconds")
        self.batch_size = max(1, batch_size or 100)
        self.wait_seconds = wait_seconds
        self.poll_interval = poll_interval
        self.install_signal_handlers = install_signal_handlers
        self.schedules = (
            schedules_of(self.registry, capabilities.periodic_claims) if periodic else {}
        )
        self.summary = WorkerSummary()
        self._changed = threading.Event()  # a job ended, a stop was asked: look again
        self._stop = StopControl(self._changed.set)
        self._signals_seen = 0
        self._retries_within = 0.0
        self._pool: JobPool | None = None
        self._settler = Settler(driver, self.summary, self.log)
        # Limits taken in the claim: how long limited jobs run sizes what a claim takes.
        self._settler.times_limited_jobs = claim_limits is not None
        self._leases = Leases(capabilities.lease_extension, self.log)
        self._statuses = (
            JobStatuses(capabilities.status, self.log) if capabilities.status is not None else None
        )
        # Limits are taken in the claim where the driver can (no call per start), else by
        # the gate, on each job thread just before a limited job starts.
        self._gate = (
            FlowGate(capabilities.flow_limits, self.log, self.metrics)
            if limits and claim_limits is None and capabilities.flow_limits is not None
            else None
        )
        self._receiver = Receiver(
            capabilities.consuming,
            self.queues,
            concurrency,
            self.batch_size,
            poll_interval,
            self.log,
            LimitedReceiver(
                claim_limits.limited_claims(limits), self.log, self.metrics, self._throttled
            )
            if claim_limits is not None
            else None,
        )

    # -- public ------------------------------------------------------------------------------

    def run(self) -> WorkerSummary:
        """Run until SIGTERM, SIGINT, SIGHUP or :meth:`stop`; returns the summary (also
        logged). The driver is checked first (:meth:`QueueDriver.check`): a queue that does
        not exist is a :class:`ConfigurationError` at once."""
        return self._serve(until_empty=False, include_delayed=False, timeout=None)

    def run_until_empty(
        self,
        *,
        include_delayed: bool = False,
        timeout: float | None = None,
        retries_within: float = 0.0,
    ) -> WorkerSummary:
        """Run until nothing is ready and nothing is in flight, then return the summary.

        Retries this run scheduled that come due within ``retries_within`` seconds are
        waited for and run; later ones are left pending, and the summary counts them
        (``pending_retries``). With ``include_delayed``, also wait for every delayed job and
        retry to come due (the driver must have ``pending_count``, as SQLite does).
        ``timeout`` caps the whole run in seconds, shutdown included: jobs still running
        then are released.
        """
        if not 0 <= retries_within < float("inf"):
            raise ConfigurationError(
                f"retries_within must be 0 or more seconds, got {retries_within}"
            )
        self._retries_within = retries_within
        return self._serve(until_empty=True, include_delayed=include_delayed, timeout=timeout)

    def stop(self) -> None:
        """Ask the worker to stop gracefully (safe from any thread)."""
        self._stop.request()

    async def serve(
        self,
        *,
        until_empty: bool = False,
        include_delayed: bool = False,
        timeout: float | None = None,
    ) -> WorkerSummary:
        """The worker inside a running event loop (say, next to a web server): the control
        loop runs in a thread, and ``async def`` jobs run on the caller's loop."""
        loop = asyncio.get_running_loop()
        signals = []
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self._signal_from_loop, sig)
                signals.append(sig)
        run = loop.run_in_executor(
            None, lambda: self._serve(until_empty, include_delayed, timeout, loop)
        )
        try:
            return await asyncio.shield(run)
        except asyncio.CancelledError:
            self._stop.request(force=True)
            await asyncio.wait([run])  # let it release what it holds
            raise
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    @property
    def abandoned_threads(self) -> int:
        """Job threads still running a handler the worker gave up on (timed out, or still
        running at shutdown). They are daemon threads: they do not keep the process alive."""
        return self._pool.alive_abandoned() if self._pool is not None else 0

    # -- one run -----------------------------------------------------------------------------

    def _serve(
        self,
        until_empty: bool,
        include_delayed: bool,
        timeout: float | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> WorkerSummary:
        if until_empty and include_delayed and self.capabilities.pending_count is None:
            raise ConfigurationError(
                f"driver {self.driver.name!r} cannot count pending jobs, so the worker cannot "
                "wait for delayed ones; use run_until_empty(include_delayed=False)"
            )
        self.driver.check(self.queues)  # a missing queue fails here, not on every receive
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        self.summary = self._settler.summary = WorkerSummary()
        self._settler.retries.clear()
        self._signals_seen = 0
        async_jobs = (
            AsyncJobs(self._new_executor(), loop)
            if any(job.is_async for job in self.registry)
            else None
        )
        pool = self._pool = JobPool(
            self.concurrency,
            new_executor=self._new_executor,
            async_jobs=async_jobs,
            log=self.log,
            wake=self._wake,
            name=f"glasswork-job-{id(self):x}",
            may_run=self._statuses.may_run if self._statuses is not None else None,
            gate=self._gate,
        )
        periodic = (
            PeriodicFirer(
                self.driver,
                self.schedules,
                self.periodic_queue,
                self.summary,
                self.log,
                self.capabilities.periodic_claims,
                self.metrics,
            )
            if self.schedules and not until_empty
            else None
        )
        if self.metrics_server is not None:
            assert self._heartbeat is not None
            self._heartbeat.beat(started, self._turn_limit())
            self.metrics_server.start(self._heartbeat)  # a port in use fails here, before any job
        beats = self._heartbeat_writer(pool)
        with self._stop.signals(self.install_signal_handlers and loop is None):
            pool.start()
            if periodic is not None:
                periodic.start()
            if beats is not None:
                beats.start()
            self._log_start()
            try:
                self._loop(pool, until_empty, include_delayed, deadline)
            except BaseException:
                self._stop.forced = True  # release what is held at once, then re-raise
                raise
            finally:
                try:
                    self._shut_down(pool, deadline)
                finally:
                    if periodic is not None:
                        periodic.stop()
                    if beats is not None:
                        beats.stop()
                    if async_jobs is not None:
                        async_jobs.close()
                    if self.metrics_server is not None:
                        self.metrics_server.close()
                    flush_metrics(self.metrics)  # counts of the last moments (the dashboard's)
                    self.summary.elapsed = time.monotonic() - started
                    self._stop.reset()  # the worker may be run again
                    self.log.info("worker stopped: %s", self.summary)
        return self.summary

    def _loop(
        self, pool: JobPool, until_empty: bool, include_delayed: bool, deadline: float | None
    ) -> None:
        """Receive, run, settle, until stopped (or, ``until_empty``, drained)."""
        receiver = self._receiver
        heartbeat = self._heartbeat
        turn_limit = self._turn_limit()
        while not self._stop.requested:
            self._changed.clear()
            now = time.monotonic()
            if heartbeat is not None:
                heartbeat.beat(now, turn_limit)
            if deadline is not None and now >= deadline:
                self.log.warning("stopping: the run's time limit was reached")
                return
            self._tend(pool, now)
            due = now >= receiver.due_at
            settler = self._settler
            wanted = (
                receiver.wanted(pool, settler.job_seconds, settler.limited_seconds) if due else 0
            )
            if wanted:
                # Long-poll only with nothing held and nothing to settle: a job ending during
                # the poll would wait for it, its lease running out meanwhile.
                idle = pool.holding() == 0 and not self._settler.pending
                # Until empty, a receive only long-polls while waiting for a retry.
                soon = self._settler.retries.due_within(now + self._retries_within)
                poll = not until_empty or soon
                wait = self.wait_seconds if idle and poll else 0.0
                batch = receiver.receive(wanted, wait)
                if batch is None:
                    continue  # the driver failed: the next receive is due later
                stamp = time.monotonic()
                held = [Held(received, stamp) for received in batch]
                if self._stopping():  # a signal arrived while we waited
                    self._settler.release(held, "received during shutdown")
                    return
                if held:
                    pool.submit(held, self._settler.job_seconds, receiver.starting)
                    continue  # there may be more: receive again while there is room
                if idle and until_empty and self._drained(include_delayed, now):
                    return
                if idle and wait:
                    continue  # the long poll was the wait
            self._changed.wait(self._pause(pool, now, receiver.due_at))

    def _tend(self, pool: JobPool, now: float) -> None:
        """Everything but receiving: settle finished jobs, take expired ones from their
        threads, keep leases alive, report signals."""
        self._notice_signals(pool)
        pool.handoff.nudge()
        self._settler.collect(pool.take_finished())
        lost = pool.expire(now)
        if lost:
            self._settler.lose(lost)
        self._leases.keep_alive(pool, now)
        if self._leases.seconds is not None:
            self._settler.give_up_after = self._leases.seconds
        if self._statuses is not None:
            self._statuses.tick(pool.running(), pool.stop_async, now)
        self._settler.flush()

    def _pause(self, pool: JobPool, now: float, receive_at: float) -> float:
        """How long the loop may sleep: until a job ends, a stop is asked, or something is
        due (a receive, a deadline, a lease renewal), and at most ``poll_interval``."""
        wake = [now + self.poll_interval]
        if receive_at > now:
            wake.append(receive_at)
        deadline = pool.next_deadline()
        if deadline is not None:
            wake.append(deadline)
        renewal = self._leases.due_at()
        if renewal is not None:
            wake.append(renewal)
        if self._statuses is not None and pool.holding():
            wake.append(self._statuses.due_at())
        return max(0.001, min(wake) - now)

    def _heartbeat_writer(self, pool: JobPool) -> HeartbeatWriter | None:
        """The writer of this worker's heartbeats, where the driver keeps them."""
        heartbeats = self.capabilities.heartbeats
        store = heartbeats.heartbeat_store() if heartbeats is not None else None
        if store is None:
            return None
        return HeartbeatWriter(
            store,
            queues=self.queues,
            concurrency=self.concurrency,
            in_flight=pool.holding,
            every=self.heartbeat_seconds,
            log=self.log,
        )

    def _turn_limit(self) -> float:
        """The longest a healthy turn of the control loop waits (a long poll, then a pause),
        besides the driver's own time: what ``/healthz`` allows between two turns."""
        return self.wait_seconds + self.poll_interval

    def _drained(self, include_delayed: bool, received_at: float) -> bool:
        """Whether a run until empty is over; ``received_at``: when the receive that found
        nothing began (a retry due before it was there to be found)."""
        self._settler.flush()
        if self._settler.pending:
            return False  # outcomes the driver refused so far: keep trying
        retries = self._settler.retries
        retries.drop_due(received_at)
        if retries.due_within(received_at + self._retries_within):
            return False  # a retry comes due soon: wait for it and run it
        if include_delayed:
            assert self.capabilities.pending_count is not None  # checked when the run began
            return self.capabilities.pending_count.pending_count(self.queues) == 0
        self.summary.pending_retries = len(retries)
        return True

    def _shut_down(self, pool: JobPool, deadline: float | None) -> None:
        """Release what no thread started, give running jobs the grace period (never past
        the run's ``deadline``), then release whatever is still running."""
        pool.close()
        self._settler.release(pool.unstarted(), "received but not started before shutdown")
        running = len(pool.running())
        if running and not self._stop.forced:
            self.log.info(
                "stopping: waiting up to %gs for %d in-flight job(s)", self.grace_period, running
            )
        end = time.monotonic() + self.grace_period
        if deadline is not None:
            end = min(end, deadline)
        while pool.running() and not self._stop.forced:
            self._changed.clear()
            now = time.monotonic()
            if now >= end:
                break
            if self._heartbeat is not None:
                self._heartbeat.beat(now, self._turn_limit())
            self._tend(pool, now)
            self._changed.wait(min(self._pause(pool, now, 0.0), end - now))
        left = pool.take_running()
        self._settler.collect(pool.take_finished())
        self._settler.flush()
        self._settler.release(left, "still running at shutdown")
        pool.join(1.0)

    def _notice_signals(self, pool: JobPool) -> None:
        for name in self._stop.take_notices():
            self._signals_seen += 1
            if self._signals_seen > 1:
                self.log.warning("%s again: releasing in-flight jobs and stopping now", name)
            else:
                self.log.info(
                    "%s: no new jobs; finishing %d in flight (up to %gs; %s again to stop now)",
                    name,
                    len(pool.running()),
                    self.grace_period,
                    name,
                )

    def _throttled(self, count: int) -> None:
        """Deliveries a claim held back by their limits (the driver put them back)."""
        self.summary.counts["throttled"] += count

    def _stopping(self) -> bool:
        return self._stop.requested  # a call: other threads and signals change it

    def _signal_from_loop(self, signum: int) -> None:
        self._stop.on_signal(signum)
        self._changed.set()

    def _wake(self) -> None:
        if not self._changed.is_set():
            self._changed.set()

    def _new_executor(self) -> Executor:
        """An executor of its own for a job thread (its private loop runs async hooks)."""
        ex = self.executor
        executor = Executor(ex.registry, ex.services, ex.hooks, ex.log, ex.steps)
        executor.string_cache = ex.string_cache
        return executor

    def _log_start(self) -> None:
        self.log.info(
            "worker started: %d jobs registered, queues=%s, concurrency=%d, job timeout=%s, "
            "driver=%r%s",
            len(self.registry),
            ",".join(self.queues) if self.queues else "all",
            self.concurrency,
            f"{self.job_timeout:g}s" if self.job_timeout is not None else "none",
            self.driver,
            f", periodic: {', '.join(self.schedules)}" if self.schedules else "",
        )
        lacks = self._lacks()
        if lacks:
            self.log.info("the %s driver %s", self.driver.name, "; ".join(lacks))

    def _lacks(self) -> list[str]:
        """What the driver cannot do that changes how this worker runs jobs, said once."""
        caps, lacks = self.capabilities, []
        if caps.lease_extension is None:
            lacks.append(
                "cannot extend leases: a job running longer than its lease may be delivered "
                "to another worker too"
            )
        if self.schedules and caps.periodic_claims is None:
            lacks.append(
                "cannot claim periodic fires: every worker with periodic=True fires each "
                "periodic job, so run only one"
            )
        return lacks


def _chain(
    executor: Executor,
    driver: QueueDriver,
    steps: Sequence[RunStep],
    job_timeout: float | None,
    metrics: Sequence[MetricsSink],
    idempotency_store: IdempotencyStore | None,
) -> tuple[RunStep, ...]:
    """The around-run chain every worker uses, its timeout step made the worker's own
    (:class:`SlotWatch`: it also gives the control thread each run's deadline)."""
    chain = worker_steps(
        executor.registry,
        driver,
        steps,
        default_timeout=job_timeout,
        metrics=metrics,
        idempotency_store=idempotency_store,
    )
    return tuple(
        SlotWatch(step.default) if isinstance(step, JobTimeout) else step for step in chain
    )
