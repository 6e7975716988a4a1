"""`glasswork worker` as real processes on one SQLite file: crashes, signals, sharing.

Jobs of ``tests/fixtures_app/app.py`` record each run (key, pid, attempt, start, finish) in a
second SQLite file, which is how these tests see what ran where, and when.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from glasswork.jobs import JobMessage, JobService
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from fixtures_app.app import fail, record  # noqa: E402

SCRIPT = Path(sys.executable).with_name("glasswork")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "glasswork.cli"]
APP = "fixtures_app.app:AppModule"


@dataclass
class Setup:
    dir: Path
    db: Path
    runs_db: Path
    url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def driver(self) -> SQLiteQueueDriver:
        return SQLiteQueueDriver(self.db)

    def jobs(self) -> JobService:
        return JobService(self.driver())

    def start_worker(self, *args: str, name: str = "worker") -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [*COMMAND, "worker", APP, "--driver", self.url, *args],
            cwd=TESTS,
            env={**os.environ, "GLASSWORK_TEST_RUNS": str(self.runs_db)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        wait_until(lambda: "worker started" in self.log(name), what=f"{name} to start")
        return proc

    def log(self, name: str = "worker") -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def runs(self) -> list[dict[str, Any]]:
        if not self.runs_db.exists():
            return []
        conn = sqlite3.connect(self.runs_db, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY started")]
        except sqlite3.OperationalError:  # the first job has not created the table yet
            return []
        finally:
            conn.close()

    def finished(self) -> dict[str, list[dict[str, Any]]]:
        done: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for run in self.runs():
            if run["finished"] is not None:
                done[run["key"]].append(run)
        return done


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    db = tmp_path / "jobs.db"
    # A short lease so a killed worker's jobs come back within a second.
    s = Setup(tmp_path, db, tmp_path / "runs.db", f"sqlite:///{db}?visibility_timeout=1")
    yield s
    for proc in s.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_no_overlap(runs: list[dict[str, Any]], killed_at: dict[int, float]) -> None:
    """No job ran in two places at once: each run of a key starts after the previous run
    of that key finished (or after its worker was killed)."""
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_key[run["key"]].append(run)
    for key, key_runs in by_key.items():
        key_runs.sort(key=lambda r: r["started"])
        for before, after in itertools.pairwise(key_runs):
            ended = before["finished"] or killed_at[before["pid"]]
            assert after["started"] >= ended, f"{key} ran twice at once: {before} {after}"


def test_worker_process_runs_enqueued_jobs_and_logs_them(setup: Setup) -> None:
    worker = setup.start_worker("--concurrency", "4")
    setup.jobs().enqueue_many(record, [{"key": f"job-{i}"} for i in range(20)])
    wait_until(lambda: len(setup.finished()) == 20, what="20 jobs to finish")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert all(len(runs) == 1 for runs in setup.finished().values())
    log = setup.log()
    assert "start record" in log
    assert "end record" in log and ": done in " in log
    assert "worker stopped: 20 jobs" in log
    assert setup.driver().pending_count() == 0


def test_sigkill_mid_job_a_second_worker_finishes_every_job_once(setup: Setup) -> None:
    # Both workers run from the start, so the survivor could steal the victim's jobs early
    # if leases did not hold; it may only take them once the victim's lease runs out.
    first = setup.start_worker("--concurrency", "3", name="first")
    second = setup.start_worker("--concurrency", "3", name="second")
    setup.jobs().enqueue_many(record, [{"key": f"job-{i}", "sleep": 0.3} for i in range(12)])
    wait_until(
        lambda: any(r["pid"] == first.pid and r["finished"] is None for r in setup.runs()),
        what="the first worker to be running a job",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = {first.pid: time.time()}
    interrupted = [
        r["key"] for r in setup.runs() if r["pid"] == first.pid and r["finished"] is None
    ]
    assert interrupted, "the kill should land while a job runs"

    wait_until(lambda: len(setup.finished()) == 12, what="every job to finish")
    finished = setup.finished()
    assert all(len(runs) == 1 for runs in finished.values())  # none lost, none finished twice
    for key in interrupted:  # the survivor ran the killed worker's jobs again
        [rerun] = finished[key]
        assert (rerun["pid"], rerun["attempt"]) == (second.pid, 2)
    assert_no_overlap(setup.runs(), killed_at)
    wait_until(lambda: setup.driver().pending_count() == 0, what="the queue to empty")


def test_job_longer_than_its_lease_runs_once_while_its_worker_lives(setup: Setup) -> None:
    workers = [setup.start_worker(name=f"w{i}") for i in range(2)]
    setup.jobs().enqueue(record, {"key": "long", "sleep": 2.0})  # twice the 1 s lease
    [run] = wait_until(lambda: setup.finished().get("long"), what="the long job")
    time.sleep(0.3)  # a stolen lease would show as a second run by now
    assert [r["key"] for r in setup.runs()] == ["long"]
    assert run["attempt"] == 1
    for w in workers:
        w.send_signal(signal.SIGTERM)
        assert w.wait(15) == 0


def test_sigterm_lets_in_flight_jobs_finish(setup: Setup) -> None:
    worker = setup.start_worker("--concurrency", "2")
    setup.jobs().enqueue_many(record, [{"key": k, "sleep": 1.0} for k in ("a", "b")])
    wait_until(lambda: len(setup.runs()) == 2, what="both jobs to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert sorted(setup.finished()) == ["a", "b"]
    assert setup.driver().pending_count() == 0
    assert "SIGTERM: no new jobs; finishing 2 in flight" in setup.log()


def test_sigterm_releases_jobs_that_outlive_the_grace_period(setup: Setup) -> None:
    worker = setup.start_worker("--grace", "0.2")
    setup.jobs().enqueue(record, {"key": "long", "sleep": 30})
    wait_until(lambda: setup.runs(), what="the job to start")
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert time.monotonic() - started < 5  # did not wait for the 30 s job
    stats = setup.driver().stats()["default"]
    assert (stats.ready, stats.in_flight) == (1, 0)  # released at once, not after the lease
    assert "released 1 job(s) to run again" in setup.log()


def test_two_workers_on_one_file_split_the_work_without_double_runs(setup: Setup) -> None:
    workers = [setup.start_worker("--concurrency", "4", name=f"w{i}") for i in range(2)]
    setup.jobs().enqueue_many(record, [{"key": f"job-{i}", "sleep": 0.01} for i in range(200)])
    wait_until(lambda: len(setup.finished()) == 200, what="200 jobs to finish")
    runs = setup.runs()
    assert len(runs) == 200  # each job ran exactly once
    assert {r["pid"] for r in runs} == {w.pid for w in workers}
    for w in workers:
        w.send_signal(signal.SIGTERM)
        assert w.wait(15) == 0


def test_malformed_rows_and_unknown_jobs_are_dead_lettered_with_the_reason(
    setup: Setup,
) -> None:
    driver = setup.driver()
    driver.enqueue(JobMessage.create("no-such-job", {"x": 1}))
    raw = sqlite3.connect(setup.db, timeout=30, isolation_level=None)
    for body in ("{not json", '{"version": 1, "payload": {}}'):
        raw.execute(
            "INSERT INTO glasswork_jobs (queue, body, visible_at, enqueued_at) "
            "VALUES ('default', ?, 0, 0)",
            (body,),
        )
    raw.close()
    setup.start_worker()
    dead = wait_until(lambda: len(driver.dead_letters()) == 3 and driver.dead_letters())
    reasons = {d.body: d.reason for d in dead}
    assert reasons["{not json"].startswith("not a Glasswork job envelope: <body>: Invalid JSON")
    assert "jobName: Field required" in reasons['{"version": 1, "payload": {}}']
    unknown = next(d for d in dead if d.job_name == "no-such-job")
    assert unknown.reason.startswith("UnknownJobError: unknown job 'no-such-job'")
    wait_until(lambda: driver.pending_count() == 0, what="the dead-lettered rows to be acked")


def test_failing_job_retries_until_max_attempts_then_dead_letters(setup: Setup) -> None:
    setup.start_worker()
    driver = setup.driver()
    JobService(driver).enqueue(fail, {"key": "f"})
    [dead] = wait_until(lambda: driver.dead_letters(), what="the dead letter")
    assert dead.reason == "failed 3 of 3 attempts: RuntimeError: failure number 3"
    assert [r["attempt"] for r in setup.runs()] == [1, 2, 3]


def test_delayed_jobs_wait_and_unique_keys_hold_while_pending(setup: Setup) -> None:
    jobs = setup.jobs()
    enqueued = time.time()
    jobs.enqueue_in(record, {"key": "later", "unique": "u"}, 1.0)
    cli = subprocess.run(
        [*COMMAND, "enqueue", "record", '{"key": "again", "unique": "u"}', "--app", APP],
        cwd=TESTS,
        env={**os.environ, "GLASSWORK_DRIVER": setup.url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 1
    assert "with unique key 'u' is already pending" in cli.stderr
    setup.start_worker()
    [run] = wait_until(lambda: setup.finished().get("later"), what="the delayed job")
    assert run["started"] >= enqueued + 1.0
    # The key is free once the job is acked (just after its handler returns).
    wait_until(lambda: setup.driver().pending_count() == 0, what="the ack")
    jobs.enqueue(record, {"key": "again", "unique": "u"})
    wait_until(lambda: setup.finished().get("again"), what="the second unique job")


def test_periodic_worker_fires_scheduled_jobs(setup: Setup) -> None:
    worker = setup.start_worker("--periodic")
    wait_until(lambda: len(setup.finished().get("tick", [])) >= 2, what="two ticks")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert "fired periodic job tick" in setup.log()
