"""Worker: the long-running loop, in-process (real processes are in tests/integration)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.jobs import (
    JobMessage,
    JobService,
    MockQueueDriver,
    PermanentJobError,
    define_job,
    define_periodic_job,
)
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError
from glasswork.jobs.worker import Worker


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[SQLiteQueueDriver]:
    d = SQLiteQueueDriver(tmp_path / "jobs.db", visibility_timeout=5)
    yield d
    d.close()


def module_of(*jobs: Any, providers: Any = ()) -> Any:
    return define_module(name="test", jobs=list(jobs), providers=list(providers))


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Rendezvous:
    """The first ``count`` handlers to call :meth:`sync` or :meth:`wait` wait until all of
    them are running at once (raising after 10 s if they never are), which proves that
    many run side by side without guessing how long that takes; later ones go on at once.
    Keeps the peak number running too."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.lock = threading.Lock()
        self.entered = self.now = self.peak = 0

    def _enter(self) -> bool:
        with self.lock:
            self.entered += 1
            self.now += 1
            self.peak = max(self.peak, self.now)
            return self.entered <= self.count

    def _leave(self) -> None:
        with self.lock:
            self.now -= 1

    def _met(self, deadline: float) -> bool:
        if self.entered >= self.count:
            return True
        if time.monotonic() > deadline:
            raise AssertionError(f"{self.count} jobs never ran at once")
        return False

    def sync(self) -> None:
        waits = self._enter()
        deadline = time.monotonic() + 10
        try:
            while waits and not self._met(deadline):
                time.sleep(0.005)
        finally:
            self._leave()

    async def wait(self) -> None:
        waits = self._enter()
        deadline = time.monotonic() + 10
        try:
            while waits and not self._met(deadline):
                await asyncio.sleep(0.005)
        finally:
            self._leave()


def start_in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def test_runs_sync_and_async_jobs_and_acks_them(driver: SQLiteQueueDriver) -> None:
    seen: list[tuple[str, Any]] = []

    def sync_handler(payload: Any, ctx: Any) -> None:
        seen.append(("sync", payload))

    async def async_handler(payload: Any) -> None:
        await asyncio.sleep(0)
        seen.append(("async", payload))

    sync_job = define_job(name="sync", handler=sync_handler)
    async_job = define_job(name="async", handler=async_handler)
    service = JobService(driver)
    service.enqueue_many(sync_job, range(5))
    service.enqueue_many(async_job, range(5))
    summary = Worker(module=module_of(sync_job, async_job), driver=driver).run_until_empty()
    assert summary.done == 10
    assert sorted(seen) == sorted(
        [("sync", i) for i in range(5)] + [("async", i) for i in range(5)]
    )
    assert driver.stats() == {}


def test_sync_handlers_run_in_threads_off_the_loop(driver: SQLiteQueueDriver) -> None:
    threads: list[str] = []
    job = define_job(
        name="t", handler=lambda p, ctx: threads.append(threading.current_thread().name)
    )
    JobService(driver).enqueue(job, None)
    Worker(module=module_of(job), driver=driver).run_until_empty()
    assert threads[0].startswith("glasswork-job")


def test_at_most_concurrency_jobs_in_flight(driver: SQLiteQueueDriver) -> None:
    running = Rendezvous(3)

    def handler(payload: Any) -> None:
        running.sync()  # the first three wait for each other
        time.sleep(0.02)  # a fourth thread, were there one, would start meanwhile

    job = define_job(name="slow", handler=handler)
    JobService(driver).enqueue_many(job, range(30))
    summary = Worker(module=module_of(job), driver=driver, concurrency=3).run_until_empty()
    assert summary.done == 30
    assert running.peak == 3


def test_async_jobs_overlap_on_the_loop(driver: SQLiteQueueDriver) -> None:
    running = Rendezvous(10)  # all ten wait on the one loop until all ten are in

    async def handler(payload: Any) -> None:
        await running.wait()

    job = define_job(name="wait", handler=handler)
    JobService(driver).enqueue_many(job, range(10))
    summary = Worker(module=module_of(job), driver=driver, concurrency=10).run_until_empty()
    assert summary.done == 10
    assert running.peak == 10


