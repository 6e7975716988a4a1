"""`glasswork worker` processes on the PostgreSQL driver: crashes, many workers, races,
rolled-back transactions and a server restart while they run.

The jobs of ``tests/fixtures_app/app.py`` record each run (key, pid, attempt, start, finish)
in a SQLite file, as in test_worker_processes.py, whose helpers these tests share.
"""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures_app.app import record
from glasswork.jobs import DuplicateJobError, JobMessage, JobService
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from pgproxy import proxy
from pgtest import connect, dsn, fresh_schema, restart, url

from .test_worker_processes import Setup, assert_no_overlap, sigkill_mid_job, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.subprocess]


class PgSetup(Setup):
    """The SQLite tests' setup with the queue in a PostgreSQL schema of its own, and one
    driver for the test's own looks at it."""

    queue: PostgresQueueDriver

    def driver(self) -> PostgresQueueDriver:  # type: ignore[override]
        return self.queue

    @property
    def schema(self) -> str:
        return self.queue.schema


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PgSetup]:
    with fresh_schema("gwp") as schema:
        # A short lease so a killed worker's jobs come back within a second.
        s = PgSetup(
            tmp_path,
            tmp_path / "unused.db",
            tmp_path / "runs.db",
            url(schema, visibility_timeout=1),
        )
        s.queue = PostgresQueueDriver(dsn(), schema=schema)  # tables before the workers start
        # WAL, so thousands of runs recorded by three processes do not queue on the file lock.
        with sqlite3.connect(s.runs_db) as runs:
            runs.execute("PRAGMA journal_mode = WAL")
        try:
            yield s
        finally:
            for proc in s.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            s.queue.close()


def stop(*workers: subprocess.Popen[bytes]) -> None:
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        assert w.wait(30) == 0


def test_sigkill_mid_job_a_second_worker_finishes_every_job_once(pg: PgSetup) -> None:
    stop(sigkill_mid_job(pg))


def test_three_workers_claim_2000_jobs_with_no_overlap(pg: PgSetup) -> None:
    workers = [pg.start_worker("--concurrency", "8", name=f"w{i}") for i in range(3)]
    pg.jobs().enqueue_many(record, [{"key": f"job-{i}"} for i in range(2000)])
    wait_until(lambda: len(pg.finished()) == 2000, timeout=120, what="2,000 jobs to finish")
    runs = pg.runs()
    assert len(runs) == 2000  # each job ran exactly once
    assert {r["pid"] for r in runs} == {w.pid for w in workers}  # all three took part
    stop(*workers)
    assert pg.driver().pending_count() == 0


def _enqueue_unique(schema: str, start: multiprocessing.Event, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    with PostgresQueueDriver(dsn(), schema=schema) as driver:
        jobs = JobService(driver)
        out.put("connected")
        start.wait(60)
        try:
            out.put(jobs.enqueue(record, {"key": "k", "unique": "same"}).job_id)
        except DuplicateJobError as exc:
            out.put(f"refused: {exc.existing_job_id}")


def test_a_unique_key_race_across_processes_admits_exactly_one(pg: PgSetup) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_enqueue_unique, args=(pg.schema, start, out)) for _ in range(6)]
    for p in procs:
        p.start()
    connected = [out.get(timeout=60) for _ in procs]  # every process is connected: they race
    assert connected == ["connected"] * len(procs)
    start.set()
    answers = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    accepted = [a for a in answers if not a.startswith("refused")]
    assert len(accepted) == 1
    assert sorted(answers) == sorted([accepted[0]] + [f"refused: {accepted[0]}"] * 5)
    assert pg.driver().pending_count() == 1


def test_a_rolled_back_transaction_leaves_no_job_for_a_running_worker(pg: PgSetup) -> None:
    worker = pg.start_worker()
    jobs = pg.jobs()
    with connect() as conn:
        jobs.enqueue(record, {"key": "rolled-back"}, connection=conn)
        conn.rollback()
        jobs.enqueue(record, {"key": "committed"}, connection=conn)
        conn.commit()
    wait_until(lambda: pg.finished().get("committed"), what="the committed job")
    wait_until(lambda: pg.driver().pending_count() == 0, what="its ack")
    assert [r["key"] for r in pg.runs()] == ["committed"]
    stop(worker)


