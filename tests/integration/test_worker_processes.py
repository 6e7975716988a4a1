"""`glasswork worker` as real processes on one SQLite file: crashes, signals, sharing.

Jobs of ``tests/fixtures_app/app.py`` record each run (key, pid, attempt, start, finish) in a
second SQLite file, which is how these tests see what ran where, and when.
"""

from __future__ import annotations

import contextlib
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

from glasswork.jobs import EnqueueError, JobMessage, JobService
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import JobFailedError

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from fixtures_app.app import fail, record  # noqa: E402
from fixtures_app.hazards import block, explode, explode_async, hang  # noqa: E402

pytestmark = pytest.mark.subprocess

SCRIPT = Path(sys.executable).with_name("glasswork")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "glasswork.cli"]
APP = "fixtures_app.app:AppModule"
HAZARDS = "fixtures_app.hazards:HazardModule"


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

    def start_worker(
        self, *args: str, name: str = "worker", app: str | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            # APP read now, not as a default: other test modules patch it.
            [*COMMAND, "worker", app or APP, "--driver", self.url, *args],
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
    assert "end record" in log and ": done, ran " in log
    assert "worker stopped: 20 jobs" in log
    assert setup.driver().pending_count() == 0


def sigkill_mid_job(setup: Setup) -> subprocess.Popen[bytes]:
    """Two workers share 12 jobs; the first is SIGKILLed mid-job. Checks that the survivor
    finishes every job exactly once, re-running the killed worker's jobs (attempt 2) only
    after its lease ran out; returns the survivor. Shared by every durable driver's tests."""
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
    return second


def test_sigkill_mid_job_a_second_worker_finishes_every_job_once(setup: Setup) -> None:
    sigkill_mid_job(setup)


def test_job_longer_than_its_lease_runs_once_while_its_worker_lives(setup: Setup) -> None:
    workers = [setup.start_worker(name=f"w{i}") for i in range(2)]
    setup.jobs().enqueue(record, {"key": "long", "sleep": 2.0})  # twice the 1 s lease
    [run] = wait_until(lambda: setup.finished().get("long"), what="the long job")
    # Acked: no delivery can follow. Had the other worker taken the lease, the first
    # worker's ack (an older receipt) would not remove the job: it would stay pending until
    # that second run finished, and show in the runs.
    wait_until(lambda: setup.driver().pending_count() == 0, what="the long job to be acked")
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


# -- jobs that misbehave: hang, raise BaseExceptions, block the event loop -------------------


def counts(driver: SQLiteQueueDriver) -> tuple[int, int, int]:
    """(delayed, in flight, ready) of the default queue."""
    stats = driver.stats().get("default")
    return (stats.delayed, stats.in_flight, stats.ready) if stats else (0, 0, 0)


def stop_within(worker: subprocess.Popen[bytes], seconds: float) -> float:
    """SIGTERM ``worker``; assert it exits 0 within ``seconds``; returns how long it took."""
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(seconds + 10) == 0
    took = time.monotonic() - started
    assert took < seconds, f"the worker took {took:.1f}s to exit"
    return took


def test_sync_job_past_its_timeout_frees_its_slot_and_its_lease(setup: Setup) -> None:
    # One slot: the job behind the hung one runs only if the timeout frees the slot.
    worker = setup.start_worker("--concurrency", "1", app=HAZARDS)
    jobs = setup.jobs()
    jobs.enqueue(hang, {"key": "hung"})
    wait_until(lambda: setup.runs(), what="the hung job to start")
    jobs.enqueue(record, {"key": "after"})
    wait_until(lambda: setup.finished().get("after"), timeout=10, what="the job behind it")
    # The hung job settled as a retry (its backoff is a minute), so no longer leased by the
    # worker; "after" acked (its handler records "finished" before the worker acks it).
    driver = setup.driver()
    wait_until(lambda: counts(driver)[1:] == (0, 0), what="both jobs to be settled")
    assert counts(driver) == (1, 0, 0)  # (delayed, in flight, ready)
    log = setup.log()
    assert "abandoning thread" in log and "ran past its 0.5s timeout" in log
    assert "end hang" in log and "retry, ran 5" in log  # ran ~500 ms, then a retry
    assert "JobTimeoutError" in log
    # The abandoned thread still sleeps in the handler: it must not hold up the exit.
    stop_within(worker, 5)
    assert "exiting with 1 abandoned handler thread(s) still running" in setup.log()


def test_worker_default_job_timeout_applies_to_jobs_without_their_own(setup: Setup) -> None:
    setup.start_worker("--job-timeout", "0.5s", "--concurrency", "1")
    jobs = setup.jobs()
    jobs.enqueue(record, {"key": "slow", "sleep": 30})
    wait_until(lambda: setup.runs(), what="the slow job to start")
    jobs.enqueue(record, {"key": "next"})
    wait_until(lambda: setup.finished().get("next"), timeout=10, what="the job behind it")
    assert "did not finish within its 0.5s timeout" in setup.log()


@pytest.mark.parametrize(
    "kind", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "CancelledError"]
)
def test_base_exceptions_from_jobs_fail_only_that_job(setup: Setup, kind: str) -> None:
    worker = setup.start_worker("--concurrency", "1", app=HAZARDS)
    jobs = setup.jobs()
    jobs.enqueue(explode, {"key": "sync", "kind": kind})
    jobs.enqueue(explode_async, {"key": "async", "kind": kind})
    jobs.enqueue(record, {"key": "survivor"})
    driver = setup.driver()
    dead = wait_until(lambda: len(driver.dead_letters()) == 2 and driver.dead_letters())
    for d in dead:  # retried once, then dead-lettered, like any failure
        assert d.reason.startswith(f"failed 2 of 2 attempts: {kind}")
    assert setup.finished().get("survivor")  # the one slot was not leaked
    assert worker.poll() is None  # nor did the worker exit
    stop_within(worker, 5)