@pytest.mark.slow
def test_transient_failures_retry_until_max_attempts_then_dead_letter(
    driver: SQLiteQueueDriver,
) -> None:
    attempts: list[int] = []

    def handler(payload: Any, ctx: Any) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("flaky upstream")

    job = define_job(
        name="flaky", handler=handler, retry={"max_attempts": 3, "backoff": 0.01, "jitter": False}
    )
    JobService(driver).enqueue(job, None)
    summary = Worker(module=module_of(job), driver=driver).run_until_empty(
        include_delayed=True, timeout=20
    )
    assert attempts == [1, 2, 3]
    assert (summary.retried, summary.dead_lettered) == (2, 1)
    [dead] = driver.dead_letters()
    assert dead.reason == "failed 3 of 3 attempts: RuntimeError: flaky upstream"
    assert driver.pending_count() == 0


@pytest.mark.slow
def test_retry_then_success(driver: SQLiteQueueDriver) -> None:
    def handler(payload: Any, ctx: Any) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("first time fails")

    job = define_job(name="second-time", handler=handler, retry={"backoff": 0.01})
    JobService(driver).enqueue(job, None)
    summary = Worker(module=module_of(job), driver=driver).run_until_empty(include_delayed=True)
    assert (summary.retried, summary.done, summary.dead_lettered) == (1, 1, 0)


def test_permanent_error_dead_letters_once_and_calls_hooks(driver: SQLiteQueueDriver) -> None:
    calls: list[str] = []

    def handler(payload: Any) -> None:
        raise PermanentJobError(f"User not found: {payload['user_id']}")

    job = define_job(name="welcome", handler=handler, queue="emails")
    JobService(driver).enqueue(job, {"user_id": "404"})
    hooks = {
        "on_job_start": lambda job, ctx: calls.append("start"),
        "on_job_dead_letter": lambda job, ctx, err: calls.append("dead"),
    }
    summary = Worker(module=module_of(job), driver=driver, hooks=hooks).run_until_empty()
    assert summary.dead_lettered == 1
    assert calls == ["start", "dead"]
    [dead] = driver.dead_letters()
    assert (dead.queue, dead.job_name) == ("emails", "welcome")
    assert dead.reason == "PermanentJobError: User not found: 404"


def test_malformed_rows_and_unknown_jobs_go_to_dead_letter_with_reason(
    driver: SQLiteQueueDriver, tmp_path: Path
) -> None:
    driver.enqueue(JobMessage.create("nobody-registered-this", {}))
    raw = driver._conn()
    raw.execute(
        "INSERT INTO glasswork_jobs (queue, body, visible_at, enqueued_at) "
        "VALUES ('default', 'this is not json', 0, 0)"
    )
    job = define_job(name="known", handler=lambda p: None)
    summary = Worker(module=module_of(job), driver=driver).run_until_empty()
    assert summary.dead_lettered == 2
    # Both ran at once, on two threads: either may be dead-lettered first.
    malformed, unknown = sorted(driver.dead_letters(), key=lambda d: d.job_name is not None)
    assert unknown.reason == (
        "UnknownJobError: unknown job 'nobody-registered-this'; registered jobs: known"
    )
    assert malformed.reason.startswith("not a Glasswork job envelope: <body>: Invalid JSON")
    assert malformed.body == "this is not json"
    assert driver.pending_count() == 0


def test_discarded_job_is_acked_without_dead_letter(driver: SQLiteQueueDriver) -> None:
    job = define_job(name="best-effort", handler=lambda p: 1 / 0, retry=False)
    JobService(driver).enqueue(job, None)
    summary = Worker(module=module_of(job), driver=driver).run_until_empty()
    assert summary.counts["discarded"] == 1
    assert driver.dead_letters() == []
    assert driver.pending_count() == 0


class _NoDeadLetter(SQLiteQueueDriver):
    def dead_letter(self, body: str, reason: str, *, queue: str | None = None) -> bool:
        return False


