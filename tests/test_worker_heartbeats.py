"""Worker heartbeats on SQLite and PostgreSQL: a running worker's row (host, pid, queues,
concurrency, jobs in flight, started, last seen), written from a thread of its own; deleted
at a clean stop (SIGTERM of a real process included); a worker killed with SIGKILL shown as
gone after three missed beats and forgotten a day later; a store that fails does not stop
the jobs."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from glasswork import define_module
from glasswork.jobs import JobMessage, define_job
from glasswork.jobs.drivers.records import FORGET_AFTER, WorkerBeat
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.drivers.sqlite.workers import WorkerRows
from glasswork.jobs.worker import Worker
from pgtest import POSTGRESQL

TESTS = Path(__file__).resolve().parent
T = TypeVar("T")

release = threading.Event()
waiting = define_job(name="wait", handler=lambda payload, ctx: release.wait(30), queue="slow")
SlowModule = define_module(name="slow", jobs=[waiting])


@pytest.fixture(params=["sqlite", POSTGRESQL])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    from pgtest import fresh_schema
    from pgtest import url as schema_url

    with fresh_schema() as schema:
        yield schema_url(schema)


@pytest.fixture
def driver(url: str) -> Iterator[Any]:
    from glasswork.jobs.drivers.urls import driver_from_url

    opened = driver_from_url(url)
    yield opened
    opened.close()  # type: ignore[attr-defined]


def eventually(read: Callable[[], T], ok: Callable[[T], bool], seconds: float = 20.0) -> T:
    """``read()`` once ``ok`` holds of it, within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"still {value!r}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_running_worker_beats_with_its_jobs_in_flight_and_leaves_when_it_stops(
    driver: Any,
) -> None:
    release.clear()
    worker = Worker(
        module=SlowModule,
        driver=driver,
        concurrency=3,
        queues=["slow"],
        heartbeat_seconds=0.1,
        install_signal_handlers=False,
    )
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        for _ in range(2):
            driver.enqueue(JobMessage.create("wait", None, queue="slow"))
        store = driver.heartbeat_store()
        (beat,) = eventually(store.workers, lambda w: len(w) == 1 and w[0].in_flight == 2)
        assert (beat.host, beat.pid) == (socket.gethostname(), os.getpid())
        assert (beat.queues, beat.concurrency, beat.every) == (("slow",), 3, 0.1)
        assert not beat.gone and beat.silent_for < 5
        assert datetime.now(UTC) - beat.started_at < timedelta(minutes=1)
        release.set()
        eventually(store.workers, lambda w: w[0].in_flight == 0)
    finally:
        release.set()
        worker.stop()
        runner.join(30)
    assert driver.heartbeat_store().workers() == []  # a clean stop leaves no row


_WORKER = """
import sys
from fixtures_app.shop import ShopModule
from glasswork.jobs.drivers.urls import driver_from_url
from glasswork.jobs.worker import Worker

Worker(
    module=ShopModule, driver=driver_from_url(sys.argv[1]), queues=["emails"],
    concurrency=2, heartbeat_seconds=0.2,
).run()
"""


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def beat_of(driver: Any, pid: int) -> WorkerBeat | None:
    return next((w for w in driver.heartbeat_store().workers() if w.pid == pid), None)


@pytest.mark.subprocess
def test_a_worker_process_stopped_by_sigterm_removes_its_row(url: str, driver: Any) -> None:
    process = start_worker(url)
    try:
        beat = eventually(lambda: beat_of(driver, process.pid), lambda b: b is not None)
        assert beat is not None and beat.queues == ("emails",) and beat.concurrency == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()
    assert beat_of(driver, process.pid) is None


@pytest.mark.subprocess
def test_a_killed_worker_is_shown_as_gone_then_forgotten(url: str, driver: Any) -> None:
    process = start_worker(url)
    try:
        eventually(lambda: beat_of(driver, process.pid), lambda b: b is not None and not b.gone)
    finally:
        process.kill()  # SIGKILL: no shutdown path, the row stays
        process.wait()
    gone = eventually(lambda: beat_of(driver, process.pid), lambda b: b is not None and b.gone)
    assert gone is not None and gone.silent_for > 3 * gone.every
    store = driver.heartbeat_store()
    age(driver, gone.worker_id, FORGET_AFTER + 60)
    assert beat_of(driver, process.pid) is not None  # gone rows stay until the next beat
    store.record_worker(WorkerBeat("other", "h", 1, None, 1, 0, datetime.now(UTC)))
    assert [w.worker_id for w in store.workers()] == ["other"]


def age(driver: Any, worker_id: str, seconds: float) -> None:
    """Make a worker's last beat ``seconds`` older."""
    if isinstance(driver, SQLiteQueueDriver):
        with driver._transaction() as conn:
            conn.execute(
                "UPDATE glasswork_workers SET last_seen = last_seen - ? WHERE id = ?",
                (seconds, worker_id),
            )
        return
    import psycopg

    with psycopg.connect(driver.dsn) as conn:
        conn.execute(
            f'UPDATE "{driver.schema}".glasswork_workers '
            "SET last_seen = last_seen - %s * interval '1 second' WHERE id = %s",
            (seconds, worker_id),
        )


class _FailingRows(WorkerRows):
    """A heartbeat store whose writes fail (a locked file, a full disk)."""

    def record_worker(self, beat: WorkerBeat) -> None:
        raise OSError("disk I/O error")


class _FailingHeartbeats(SQLiteQueueDriver):
    """A driver whose heartbeat writes fail."""

    def heartbeat_store(self) -> WorkerRows:
        return _FailingRows(self.file)


def test_a_store_that_cannot_take_heartbeats_does_not_stop_the_jobs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    driver = _FailingHeartbeats(tmp_path / "jobs.db")
    ran: list[int] = []
    job = define_job(name="count", handler=lambda payload, ctx: ran.append(payload), queue="q")
    for n in range(5):
        driver.enqueue(JobMessage.create("count", n, queue="q"))
    worker = Worker(
        module=define_module(name="m", jobs=[job]),
        driver=driver,
        heartbeat_seconds=0.05,
        install_signal_handlers=False,
    )
    with caplog.at_level(logging.WARNING):
        summary = worker.run_until_empty(timeout=30)
    assert summary.done == 5 and sorted(ran) == list(range(5))
    warnings = [r for r in caplog.records if "heartbeat" in r.getMessage()]
    assert len(warnings) == 1 and "disk I/O error" in warnings[0].getMessage()
    driver.close()
