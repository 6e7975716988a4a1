"""The long-running worker on a driver with a status store (the mock driver's, in memory):
a job's status through its life, its result, cancellation while it runs, progress, and a
worker stopped mid-job. Timing waits on conditions with deadlines, never fixed sleeps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from glasswork import define_module
from glasswork.jobs import JobService, MockQueueDriver, define_job
from glasswork.jobs.drivers.records import JobStatus
from glasswork.jobs.errors import JobCancelledError, JobFailedError
from glasswork.jobs.worker import Worker

DEADLINE = 10.0


class Report(pydantic.BaseModel):
    rows: int
    note: str


def wait_until(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
    return value


def status_of(driver: MockQueueDriver, job_id: str) -> JobStatus:
    status = driver.job_status(job_id)
    assert status is not None, f"no status for job {job_id}"
    return status


def wait_for_state(driver: MockQueueDriver, job_id: str, state: str) -> JobStatus:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (s := driver.job_status(job_id)) is not None and s.state == state and s,
        f"job {job_id} to be {state} (it is {driver.job_status(job_id)})",
    )


class Running:
    """A worker running in a thread until the test ends (stopped, and joined, then)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, daemon=True)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the worker did not stop"


def worker_for(driver: MockQueueDriver, *jobs: Any, **options: Any) -> Worker:
    options.setdefault("concurrency", 2)
    return Worker(
        module=define_module(name="status", jobs=list(jobs)),
        driver=driver,
        install_signal_handlers=False,
        wait_seconds=0.05,
        **options,
    )


@pytest.fixture
def driver() -> MockQueueDriver:
    return MockQueueDriver()


def test_a_jobs_status_goes_pending_running_done_with_its_result(
    driver: MockQueueDriver,
) -> None:
    go = threading.Event()

    def handler() -> Report:
        assert go.wait(DEADLINE)
        return Report(rows=3, note="ok")

    job = define_job(name="report", handler=handler)
    job_id = JobService(driver).enqueue(job, None).job_id
    assert status_of(driver, job_id).state == "pending"
    with Running(worker_for(driver, job)):
        running = wait_for_state(driver, job_id, "running")
        assert running.attempts == 1 and running.result is None
        go.set()
        done = wait_for_state(driver, job_id, "done")
    assert done.result == {"rows": 3, "note": "ok"} and done.error is None
    assert done.attempts == 1 and done.finished
    assert driver.pending == []  # finish acknowledged it


def test_a_result_that_cannot_be_stored_leaves_the_job_done_with_a_note(
    driver: MockQueueDriver,
) -> None:
    job = define_job(name="odd", handler=lambda: {1, 2})
    job_id = JobService(driver).enqueue(job, None).job_id
    summary = worker_for(driver, job).run_until_empty(timeout=DEADLINE)
    assert summary.done == 1
    done = status_of(driver, job_id)
    assert done.state == "done" and done.result is None
    assert done.error is not None and "could not be stored" in done.error


def test_a_job_with_result_ttl_0_keeps_no_status_once_done(driver: MockQueueDriver) -> None:
    job = define_job(name="quiet", handler=lambda: "secret", result_ttl=0)
    job_id = JobService(driver).enqueue(job, None).job_id
    assert worker_for(driver, job).run_until_empty(timeout=DEADLINE).done == 1
    assert driver.job_status(job_id) is None and driver.pending == []


def test_a_failed_run_leaves_the_job_retrying_with_its_error_and_traceback(
    driver: MockQueueDriver,
) -> None:
    def handler() -> None:
        raise ValueError("upstream said no")

    job = define_job(name="flaky", handler=handler, retry={"max_attempts": 3, "backoff": 60})
    job_id = JobService(driver).enqueue(job, None).job_id
    summary = worker_for(driver, job).run_until_empty(timeout=DEADLINE)
    assert summary.retried == 1
    retrying = status_of(driver, job_id)
    assert retrying.state == "retrying" and retrying.attempts == 1
    assert retrying.error == "ValueError: upstream said no"
    assert retrying.traceback is not None and "upstream said no" in retrying.traceback


def test_a_job_out_of_attempts_is_dead_with_its_traceback_and_dead_lettered_once(
    driver: MockQueueDriver,
) -> None:
    def handler() -> None:
        raise RuntimeError("disk on fire")

    job = define_job(name="doomed", handler=handler, retry={"max_attempts": 1})
    job_id = JobService(driver).enqueue(job, None).job_id
    assert worker_for(driver, job).run_until_empty(timeout=DEADLINE).dead_lettered == 1
    dead = status_of(driver, job_id)
    assert dead.state == "dead"
    assert dead.error == "failed 1 of 1 attempts: RuntimeError: disk on fire"
    assert dead.traceback is not None and "Traceback" in dead.traceback
    assert [d.reason for d in driver.dead_letters] == [dead.error]
    assert driver.pending == []