class _BrokenDeadLetter(SQLiteQueueDriver):
    def dead_letter(self, body: str, reason: str, *, queue: str | None = None) -> bool:
        raise OSError("disk full")


@pytest.mark.slow
def test_dead_letter_rules_match_the_lambda_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def doomed(payload: Any) -> None:
        raise PermanentJobError("never works")

    job = define_job(name="doomed", handler=doomed)
    # No dead letter: logged at ERROR with the body, then acknowledged.
    quiet = _NoDeadLetter(tmp_path / "a.db")
    JobService(quiet).enqueue(job, {"k": "v"})
    with caplog.at_level(logging.ERROR):
        Worker(module=module_of(job), driver=quiet).run_until_empty()
    assert "no dead-letter queue configured" in caplog.text
    assert '"payload":{"k":"v"}' in caplog.text
    assert quiet.pending_count() == 0
    # The send fails: the message is kept (tried again until its lease runs out, then it
    # is delivered again), never acknowledged without its dead letter.
    broken = _BrokenDeadLetter(tmp_path / "b.db", visibility_timeout=0.5)
    JobService(broken).enqueue(job, None)
    Worker(module=module_of(job), driver=broken).run_until_empty(timeout=10)
    assert broken.pending_count() == 1
    assert broken.dead_letters() == []


def test_works_with_any_driver_that_receives(caplog: pytest.LogCaptureFixture) -> None:
    mock = MockQueueDriver()
    job = define_job(name="ping", handler=lambda p: None)
    JobService(mock).enqueue_many(job, range(3))
    with caplog.at_level(logging.INFO, logger="glasswork.worker"):
        summary = Worker(module=module_of(job), driver=mock).run_until_empty()
    assert summary.done == 3
    assert mock.pending == []
    assert "start ping" in caplog.text
    assert "end ping" in caplog.text and "(attempt 1): done, ran " in caplog.text
    assert "worker stopped: 3 jobs" in caplog.text


def test_stop_finishes_in_flight_jobs(driver: SQLiteQueueDriver) -> None:
    started, stopping, finished = threading.Event(), threading.Event(), threading.Event()

    def handler(payload: Any) -> None:
        started.set()
        stopping.wait(10)  # still running when the stop comes
        finished.set()

    job = define_job(name="slow", handler=handler)
    JobService(driver).enqueue(job, None)
    worker = Worker(module=module_of(job), driver=driver, grace_period=10)
    thread = start_in_thread(worker)
    assert started.wait(10)
    worker.stop()
    stopping.set()
    thread.join(10)
    assert finished.is_set()
    assert worker.summary.done == 1
    assert driver.pending_count() == 0


def test_jobs_still_running_after_grace_period_are_released(driver: SQLiteQueueDriver) -> None:
    started = threading.Event()

    async def handler(payload: Any) -> None:
        started.set()
        await asyncio.sleep(30)

    job = define_job(name="stuck", handler=handler)
    JobService(driver).enqueue(job, None)
    worker = Worker(module=module_of(job), driver=driver, grace_period=0.2)
    thread = start_in_thread(worker)
    assert started.wait(10)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert worker.summary.released == 1
    stats = driver.stats()["default"]
    assert (stats.ready, stats.in_flight) == (1, 0)  # released now, not after the lease


@pytest.mark.slow
def test_slow_jobs_are_not_hoarded_by_one_worker(driver: SQLiteQueueDriver) -> None:
    # All four run at once, so each worker (two threads) must hold two: one that took
    # more would have them wait in its hands, and the four would never meet.
    running = Rendezvous(4)

    def handler(payload: Any) -> None:
        running.sync()
        time.sleep(0.3)  # slow: no prefetch

    job = define_job(name="slow", handler=handler)
    JobService(driver).enqueue_many(job, range(4))
    workers = [Worker(module=module_of(job), driver=driver, concurrency=2) for _ in range(2)]
    threads = [start_in_thread(w) for w in workers]
    wait_until(lambda: sum(w.summary.done for w in workers) == 4)
    for w in workers:
        w.stop()
    for t in threads:
        t.join(10)
    assert [w.summary.done for w in workers] == [2, 2]


