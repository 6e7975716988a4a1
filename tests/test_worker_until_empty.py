"""The worker's run until empty with retries about to come due, and its grace period: what
it waits for, and what it says."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.cli import main
from glasswork.jobs import JobService, define_job
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError
from glasswork.jobs.worker import Worker

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[SQLiteQueueDriver]:
    d = SQLiteQueueDriver(tmp_path / "jobs.db", visibility_timeout=5)
    yield d
    d.close()


def flaky(backoff: float, runs: list[int]) -> Any:
    """A job that fails its first attempt and retries after ``backoff`` seconds."""

    def handler(payload: Any, ctx: Any) -> None:
        runs.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")

    return define_job(
        name="flaky",
        handler=handler,
        retry={"max_attempts": 3, "backoff": backoff, "jitter": False},
    )


@pytest.mark.slow
def test_a_run_until_empty_waits_for_a_retry_due_within_its_window(
    driver: SQLiteQueueDriver,
) -> None:
    runs: list[int] = []
    job = flaky(0.1, runs)
    JobService(driver).enqueue(job, None)
    worker = Worker(module=define_module(name="t", jobs=[job]), driver=driver)
    summary = worker.run_until_empty(retries_within=30)
    assert runs == [1, 2]
    assert (summary.retried, summary.done, summary.pending_retries) == (1, 1, 0)
    assert driver.pending_count() == 0


def test_a_retry_due_later_is_left_pending_and_the_summary_says_so(
    driver: SQLiteQueueDriver, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []
    job = flaky(60, runs)
    JobService(driver).enqueue(job, None)
    worker = Worker(module=define_module(name="t", jobs=[job]), driver=driver)
    with caplog.at_level(logging.INFO, logger="glasswork.worker"):
        summary = worker.run_until_empty(retries_within=1)
    assert runs == [1]
    assert summary.pending_retries == 1
    assert "1 retry pending, not due yet" in str(summary)
    assert "1 retry pending, not due yet" in caplog.text  # the "worker stopped" line
    assert driver.stats()["default"].delayed == 1


@pytest.mark.slow
def test_the_cli_until_empty_runs_retries_due_within_the_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fail` (tests/fixtures_app) fails every attempt, 0.05 s apart, 3 attempts: run until
    empty, it ends in the dead letter, not with a retry still due."""
    monkeypatch.setenv("GLASSWORK_TEST_RUNS", str(tmp_path / "runs.db"))
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    app = "fixtures_app.app:AppModule"
    assert main(["enqueue", "fail", '{"key": "f"}', "--app", app, "--driver", url]) == 0
    assert main(["worker", app, "--until-empty", "--driver", url]) == 0
    capsys.readouterr()
    assert main(["stats", "--json", "--driver", url]) == 0
    assert '"delayed": 0' in capsys.readouterr().out
    assert main(["dlq", "list", "--driver", url]) == 0
    assert "RuntimeError: failure number 3" in capsys.readouterr().out


def test_retries_within_must_be_seconds(driver: SQLiteQueueDriver) -> None:
    worker = Worker(module=define_module(name="t", jobs=[]), driver=driver)
    with pytest.raises(ConfigurationError, match="retries_within must be 0 or more"):
        worker.run_until_empty(retries_within=-1)


# -- the grace period --------------------------------------------------------------------


def test_a_negative_grace_period_is_refused(driver: SQLiteQueueDriver) -> None:
    with pytest.raises(ConfigurationError, match="grace_period must be 0 or more seconds"):
        Worker(module=define_module(name="t", jobs=[]), driver=driver, grace_period=-1)


def test_a_fractional_grace_period_is_logged_as_it_is(
    driver: SQLiteQueueDriver, caplog: pytest.LogCaptureFixture
) -> None:
    started, release = threading.Event(), threading.Event()

    def handler(payload: Any) -> None:
        started.set()
        release.wait(10)

    job = define_job(name="slow", handler=handler)
    JobService(driver).enqueue(job, None)
    worker = Worker(module=define_module(name="t", jobs=[job]), driver=driver, grace_period=0.5)
    with caplog.at_level(logging.INFO, logger="glasswork.worker"):
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        assert started.wait(10)
        worker.stop()
        deadline = time.monotonic() + 10
        while "waiting up to" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        thread.join(10)
    assert "stopping: waiting up to 0.5s for 1 in-flight job(s)" in caplog.text