def test_dead_letter_on_dead_letters_at_the_first_failure(driver: MockQueueDriver) -> None:
    def handler() -> None:
        raise KeyError("no such account")

    job = define_job(
        name="lookup", handler=handler, retry={"max_attempts": 5, "dead_letter_on": (KeyError,)}
    )
    job_id = JobService(driver).enqueue(job, None).job_id
    worker_for(driver, job).run_until_empty(timeout=DEADLINE)
    dead = status_of(driver, job_id)
    assert dead.state == "dead" and dead.attempts == 1


def test_a_discarded_job_is_failed_with_its_error(driver: MockQueueDriver) -> None:
    def handler() -> None:
        raise ValueError("bad row")

    job = define_job(name="once", handler=handler, retry=False)
    job_id = JobService(driver).enqueue(job, None).job_id
    worker_for(driver, job).run_until_empty(timeout=DEADLINE)
    failed = status_of(driver, job_id)
    assert failed.state == "failed" and failed.error == "ValueError: bad row"
    assert failed.traceback is not None and driver.dead_letters == []


class Hooks:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def as_option(self) -> dict[str, Any]:
        return {
            "on_job_failed": lambda job, ctx, err: self.calls.append("failed"),
            "on_job_dead_letter": lambda job, ctx, err: self.calls.append("dead_letter"),
            "on_job_cancelled": lambda job, ctx, err: self.calls.append(f"cancelled: {err}"),
        }


def test_a_sync_job_cancelled_while_running_stops_at_raise_if_cancelled(
    driver: MockQueueDriver,
) -> None:
    started = threading.Event()
    steps = []

    def handler(payload: Any, ctx: Any) -> None:
        started.set()
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            ctx.raise_if_cancelled()
            steps.append(1)
            time.sleep(0.005)
        raise AssertionError("never asked to stop")

    hooks = Hooks()
    job = define_job(name="long", handler=handler, retry={"max_attempts": 5})
    job_id = JobService(driver).enqueue(job, None).job_id
    with Running(worker_for(driver, job, hooks=hooks.as_option())) as worker:
        assert started.wait(DEADLINE)
        assert driver.cancel(job_id, "no longer needed")
        cancelled = wait_for_state(driver, job_id, "cancelled")
    assert cancelled.error == "cancelled while running"
    assert hooks.calls == ["cancelled: cancelled while running"]
    assert worker.summary.counts["cancelled"] == 1 and worker.summary.retried == 0
    assert driver.pending == [] and driver.dead_letters == []
    assert steps  # it ran until asked


def test_an_async_job_cancelled_while_running_has_its_task_cancelled(
    driver: MockQueueDriver,
) -> None:
    started = threading.Event()
    finished_sleeping = []

    async def handler() -> None:
        started.set()
        await asyncio.sleep(DEADLINE)
        finished_sleeping.append(True)

    hooks = Hooks()
    job = define_job(name="await", handler=handler, retry={"max_attempts": 5})
    job_id = JobService(driver).enqueue(job, None).job_id
    with Running(worker_for(driver, job, hooks=hooks.as_option())) as worker:
        assert started.wait(DEADLINE)
        assert driver.cancel(job_id)
        cancelled = wait_for_state(driver, job_id, "cancelled")
    assert finished_sleeping == []
    assert cancelled.error == "cancelled while running"
    assert hooks.calls == ["cancelled: cancelled while running"]
    assert worker.summary.counts["cancelled"] == 1 and worker.summary.retried == 0
    assert driver.pending == [] and driver.dead_letters == []


def test_a_job_raising_job_cancelled_error_itself_ends_cancelled(driver: MockQueueDriver) -> None:
    def handler() -> None:
        raise JobCancelledError("nothing left to do")

    hooks = Hooks()
    job = define_job(name="gives-up", handler=handler)
    job_id = JobService(driver).enqueue(job, None).job_id
    worker_for(driver, job, hooks=hooks.as_option()).run_until_empty(timeout=DEADLINE)
    cancelled = status_of(driver, job_id)
    assert cancelled.state == "cancelled" and cancelled.error == "nothing left to do"
    assert hooks.calls == ["cancelled: nothing left to do"]
    assert driver.pending == [] and driver.dead_letters == []