def test_shutdown_releases_prefetched_messages_too(driver: SQLiteQueueDriver) -> None:
    runs = 0

    async def handler(payload: Any) -> None:
        nonlocal runs
        runs += 1
        if runs > 3:  # fast jobs first, so the worker starts holding extra messages
            await asyncio.sleep(30)

    job = define_job(name="mixed", handler=handler)
    JobService(driver).enqueue_many(job, range(10))
    worker = Worker(
        module=module_of(job), driver=driver, concurrency=1, batch_size=4, grace_period=0.1
    )
    thread = start_in_thread(worker)
    wait_until(lambda: runs == 4)
    # The running job and the messages the worker holds besides it, all leased.
    wait_until(lambda: driver.stats()["default"].in_flight >= 2)
    worker.stop()
    thread.join(10)
    assert worker.summary.done == 3
    assert worker.summary.released >= 2  # the running job and at least one held message
    stats = driver.stats()["default"]
    assert (stats.ready, stats.in_flight) == (7, 0)


@pytest.mark.slow
def test_long_job_keeps_its_lease(tmp_path: Path) -> None:
    lease = 1.0  # renewed every third of it: room for a busy machine's pauses
    driver = SQLiteQueueDriver(tmp_path / "jobs.db", visibility_timeout=lease)
    runs: list[int] = []
    watched = threading.Event()

    def handler(payload: Any) -> None:
        runs.append(1)
        watched.wait(30)  # runs until three lease lengths have passed

    job = define_job(name="long", handler=handler)
    JobService(driver).enqueue(job, None)
    worker = Worker(module=module_of(job), driver=driver)
    thread = start_in_thread(worker)
    wait_until(lambda: bool(runs))
    other = SQLiteQueueDriver(tmp_path / "jobs.db")
    deadline = time.monotonic() + 3 * lease
    while time.monotonic() < deadline:  # past three lease lengths, nobody else may claim it
        assert other.receive() == []
        time.sleep(0.05)
    watched.set()
    wait_until(lambda: worker.summary.done == 1)
    worker.stop()
    thread.join(10)
    assert runs == [1]


@pytest.mark.slow
def test_periodic_jobs_fire_once_per_time_across_workers(driver: SQLiteQueueDriver) -> None:
    runs: list[float] = []
    tick = define_periodic_job(
        name="tick", handler=lambda p: runs.append(time.time()), schedule="rate(1 second)"
    )
    module = module_of(tick)
    workers = [
        Worker(module=module, driver=driver, periodic=True, wait_seconds=0.2) for _ in range(2)
    ]
    began = time.time()
    threads = [start_in_thread(w) for w in workers]
    wait_until(lambda: len(runs) >= 2)
    for w in workers:
        w.stop()
    for t in threads:
        t.join(10)
    ended = time.time()
    seconds_passed = int(ended) - int(began)  # whole-second boundaries in the window
    fired = sum(w.summary.fired for w in workers)
    # Each boundary fires once in all; without the shared claim both workers would fire it.
    assert 2 <= fired <= seconds_passed


def test_periodic_queue_is_added_to_the_queues_a_worker_reads(
    driver: SQLiteQueueDriver,
) -> None:
    tick = define_periodic_job(name="tick", handler=lambda p: None, schedule="0 3 * * *")
    worker = Worker(module=module_of(tick), driver=driver, queues=["emails"], periodic=True)
    assert worker.queues == ["emails", "default"]
    assert list(worker.schedules) == ["tick"]


def test_bad_schedule_fails_when_defined_naming_the_job(driver: SQLiteQueueDriver) -> None:
    with pytest.raises(ConfigurationError, match="periodic job 'tick'"):
        define_periodic_job(name="tick", handler=lambda p: None, schedule="every day")


def test_run_until_empty_leaves_far_delayed_jobs(driver: SQLiteQueueDriver) -> None:
    job = define_job(name="later", handler=lambda p: None)
    JobService(driver).enqueue_in(job, None, "1h")
    JobService(driver).enqueue(job, None)
    summary = Worker(module=module_of(job), driver=driver).run_until_empty()
    assert summary.done == 1
    assert driver.stats()["default"].delayed == 1