def test_sigterm_exits_within_the_grace_period_while_an_async_job_blocks_the_loop(
    setup: Setup,
) -> None:
    worker = setup.start_worker("--grace", "1", app=HAZARDS)
    setup.jobs().enqueue(block, {"key": "blocker", "sleep": 60})
    wait_until(lambda: setup.runs(), what="the blocking job to start")
    stop_within(worker, 4)
    stats = setup.driver().stats()["default"]
    assert (stats.ready, stats.in_flight) == (1, 0)  # released at once, not held to its lease
    assert "released 1 job(s) to run again: still running at shutdown" in setup.log()


SCRIPT = """
import logging, sys
sys.path.insert(0, {tests!r})
from fixtures_app.app import AppModule
from glasswork.jobs import SQLiteQueueDriver, Worker

logging.basicConfig(level=logging.INFO)
worker = Worker(module=AppModule, driver=SQLiteQueueDriver({db!r}), grace_period=1)
print("summary:", worker.run(), flush=True)
"""


def test_a_script_calling_worker_run_exits_after_the_grace_period_with_a_hung_handler(
    setup: Setup,
) -> None:
    script = setup.dir / "run_worker.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), db=str(setup.db)))
    setup.jobs().enqueue(record, {"key": "hung", "sleep": 60})
    log = (setup.dir / "script.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "GLASSWORK_TEST_RUNS": str(setup.runs_db)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    setup.procs.append(proc)
    wait_until(lambda: setup.runs(), what="the job to start")
    stop_within(proc, 5)
    assert "summary: 0 jobs" in setup.log("script") and "released=1" in setup.log("script")


def test_a_job_released_at_shutdown_does_not_use_up_an_attempt(setup: Setup) -> None:
    setup.jobs().enqueue(record, {"key": "long", "sleep": 60})
    for turn in range(1, 3):  # two clean shutdowns mid-job
        worker = setup.start_worker("--grace", "0.2", name=f"w{turn}")
        wait_until(lambda turn=turn: len(setup.runs()) == turn, what=f"run {turn} to start")
        stop_within(worker, 5)
    assert [r["attempt"] for r in setup.runs()] == [1, 1]
    driver = setup.driver()
    assert driver.dead_letters() == []
    [received] = driver.receive()
    assert received.attempt == 1  # still its first attempt


# -- bad data contained: corrupt rows, a full disk --------------------------------------------


def test_corrupt_rows_are_dead_lettered_and_healthy_jobs_run(setup: Setup) -> None:
    jobs = setup.jobs()
    jobs.enqueue_many(record, [{"key": f"healthy-{i}"} for i in range(3)])
    raw = sqlite3.connect(setup.db, timeout=30, isolation_level=None)
    insert = "INSERT INTO glasswork_jobs (queue, body, visible_at, enqueued_at) VALUES "
    raw.execute(insert + "('default', CAST(X'7B22FF2200' AS TEXT), 0, 0)")  # not UTF-8
    raw.execute(insert + "('default', X'FFFE', 0, 0)")  # a blob, not text
    raw.execute(insert + "('odd', '{}', 'soon', 0)")  # visible_at is not a number
    raw.execute(insert + "(CAST(X'FF' AS TEXT), '{}', 0, 0)")  # the queue name is not UTF-8
    raw.execute("UPDATE glasswork_jobs SET attempts = 'many' WHERE id = 1")  # still runs
    raw.close()

    setup.start_worker()
    wait_until(lambda: len(setup.finished()) == 3, what="the healthy jobs")
    driver = setup.driver()
    dead = wait_until(lambda: len(driver.dead_letters()) == 4 and driver.dead_letters())
    reasons = sorted(d.reason for d in dead)
    assert all(r.startswith("the row is corrupt: ") for r in reasons)
    assert sum(r.startswith("the row is corrupt: its body is not UTF-8 text") for r in reasons) == 2
    assert any("its visible_at is not a number" in r for r in reasons)
    assert any("its queue name b'\\xff' is not usable" in r for r in reasons)
    assert {d.body for d in dead} >= {'{"\\xff"\x00', "\\xff\\xfe"}  # kept, bad bytes escaped
    assert [r["attempt"] for r in setup.runs()] == [1, 1, 1]
    wait_until(lambda: driver.pending_count() == 0, what="nothing left behind")


def fill(disk: Path) -> None:
    with (disk / "filler").open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)