def test_a_job_cancelled_between_receive_and_start_is_acked_without_running(
    driver: MockQueueDriver,
) -> None:
    # One thread; a few quick jobs first, so the worker then receives ahead (the blocker
    # and the victim in one receive) while the blocker holds the thread.
    go = threading.Event()
    blocking = threading.Event()
    ran: list[str] = []

    def block() -> None:
        ran.append("block")
        blocking.set()
        assert go.wait(DEADLINE)

    quick = define_job(name="quick", handler=lambda: ran.append("quick"))
    blocker = define_job(name="block", handler=block)
    victim = define_job(name="victim", handler=lambda: ran.append("victim"))
    service = JobService(driver)
    for _ in range(3):
        service.enqueue(quick, None)
    blocker_id = service.enqueue(blocker, None).job_id
    victim_id = service.enqueue(victim, None).job_id
    hooks = Hooks()
    worker = worker_for(
        driver, quick, blocker, victim, concurrency=1, batch_size=10, hooks=hooks.as_option()
    )
    with Running(worker):
        assert blocking.wait(DEADLINE)  # the one thread is busy
        wait_for_state(driver, victim_id, "running")  # received: held, not started
        assert driver.cancel(victim_id, "changed my mind")
        go.set()
        wait_for_state(driver, blocker_id, "done")
        cancelled = wait_for_state(driver, victim_id, "cancelled")
        wait_until(lambda: worker.summary.counts["skipped"] == 1, "the skip to be settled")
    assert "victim" not in ran
    assert cancelled.error == "changed my mind"
    assert hooks.calls == []  # it never ran: no hooks
    assert driver.pending == []


def test_progress_is_visible_while_the_job_runs_and_kept_when_it_ends(
    driver: MockQueueDriver,
) -> None:
    go = threading.Event()

    def handler(payload: Any, ctx: Any) -> str:
        for step in range(1, 101):
            ctx.progress(step / 200, f"step {step}")  # many reports: the tick sends the last
        assert go.wait(DEADLINE)
        ctx.progress(0.9, "almost")
        return "finished"

    job = define_job(name="steps", handler=handler)
    job_id = JobService(driver).enqueue(job, None).job_id
    with Running(worker_for(driver, job)):
        running = wait_until(
            lambda: (s := status_of(driver, job_id)).progress == 0.5 and s,
            "the progress to show while running",
        )
        assert running.state == "running" and running.progress_note == "step 100"
        go.set()
        done = wait_for_state(driver, job_id, "done")
    assert (done.progress, done.progress_note, done.result) == (0.9, "almost", "finished")


def test_a_worker_stopped_mid_job_never_leaves_its_status_done(driver: MockQueueDriver) -> None:
    entered = threading.Event()
    go = threading.Event()
    returned = threading.Event()
    runs = []

    def handler() -> str:
        runs.append(1)
        if len(runs) == 1:  # the first run hangs past the worker's end
            entered.set()
            assert go.wait(DEADLINE)
            returned.set()
        return "result"

    job = define_job(name="hang", handler=handler)
    job_id = JobService(driver).enqueue(job, None).job_id
    first = worker_for(driver, job, grace_period=0.0)
    with Running(first):
        assert entered.wait(DEADLINE)
        assert status_of(driver, job_id).state == "running"
    # Stopped with no grace: the job was released unfinished, its thread abandoned.
    assert first.summary.released == 1 and first.summary.done == 0
    assert status_of(driver, job_id).state != "done"
    go.set()  # the abandoned handler returns now: its late result is dropped
    assert returned.wait(DEADLINE)
    wait_until(lambda: first.abandoned_threads == 0, "the abandoned thread to end")
    stale = status_of(driver, job_id)
    assert stale.state != "done" and stale.result is None
    # Run again by a new worker, it ends done, with the result of the run that finished.
    assert worker_for(driver, job).run_until_empty(timeout=DEADLINE).done == 1
    done = status_of(driver, job_id)
    assert done.state == "done" and done.result == "result" and done.attempts == 2


def test_the_service_follows_a_job_the_worker_runs_wait_status_and_cancel(
    driver: MockQueueDriver,
) -> None:
    started = threading.Event()

    def add(payload: dict[str, int]) -> int:
        return payload["a"] + payload["b"]

    async def forever() -> None:
        started.set()
        await asyncio.sleep(DEADLINE)

    def broken() -> None:
        raise ValueError("never works")

    jobs = [
        define_job(name="add", handler=add),
        define_job(name="forever", handler=forever),
        define_job(name="broken", handler=broken, retry={"dead_letter_on": ValueError}),
    ]
    service = JobService(driver)
    added = service.enqueue(jobs[0], {"a": 2, "b": 3})
    endless = service.enqueue(jobs[1], None)
    failing = service.enqueue(jobs[2], None)
    with Running(worker_for(driver, *jobs, concurrency=3)):
        assert added.wait(timeout=DEADLINE) == 5
        with pytest.raises(JobFailedError) as dead:
            failing.wait(timeout=DEADLINE)
        assert dead.value.state == "dead" and "never works" in (dead.value.traceback or "")
        assert started.wait(DEADLINE)
        assert endless.cancel()
        with pytest.raises(JobFailedError) as cancelled:
            endless.wait(timeout=DEADLINE)
    assert cancelled.value.state == "cancelled"
    status = service.status(added.job_id)
    assert status is not None and status.state == "done" and status.result == 5