# -- timeouts ---------------------------------------------------------------------------------


def job_threads(worker: Worker) -> list[threading.Thread]:
    """The worker's live job threads, abandoned ones included."""
    prefix = f"glasswork-job-{id(worker):x}"
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


@pytest.mark.slow
def test_hung_sync_jobs_are_timed_out_and_their_threads_replaced(
    driver: SQLiteQueueDriver,
) -> None:
    release = threading.Event()
    ran: list[str] = []

    def handler(payload: Any) -> None:
        if payload == "hang":
            release.wait(30)
        ran.append(payload)

    job = define_job(name="maybe-hang", handler=handler, retry=False)
    JobService(driver).enqueue_many(job, ["hang", "hang", "hang", "ok"])
    worker = Worker(module=module_of(job), driver=driver, concurrency=1, job_timeout=0.2)
    started = time.monotonic()
    summary = worker.run_until_empty(timeout=10)
    assert time.monotonic() - started < 5
    # Each hung job was given up on at its timeout, and the one slot still ran the last job.
    assert summary.counts["discarded"] == 3
    assert ran == ["ok"]
    assert worker.abandoned_threads == 3
    assert len(job_threads(worker)) == 3  # the abandoned ones; the pool itself has stopped
    release.set()  # the hung handlers return now: their late results are ignored
    wait_until(lambda: worker.abandoned_threads == 0)
    assert ran.count("hang") == 3 and worker.summary.counts["done"] == 1
    assert driver.pending_count() == 0


def test_a_timed_out_sync_run_fails_through_the_steps_and_hooks_once(
    driver: SQLiteQueueDriver,
) -> None:
    release = threading.Event()
    seen: list[tuple[str, str]] = []

    class Record:
        async def __call__(self, run: Any, call_next: Any) -> Any:
            outcome = await call_next()
            seen.append(("step", f"{outcome.kind}: {type(outcome.error).__name__}"))
            return outcome

    job = define_job(
        name="slow", handler=lambda p: release.wait(30), timeout=0.2, retry={"max_attempts": 1}
    )
    hooks = {
        "on_job_failed": lambda job, ctx, err: seen.append(("failed", type(err).__name__)),
        "on_job_complete": lambda job, ctx: seen.append(("complete", "")),
    }
    JobService(driver).enqueue(job, None)
    worker = Worker(module=module_of(job), driver=driver, hooks=hooks, steps=[Record()])
    summary = worker.run_until_empty(timeout=10)
    release.set()
    wait_until(lambda: worker.abandoned_threads == 0)
    assert summary.dead_lettered == 1
    assert seen == [("failed", "JobTimeoutError"), ("step", "dead_letter: JobTimeoutError")]
    [dead] = driver.dead_letters()
    assert dead.reason == (
        "failed 1 of 1 attempts: JobTimeoutError: job 'slow' did not finish within its 0.2s timeout"
    )