def test_on_a_full_disk_enqueue_fails_typed_and_the_worker_runs_the_stored_jobs(
    disk: Callable[[str], Path], tmp_path: Path
) -> None:
    small_disk = disk("3m")
    db = small_disk / "jobs.db"
    setup = Setup(tmp_path, db, tmp_path / "runs.db", f"sqlite:///{db}")
    driver = setup.driver()
    jobs = JobService(driver)
    # A queue in use: earlier jobs came and went (free pages in the file), these are stored.
    jobs.enqueue_many(record, [{"key": "old", "pad": "x" * 900}] * 600)
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DELETE FROM glasswork_jobs")
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    for i in range(40):
        jobs.enqueue(record, {"key": f"stored-{i}", "pad": "x" * 900})
    fill(small_disk)

    stored = 40
    refused: EnqueueError | None = None
    while refused is None:  # what room the database had left is used up, then refused
        try:
            jobs.enqueue(record, {"key": f"stored-{stored}", "pad": "x" * 900})
            stored += 1
        except EnqueueError as exc:
            refused = exc
    assert str(refused).startswith("could not store job 'record'")
    assert f"in {db}: database or disk is full" in str(refused)
    cli = subprocess.run(
        [*COMMAND, "enqueue", "record", '{"key": "cli"}', "--app", APP, "--driver", setup.url],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 1
    assert cli.stderr.startswith("glasswork enqueue: error: could not store job 'record'")
    assert cli.stderr.count("\n") == 1  # one line, no traceback

    worker = setup.start_worker()
    wait_until(lambda: len(setup.finished()) == stored, timeout=20, what="every stored job")
    stop_within(worker, 5)
    assert setup.driver().pending_count() == 0


def test_a_disk_filled_by_enqueues_a_worker_runs_every_stored_job(
    disk: Callable[[str], Path], tmp_path: Path
) -> None:
    """The disk fills with jobs alone: the WAL holds what was not checkpointed, and a claim
    or an ack (writes) can neither grow it nor checkpoint it. The driver's disk reserve is
    what lets the worker go on: every stored job runs once and is acked, the failing ones
    are retried and dead-lettered, and nothing is lost or half-written."""
    small_disk = disk("2m")
    db = small_disk / "jobs.db"
    other = small_disk / "other-data"  # something else on the disk, deleted at the end
    other.write_bytes(os.urandom(256 * 1024))
    setup = Setup(tmp_path, db, tmp_path / "runs.db", f"sqlite:///{db}")
    driver = setup.driver()
    assert (small_disk / "jobs.db-reserve").stat().st_size == 128 * 1024  # a 16th of 2 MiB
    jobs = JobService(driver)
    stored: list[str] = []
    failing: list[str] = []  # job ids of jobs that fail every attempt
    refused: EnqueueError | None = None
    for i in itertools.count():  # small and large jobs, until the disk is full
        pad = "x" * (20_000 if i % 3 == 0 else 2_000)
        try:
            if i % 10 == 9:
                failing.append(jobs.enqueue(fail, {"key": f"fail-{i}", "pad": pad}).job_id)
            else:
                jobs.enqueue(record, {"key": f"job-{i}", "pad": pad})
                stored.append(f"job-{i}")
        except EnqueueError as exc:
            refused = exc
            break
    assert str(refused).endswith(": database or disk is full; nothing was stored")
    assert len(stored) > 20 and failing
    # Nothing half-written: the refused job is not in the file, the stored ones all are.
    assert driver.pending_count() == len(stored) + len(failing)
    refused_id = str(refused).split("(id ")[1].split(")")[0]
    assert driver.find_job(refused_id) == []

    worker = setup.start_worker()
    wait_until(
        lambda: driver.pending_count() == 0, timeout=60, what="every stored job to be settled"
    )
    finished = setup.finished()
    assert sorted(k for k in finished if k.startswith("job-")) == sorted(stored)
    assert all(len(finished[k]) == 1 for k in stored)  # each ran once, and was acked
    dead = wait_until(lambda: driver.dead_letters(limit=1000))
    assert sorted(d.job_id for d in dead) == sorted(failing)  # retried, then dead-lettered
    assert all(d.reason.startswith("failed 3 of 3 attempts") for d in dead)
    assert "released its 128 KiB reserve" in setup.log()

    # Acks freed room in the file: a job enqueued now is stored and runs.
    jobs.enqueue(record, {"key": "after"})
    wait_until(lambda: setup.finished().get("after"), what="the job enqueued after")
    # Space freed on the disk: the next driver made puts the reserve back.
    other.unlink()
    setup.driver()
    assert (small_disk / "jobs.db-reserve").stat().st_size == 128 * 1024
    stop_within(worker, 5)


# -- a job's status across a killed worker ---------------------------------------------------


def test_a_worker_killed_mid_job_never_leaves_its_status_done(setup: Setup) -> None:
    """SIGKILL while the job runs: the status says running (then, once the lease is out and
    another worker has it, running again), never done, until a run finishes and is acked."""
    released = setup.dir / "release"
    handle = setup.jobs().enqueue(record, {"key": "k", "sleep": 30.0, "until": str(released)})
    driver = setup.driver()
    first = setup.start_worker(name="first")
    wait_until(lambda: setup.runs(), what="the job to start")
    status = driver.job_status(handle.job_id)
    assert status is not None and status.state == "running"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    status = driver.job_status(handle.job_id)
    assert status is not None and status.state != "done"
    assert "k" not in setup.finished()
    setup.start_worker(name="second")
    wait_until(lambda: len(setup.runs()) == 2, what="the second worker to run it")
    status = driver.job_status(handle.job_id)
    assert status is not None and (status.state, status.attempts) == ("running", 2)
    released.touch()
    assert handle.wait(timeout=20) is None
    done = driver.job_status(handle.job_id)
    assert done is not None and (done.state, done.attempts) == ("done", 2)
    assert len(setup.finished()["k"]) == 1


def test_a_running_job_cancelled_then_its_worker_killed_never_runs_again(setup: Setup) -> None:
    """Cancel a running job, SIGKILL its worker before it notices: the next worker does not
    run it (its claim turns the row into a cancelled end), also after the restart."""
    released = setup.dir / "never"  # the first run lasts until its worker is killed
    handle = setup.jobs().enqueue(record, {"key": "c", "sleep": 30.0, "until": str(released)})
    driver = setup.driver()
    first = setup.start_worker(name="first")
    wait_until(lambda: setup.runs(), what="the job to start")
    assert handle.cancel()
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    setup.start_worker(name="second")
    with pytest.raises(JobFailedError) as ended:
        handle.wait(timeout=20)
    assert ended.value.state == "cancelled"
    setup.jobs().enqueue(record, {"key": "after"})  # the second worker is working
    wait_until(lambda: "after" in setup.finished(), what="the second worker to run a job")
    assert len(setup.runs()) == 2 and [r["key"] for r in setup.runs()] == ["c", "after"]
    status = driver.job_status(handle.job_id)
    assert status is not None and status.state == "cancelled"
