"""OutcomeLog: the metrics sink that counts outcomes per minute and flushes them to the driver."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.jobs import (
    EMFMetrics,
    JobService,
    MockQueueDriver,
    PermanentJobError,
    TransientJobError,
    define_job,
)
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.execution import Done, Executor
from glasswork.jobs.metrics import JobMetrics, metric_sinks
from glasswork.jobs.metrics.outcome_log import OutcomeLog
from glasswork.jobs.steps import worker_steps
from glasswork.jobs.worker import Worker


def _flaky(payload: dict[str, Any], ctx: Any) -> None:
    if payload.get("permanent"):
        raise PermanentJobError("no")
    if ctx.attempt <= payload.get("fail", 0):
        raise TransientJobError("again")


flaky = define_job(
    name="flaky", handler=_flaky, queue="work", retry={"max_attempts": 2, "backoff": 0.01}
)
dropped = define_job(
    name="dropped", handler=lambda p, ctx: (_ for _ in ()).throw(ValueError("x")), retry=False
)
App = define_module(name="outcomes", jobs=[flaky, dropped])


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[SQLiteQueueDriver]:
    d = SQLiteQueueDriver(tmp_path / "jobs.db", busy_timeout=0.05)
    yield d
    d.close()


def history(driver: SQLiteQueueDriver) -> dict[tuple[str, str, str], int]:
    since = datetime.now(UTC) - timedelta(minutes=5)
    totals: dict[tuple[str, str, str], int] = {}
    for c in driver.outcome_history(since):
        key = (c.queue, c.job_name, c.outcome)
        totals[key] = totals.get(key, 0) + c.count
    return totals


def test_workers_on_a_driver_that_stores_outcomes_get_the_log_as_a_metrics_sink(
    driver: SQLiteQueueDriver,
) -> None:
    mine = EMFMetrics()
    sinks = metric_sinks([mine], driver=driver)
    assert sinks[0] is mine and isinstance(sinks[1], OutcomeLog)
    assert sinks[1].store is driver
    assert metric_sinks(None, driver=MockQueueDriver()) == ()
    chain = worker_steps([], driver, metrics=sinks)
    assert [s.sinks for s in chain if isinstance(s, JobMetrics)] == [sinks]
    worker = Worker(module=App, driver=driver, install_signal_handlers=False)
    assert any(isinstance(s, OutcomeLog) for s in worker.metrics)
    driver.records_outcomes = False  # opted out: nothing added, nothing to pay per run
    assert metric_sinks(None, driver=driver) == ()
    chain = worker_steps([], driver, metrics=metric_sinks(None, driver=driver))
    assert not any(isinstance(s, JobMetrics) for s in chain)


@pytest.mark.slow
def test_a_worker_run_records_every_outcome_kind(driver: SQLiteQueueDriver) -> None:
    jobs = JobService(driver)
    jobs.enqueue(flaky, {})
    jobs.enqueue(flaky, {"fail": 1})  # retried once, then done
    jobs.enqueue(flaky, {"fail": 5})  # retried once, then dead (2 attempts)
    jobs.enqueue(flaky, {"permanent": True})
    jobs.enqueue(dropped, {})
    worker = Worker(module=App, driver=driver, install_signal_handlers=False)
    summary = worker.run_until_empty(include_delayed=True, timeout=30)
    assert any(isinstance(s, OutcomeLog) for s in worker.metrics)  # flushed as it stopped
    assert history(driver) == {
        ("work", "flaky", "done"): 2,
        ("work", "flaky", "retry"): 2,
        ("work", "flaky", "dead_letter"): 2,
        ("default", "dropped", "discarded"): 1,
    }
    assert sum(history(driver).values()) == summary.jobs


def test_counts_reach_the_driver_without_an_explicit_flush(driver: SQLiteQueueDriver) -> None:
    log = OutcomeLog(driver, flush_every=0.05)
    executor = Executor.for_module(App, steps=[JobMetrics([log])])
    outcome = asyncio.run(executor.execute(_body(), 1))
    assert isinstance(outcome, Done)
    deadline = time.monotonic() + 5
    while not history(driver) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert history(driver) == {("work", "flaky", "done"): 1}
    assert log.pending() == {}


def test_counts_survive_a_store_that_refuses_them_and_are_written_later(
    driver: SQLiteQueueDriver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = OutcomeLog(driver, flush_every=3600)
    executor = Executor.for_module(App, steps=[JobMetrics([log])])
    blocker = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: writes fail
    for _ in range(3):
        executor.execute_sync(_body(), 1)
    with caplog.at_level(logging.WARNING, "glasswork.jobs"):
        assert log.flush() == 0
        assert log.flush() == 0
    assert [r.message for r in caplog.records].count(
        "could not record outcome counts (kept for the next try)"
    ) == 1  # once per outage
    assert sum(log.pending().values()) == 3
    blocker.execute("COMMIT")
    blocker.close()
    assert log.flush() == 1
    assert history(driver) == {("work", "flaky", "done"): 3}
    assert log.pending() == {}


def test_the_flushing_thread_ends_when_idle_and_restarts(driver: SQLiteQueueDriver) -> None:
    log = OutcomeLog(driver, flush_every=0.02)
    executor = Executor.for_module(App, steps=[JobMetrics([log])])
    executor.execute_sync(_body(), 1)
    thread = log._thread
    assert thread is not None
    thread.join(5)
    assert not thread.is_alive() and log._thread is None
    executor.execute_sync(_body(), 1)
    assert log._thread is not None and log._thread is not thread
    log._thread.join(5)
    assert history(driver) == {("work", "flaky", "done"): 2}


def test_flush_every_must_be_positive(driver: SQLiteQueueDriver) -> None:
    with pytest.raises(ValueError, match="positive"):
        OutcomeLog(driver, flush_every=0)


def _body() -> str:
    from glasswork.jobs import JobMessage

    return JobMessage.create("flaky", {}, queue="work").encode()


@pytest.mark.subprocess
def test_counts_are_flushed_when_the_process_exits(tmp_path: Path) -> None:
    script = f"""
from glasswork import define_module
from glasswork.jobs import Executor, JobMessage, JobMetrics, define_job
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.metrics.outcome_log import OutcomeLog

job = define_job(name="flaky", handler=lambda p, ctx: None, queue="work")
log = OutcomeLog(SQLiteQueueDriver({str(tmp_path / "jobs.db")!r}), flush_every=3600)
executor = Executor.for_module(define_module(name="m", jobs=[job]), steps=[JobMetrics([log])])
for _ in range(4):
    executor.execute_sync(JobMessage.create("flaky", None, queue="work").encode(), 1)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    assert history(driver) == {("work", "flaky", "done"): 4}
    driver.close()