def test_an_async_job_past_its_timeout_is_cancelled(driver: SQLiteQueueDriver) -> None:
    cancelled = threading.Event()

    async def handler(payload: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = define_job(name="sleepy", handler=handler, retry=False)
    JobService(driver).enqueue(job, None)
    worker = Worker(module=module_of(job), driver=driver, job_timeout="200ms")
    summary = worker.run_until_empty(timeout=10)
    assert cancelled.is_set()
    assert summary.counts["discarded"] == 1
    assert worker.abandoned_threads == 0


def test_a_job_stuck_outside_its_handler_frees_its_slot_and_its_lease_runs_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    driver = SQLiteQueueDriver(tmp_path / "jobs.db", visibility_timeout=0.5)
    release = threading.Event()
    ran: list[Any] = []
    job = define_job(name="j", handler=lambda p: ran.append(p))

    def start_hook(message: Any, ctx: Any) -> None:
        if message.payload == "stuck" and ctx.attempt == 1:
            release.wait(30)  # a hook that hangs: not a handler call the worker can fail

    JobService(driver).enqueue_many(job, ["stuck", "next"])
    worker = Worker(
        module=module_of(job),
        driver=driver,
        concurrency=1,
        job_timeout=0.2,
        hooks={"on_job_start": start_hook},
    )
    with caplog.at_level(logging.ERROR, logger="glasswork.worker"):
        summary = worker.run_until_empty(include_delayed=True, timeout=10)
    release.set()
    assert "outside its handler, where it cannot be stopped" in caplog.text
    assert summary.counts["errors"] == 1  # no outcome for that run...
    assert sorted(ran) == ["next", "stuck"]  # ...its lease ran out and it ran again
    assert driver.pending_count() == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_run_until_empty_returns_within_its_timeout_releasing_what_runs(
    driver: SQLiteQueueDriver, kind: str
) -> None:
    release = threading.Event()
    seen: list[str] = []

    async def async_handler(payload: Any) -> None:
        await asyncio.sleep(30)

    class Unwinds:
        async def __call__(self, run: Any, call_next: Any) -> Any:
            try:
                return await call_next()
            finally:
                seen.append("step unwound")

    handler = (lambda p: release.wait(30)) if kind == "sync" else async_handler
    job = define_job(name="long", handler=handler)
    JobService(driver).enqueue(job, None)
    worker = Worker(
        module=module_of(job),
        driver=driver,
        grace_period=30,
        steps=[Unwinds()],
        hooks={"on_job_failed": lambda job, ctx, err: seen.append(f"failed: {err!r}")},
    )
    started = time.monotonic()
    summary = worker.run_until_empty(timeout=1)
    took = time.monotonic() - started
    release.set()
    assert 1 <= took < 10  # its timeout, not the job's 30 s nor the 30 s grace period
    assert summary.released == 1
    assert driver.stats()["default"].ready == 1
    # A released run has no outcome: no failure hook, now or when its thread or coroutine
    # is gone; its steps unwind.
    wait_until(lambda: worker.abandoned_threads == 0)
    gc.collect()
    assert seen == ["step unwound"]


def test_job_timeout_is_checked(driver: SQLiteQueueDriver) -> None:
    job = define_job(name="j", handler=lambda p: None)
    for bad in (0, -1, "soon", float("inf")):
        with pytest.raises(ConfigurationError, match="job_timeout"):
            Worker(module=module_of(job), driver=driver, job_timeout=bad)


# -- BaseExceptions, logs, serve --------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [SystemExit(2), KeyboardInterrupt(), GeneratorExit(), asyncio.CancelledError()]
)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_base_exceptions_fail_the_job_and_keep_the_slot(
    driver: SQLiteQueueDriver, error: BaseException, kind: str
) -> None:
    def sync_handler(payload: Any) -> None:
        if payload == "boom":
            raise error

    async def async_handler(payload: Any) -> None:
        sync_handler(payload)

    job = define_job(name="j", handler=sync_handler if kind == "sync" else async_handler)
    JobService(driver).enqueue_many(job, ["boom", "fine"])
    summary = Worker(module=module_of(job), driver=driver, concurrency=1).run_until_empty()
    assert (summary.retried, summary.done, summary.counts["errors"]) == (1, 1, 0)


@pytest.mark.slow
def test_log_lines_carry_job_fields_and_the_first_failure_its_traceback(
    driver: SQLiteQueueDriver, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(payload: Any, ctx: Any) -> None:
        if ctx.attempt < 3:
            raise RuntimeError(f"boom {ctx.attempt}")

    job = define_job(name="flaky", handler=handler, retry={"backoff": 0.01, "jitter": False})
    result = JobService(driver).enqueue(job, None)
    with caplog.at_level(logging.INFO, logger="glasswork.worker"):
        summary = Worker(module=module_of(job), driver=driver).run_until_empty(include_delayed=True)
    assert summary.done == 1
    ends = [r for r in caplog.records if r.getMessage().startswith("end flaky")]
    assert [(r.attempt, r.outcome) for r in ends] == [(1, "retry"), (2, "retry"), (3, "done")]  # type: ignore[attr-defined]
    for r in ends:
        assert (r.job_name, r.job_id, r.queue) == ("flaky", result.job_id, "default")  # type: ignore[attr-defined]
        assert isinstance(r.duration_ms, float)  # type: ignore[attr-defined]
    first = ends[0]
    assert first.getMessage().endswith(", retry in 0.0 s") and ", ran " in first.getMessage()
    # End lines are INFO: the failure itself is the executor's one WARNING line, which
    # carries the first failure's traceback (test_each_failed_attempt_logs_one_warning).
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in ends)
    starts = [r for r in caplog.records if r.getMessage().startswith("start flaky")]
    assert [r.attempt for r in starts] == [1, 2, 3]  # type: ignore[attr-defined]
    assert "worker stopped: 3 jobs" in caplog.text