def test_malformed_rows_and_unknown_jobs_are_dead_lettered(pg: PgSetup) -> None:
    driver = pg.driver()
    driver.enqueue(JobMessage.create("no-such-job", {"x": 1}))
    with connect(autocommit=True) as conn:
        for body in ("{not json", '{"version": 1, "payload": {}}'):
            conn.execute(
                f'INSERT INTO "{pg.schema}".glasswork_jobs (queue, body) VALUES (%s, %s)',
                ("default", body),
            )
    worker = pg.start_worker()
    dead = wait_until(lambda: len(driver.dead_letters()) == 3 and driver.dead_letters())
    reasons = {d.body: d.reason for d in dead}
    assert reasons["{not json"].startswith("not a Glasswork job envelope")
    assert "jobName: Field required" in reasons['{"version": 1, "payload": {}}']
    wait_until(lambda: driver.pending_count() == 0, what="the dead-lettered rows to be acked")
    stop(worker)


def test_periodic_workers_share_each_fire(pg: PgSetup) -> None:
    workers = [pg.start_worker("--periodic", name=f"p{i}") for i in range(2)]
    first = wait_until(lambda: pg.finished().get("tick"), what="the first tick")[0]["started"]
    time.sleep(3.0)
    stop(*workers)
    ticks = [r["started"] for r in pg.finished()["tick"]]
    window = max(ticks) - first
    # rate(1 second) fires once a second, whichever worker claims it; two workers each
    # firing would give about twice as many.
    assert 2 <= len(ticks) <= window + 2


def test_a_server_restart_loses_no_job_and_runs_none_twice_at_once(pg: PgSetup) -> None:
    # Leases long enough to outlast the restart: a job runs twice at once only if the server
    # is away for about two thirds of the visibility timeout.
    pg.url = url(pg.schema, visibility_timeout=10)
    workers = [pg.start_worker("--concurrency", "4", name=f"w{i}") for i in range(2)]
    jobs = pg.jobs()
    released = pg.dir / "release-long"  # the long job lasts until after the restart
    jobs.enqueue(record, {"key": "long", "sleep": 8.0, "until": str(released)})
    jobs.enqueue_many(record, [{"key": f"job-{i}", "sleep": 0.05} for i in range(400)])
    wait_until(lambda: len(pg.finished()) >= 40, what="the workers to be busy")
    assert "long" not in pg.finished()
    restart()
    restarted = time.time()
    with connect() as conn:  # the server is back
        conn.execute("SELECT 1")
    released.touch()
    jobs.enqueue_many(record, [{"key": f"after-{i}"} for i in range(50)])

    wait_until(lambda: len(pg.finished()) == 451, timeout=90, what="every job to finish")
    wait_until(lambda: pg.driver().pending_count() == 0, what="the last acks")
    runs = pg.runs()
    assert_no_overlap(runs, {})
    [long_run] = pg.finished()["long"]  # it ran across the restart, once
    assert long_run["attempt"] == 1 and long_run["finished"] > restarted
    logs = pg.log("w0") + pg.log("w1")
    assert "lost the PostgreSQL connection" in logs or "cannot listen for new jobs" in logs
    stop(*workers)


def test_a_worker_whose_connections_go_half_open_reconnects_and_runs_each_job_once(
    pg: PgSetup,
) -> None:
    # A failover that leaves the old connections open and silent (no RST, no FIN): the
    # worker's calls are bounded, so it takes new connections, acks what it finished before
    # the leases run out (nothing runs again on the other worker), and goes on working.
    with proxy() as through:
        pg.url = url(pg.schema, visibility_timeout=10)
        direct = pg.start_worker("--concurrency", "2", name="direct")
        pg.url = through.url(
            pg.schema, visibility_timeout=10, statement_timeout=1, reconnect_timeout=3
        )
        proxied = pg.start_worker("--concurrency", "2", name="proxied")
        jobs = pg.jobs()
        jobs.enqueue_many(record, [{"key": f"job-{i}", "sleep": 0.1} for i in range(120)])
        wait_until(lambda: len(pg.finished()) >= 20, what="the workers to be busy")
        assert through.blackhole() >= 2  # the proxied worker's pool and listener
        wait_until(lambda: len(pg.finished()) == 120, timeout=90, what="every job to finish")
        wait_until(lambda: pg.driver().pending_count() == 0, what="the last acks")
        stop(direct)
        # Only the proxied worker is left: it works on, through new connections.
        jobs.enqueue_many(record, [{"key": f"after-{i}"} for i in range(10)])
        wait_until(lambda: len(pg.finished()) == 130, timeout=60, what="the proxied worker")
        wait_until(lambda: pg.driver().pending_count() == 0, what="its acks")
        stop(proxied)
    finished = pg.finished()
    assert [key for key, runs in finished.items() if len(runs) > 1] == []
    assert_no_overlap(pg.runs(), {})
    assert "no answer from the PostgreSQL server" in pg.log("proxied")