def test_summary_says_1_job(driver: SQLiteQueueDriver) -> None:
    job = define_job(name="j", handler=lambda p: None)
    JobService(driver).enqueue(job, None)
    summary = Worker(module=module_of(job), driver=driver).run_until_empty()
    assert str(summary).startswith("1 job in ")


def test_serve_runs_async_jobs_on_the_callers_loop(driver: SQLiteQueueDriver) -> None:
    loops: list[Any] = []

    async def handler(payload: Any) -> None:
        loops.append(asyncio.get_running_loop())

    job = define_job(name="a", handler=handler)
    JobService(driver).enqueue_many(job, range(3))
    worker = Worker(module=module_of(job), driver=driver, install_signal_handlers=False)

    async def main() -> Any:
        summary = await worker.serve(until_empty=True)
        return summary, asyncio.get_running_loop()

    summary, loop = asyncio.run(main())
    assert summary.done == 3
    assert loops == [loop] * 3


def test_sync_and_async_jobs_together_stay_within_concurrency(
    driver: SQLiteQueueDriver,
) -> None:
    lock = threading.Lock()
    now = peak = 0

    def enter() -> None:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)

    def leave() -> None:
        nonlocal now
        with lock:
            now -= 1

    running = Rendezvous(3)  # the first three, sync and async, wait for each other

    def sync_handler(payload: Any) -> None:
        enter()
        running.sync()
        time.sleep(0.1)
        leave()

    async def async_handler(payload: Any) -> None:
        enter()
        await running.wait()
        await asyncio.sleep(0.1)
        leave()

    sync_job = define_job(name="s", handler=sync_handler)
    async_job = define_job(name="a", handler=async_handler)
    service = JobService(driver)
    for i in range(8):
        service.enqueue(sync_job if i % 2 else async_job, i)
    summary = Worker(
        module=module_of(sync_job, async_job), driver=driver, concurrency=3
    ).run_until_empty()
    assert summary.done == 8
    assert peak == 3


@pytest.mark.slow
def test_an_async_job_blocking_the_loop_past_its_timeout_is_given_up_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("glasswork.jobs.worker.slots.ASYNC_OVERRUN", 0.2)
    driver = SQLiteQueueDriver(tmp_path / "jobs.db", visibility_timeout=0.5)
    ran: list[str] = []

    async def blocks(payload: Any, ctx: Any) -> None:
        if ctx.attempt == 1:
            time.sleep(1.0)  # blocks the event loop: the timeout cannot cancel it
        ran.append(f"async {ctx.attempt}")

    blocker = define_job(name="blocker", handler=blocks)
    other = define_job(name="other", handler=lambda p: ran.append("sync"))
    JobService(driver).enqueue(blocker, None)
    JobService(driver).enqueue(other, None)
    worker = Worker(module=module_of(blocker, other), driver=driver, concurrency=2, job_timeout=0.2)
    with caplog.at_level(logging.ERROR, logger="glasswork.worker"):
        summary = worker.run_until_empty(include_delayed=True, timeout=10)
    assert "ran past its 0.2s timeout blocking the event loop" in caplog.text
    assert summary.counts["errors"] == 1  # no outcome for the blocked run...
    assert "sync" in ran and "async 2" in ran  # ...its lease ran out, and it ran again
    assert driver.pending_count() == 0
