"""Fair tenants: ``define_job(fairness_key=...)``: the key computed at enqueue and carried
in the envelope; a queue's jobs claimed round-robin across keys on SQLite, PostgreSQL and
the mock (the contract suite's TestFairness checks the order itself on each); a worker
serving a tenant with a few jobs before most of another's backlog; two workers at once never
running one job twice; a queue without keys on today's claim; refusals that say why.
(SQS: tests/integration/test_sqs_fairness_moto.py.)"""

from __future__ import annotations

import enum
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.jobs import (
    ConfigurationError,
    EnqueueResult,
    InvalidJobPayloadError,
    JobMessage,
    JobService,
    MockQueueDriver,
    Worker,
    define_job,
)
from glasswork.jobs.decoding import BodyDecoder
from glasswork.jobs.drivers.contract import QueueDriver, capabilities_of
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from pgtest import connect, dsn, fresh_schema

ran: list[tuple[str | None, int]] = []


def _run(payload: dict[str, Any]) -> None:
    ran.append((payload.get("tenant"), payload["n"]))


tenant_job = define_job(name="tenant-job", handler=_run, fairness_key=lambda p: p.get("tenant"))
plain_job = define_job(name="plain-job", handler=_run)
Tenants = define_module(name="tenants", jobs=[tenant_job, plain_job])


# -- the definition and the message ----------------------------------------------------------


def test_a_fairness_key_that_is_not_a_function_is_refused_naming_the_job() -> None:
    with pytest.raises(ConfigurationError, match=r"job 'j': fairness_key must be a function"):
        define_job(name="j", handler=lambda: None, fairness_key="tenant")  # type: ignore[arg-type]


def test_the_key_is_computed_at_enqueue_and_travels_in_the_envelope() -> None:
    driver = MockQueueDriver()
    jobs = JobService(driver)
    jobs.enqueue(tenant_job, {"n": 1, "tenant": "acme"})
    jobs.enqueue(tenant_job, {"n": 2})
    keyed, plain = driver.jobs
    assert keyed.fairness_key == "acme" and '"fairnessKey":"acme"' in keyed.encode()
    assert plain.fairness_key is None and "fairnessKey" not in plain.encode()
    assert JobMessage.from_json(keyed.encode()).fairness_key == "acme"


def test_the_one_pass_decoder_reads_the_key_too() -> None:
    body = JobMessage.create("tenant-job", {"n": 1}, fairness_key="acme").encode()
    fields = BodyDecoder([tenant_job, plain_job]).decode(body)
    assert fields is not None and fields["fairness_key"] == "acme"


class Plan(enum.StrEnum):
    PRO = "pro"


@pytest.mark.parametrize(
    ("returned", "stored"),
    [
        ("t-1", "t-1"),
        (42, "42"),
        (uuid.UUID(int=7), "00000000-0000-0000-0000-000000000007"),
        (Plan.PRO, "pro"),
        ("x" * 128, "x" * 128),
    ],
)
def test_strings_integers_and_uuids_are_keys(returned: object, stored: str) -> None:
    job = define_job(name="k", handler=lambda: None, fairness_key=lambda p: returned)
    driver = MockQueueDriver()
    JobService(driver).enqueue(job, {})
    assert driver.jobs[0].fairness_key == stored


@pytest.mark.parametrize(
    ("returned", "why"),
    [
        (1.5, r"returned 1\.5 \(float\); it must return a string, an integer or a UUID"),
        (True, r"returned True \(bool\)"),
        ("", r"is empty \(return None for a payload of no tenant\)"),
        ("x" * 129, r"is 129 characters long, over the 128 allowed"),
        ("a\x00b", r"holds U\+0000 \(NUL\)"),
    ],
)
def test_an_unusable_key_fails_the_enqueue_naming_the_job_and_sends_nothing(
    returned: object, why: str, tmp_path: Path
) -> None:
    job = define_job(name="keyed", handler=lambda: None, fairness_key=lambda p: returned)
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    try:
        with pytest.raises(InvalidJobPayloadError, match=rf"job 'keyed'.*{why}") as caught:
            JobService(driver).enqueue(job, {})
        assert caught.value.job_name == "keyed"
        assert driver.pending_count() == 0
    finally:
        driver.close()


def test_a_key_function_that_raises_fails_the_enqueue_and_the_batch_stores_nothing() -> None:
    job = define_job(name="strict", handler=lambda: None, fairness_key=lambda p: p["tenant"])
    driver = MockQueueDriver()
    jobs = JobService(driver)
    with pytest.raises(InvalidJobPayloadError, match=r"job 'strict'.*raised KeyError") as caught:
        jobs.enqueue_many(job, [{"tenant": "a"}, {"nope": 1}])
    assert isinstance(caught.value.__cause__, KeyError)
    assert driver.jobs == []


class NoFairness(QueueDriver):
    """A driver that stores jobs but cannot claim them fairly."""

    name = "plain-only"

    def __init__(self) -> None:
        self.sent: list[JobMessage] = []

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        self.sent.append(message)
        return EnqueueResult("1", message.job_id, message.queue)

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self.enqueue(message)


def test_a_driver_without_fairness_refuses_a_fair_job_at_enqueue_naming_it() -> None:
    driver = NoFairness()
    assert capabilities_of(driver).fairness is None
    jobs = JobService(driver)
    with pytest.raises(
        ConfigurationError,
        match=r"job 'tenant-job' has a fairness_key, but the plain-only driver cannot claim",
    ):
        jobs.enqueue(tenant_job, {"n": 1, "tenant": "a"})
    with pytest.raises(ConfigurationError, match="tenant-job"):
        jobs.enqueue(tenant_job, {"n": 2})  # no key this time: still a fair job
    jobs.enqueue(plain_job, {"n": 3})
    assert [m.job_name for m in driver.sent] == ["plain-job"]


class UnfairMock(MockQueueDriver):
    """A consuming driver that does not claim fairly."""

    fairness = None


def test_a_worker_on_a_driver_without_fairness_refuses_to_start_naming_the_job() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"job 'tenant-job' has a fairness_key, but the mock driver of this worker cannot",
    ):
        Worker(module=Tenants, driver=UnfairMock(), install_signal_handlers=False)
    Worker(module=define_module(name="p", jobs=[plain_job]), driver=UnfairMock())


def test_every_built_in_driver_says_how_it_keeps_fairness(tmp_path: Path) -> None:
    from glasswork.jobs.drivers.sqs import SQSQueueDriver

    assert capabilities_of(MockQueueDriver()).fairness == "round-robin"
    sqlite = SQLiteQueueDriver(tmp_path / "jobs.db")
    try:
        assert capabilities_of(sqlite).fairness == "round-robin"
    finally:
        sqlite.close()
    assert PostgresQueueDriver.fairness == "round-robin"
    assert SQSQueueDriver.fairness == "message-group"


# -- claims on SQLite, PostgreSQL and the mock -----------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "mock"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def drivers(kind: str, tmp_path: Path) -> Iterator[Any]:
    """A function making drivers onto one store of ``kind``."""
    opened: list[Any] = []
    if kind == "mock":
        mock = MockQueueDriver()
        yield lambda: mock
        return
    if kind == "sqlite":
        path = tmp_path / "jobs.db"

        def make() -> Any:
            opened.append(SQLiteQueueDriver(path))
            return opened[-1]

        yield make
    else:
        with fresh_schema("gwfair") as schema:

            def make() -> Any:
                opened.append(PostgresQueueDriver(dsn(), schema=schema))
                return opened[-1]

            yield make
    for driver in opened:
        driver.close()


def enqueue_backlog(driver: Any, big: int, small: int) -> None:
    """Tenant A's ``big`` jobs first, then B's ``small``, as two enqueues."""
    jobs = JobService(driver)
    for start in range(0, big, 1000):
        payloads = [{"n": n, "tenant": "A"} for n in range(start, min(big, start + 1000))]
        jobs.enqueue_many(tenant_job, payloads)
    jobs.enqueue_many(tenant_job, [{"n": n, "tenant": "B"} for n in range(small)])


def test_a_worker_runs_a_small_tenants_jobs_before_most_of_a_big_backlog(drivers: Any) -> None:
    driver = drivers()
    enqueue_backlog(driver, 1000, 10)
    ran.clear()
    worker = Worker(module=Tenants, driver=driver, concurrency=1, install_signal_handlers=False)
    summary = worker.run_until_empty(timeout=120)
    assert summary.done == 1010
    b_last = max(i for i, (t, _) in enumerate(ran) if t == "B")
    # Turns alternate (a batch takes at most half of its jobs from A while B has any).
    assert b_last < 40
    assert [n for t, n in ran if t == "B"] == list(range(10))
    assert [n for t, n in ran if t == "A"] == list(range(1000))


paced_starts: list[float] = []
paced_job = define_job(
    name="paced-job", handler=lambda p: paced_starts.append(time.time()), rate_limit="4/s"
)
FairAndPaced = define_module(name="fair-and-paced", jobs=[tenant_job, paced_job])


def test_fair_turns_and_a_rate_limit_both_hold_in_one_worker(kind: str, drivers: Any) -> None:
    # A limited claim picks rows as the plain claim does: beside fair jobs the worker takes
    # limits through the driver's acquire instead, so neither promise gives way.
    driver = drivers()
    enqueue_backlog(driver, 300, 5)
    JobService(driver).enqueue_many(paced_job, [{"n": n} for n in range(10)])
    ran.clear()
    paced_starts.clear()
    worker = Worker(
        module=FairAndPaced, driver=driver, concurrency=1, install_signal_handlers=False
    )
    done = 0
    deadline = time.monotonic() + 120
    while done < 315 and time.monotonic() < deadline:
        # The mock cannot count delayed jobs: it runs until nothing is due, again.
        done += worker.run_until_empty(timeout=120, include_delayed=kind != "mock").done
    assert done == 315
    assert max(i for i, (t, _) in enumerate(ran) if t == "B") < 40
    assert len(paced_starts) == 10
    starts = sorted(paced_starts)
    # Handler-recorded times trail the driver's grants by a dispatch delay: a quarter window.
    assert all(b - a >= 0.75 for a, b in zip(starts, starts[4:], strict=False))


def test_the_mocks_drain_serves_tenants_in_turn_too() -> None:
    driver = MockQueueDriver()
    enqueue_backlog(driver, 200, 5)
    ran.clear()
    driver.drain(Tenants)
    assert max(i for i, (t, _) in enumerate(ran) if t == "B") < 10
    assert len(ran) == 205


def test_jobs_without_a_key_are_a_tenant_of_their_own(drivers: Any) -> None:
    driver = drivers()
    jobs = JobService(driver)
    jobs.enqueue_many(plain_job, [{"n": n} for n in range(5)])  # before any key
    enqueue_backlog(driver, 50, 2)
    jobs.enqueue_many(plain_job, [{"n": n} for n in range(5, 8)])  # after
    order = []
    while received := driver.receive(max_messages=1):
        order.append(JobMessage.from_json(received[0].body).fairness_key or "-")
        driver.ack(received[0])
    assert order[:6] == ["A", "B", "-", "A", "B", "-"]
    # Then A and the group without a key take turns: all 8 of it are done by the 18th.
    assert order.count("-") == 8 and max(i for i, t in enumerate(order) if t == "-") < 18


def test_a_queue_without_keys_keeps_the_plain_claim(kind: str, drivers: Any) -> None:
    driver = drivers()
    JobService(driver).enqueue_many(plain_job, [{"n": n} for n in range(5)])
    received = driver.receive(max_messages=5)
    assert len(received) == 5
    if kind != "mock":  # no round state was written: the fair claim never ran
        assert fair_queue_rows(kind, driver) == []


def fair_queue_rows(kind: str, driver: Any) -> list[tuple[Any, ...]]:
    if kind == "sqlite":
        return list(driver.file.conn().execute("SELECT * FROM glasswork_fair_queues"))
    with connect() as conn:
        return list(conn.execute(f'SELECT * FROM "{driver.schema}".glasswork_fair_queues'))


def test_each_queue_is_fair_on_its_own(drivers: Any) -> None:
    driver = drivers()
    message = JobService(driver).build_message
    other = define_job(name="o", queue="other", handler=_run, fairness_key=lambda p: p["tenant"])
    driver.enqueue_many(
        [message(tenant_job, {"n": n, "tenant": "A"}) for n in range(6)]
        + [message(other, {"n": n, "tenant": "A"}) for n in range(2)]
        + [message(tenant_job, {"n": 9, "tenant": "B"})]
    )
    got = [JobMessage.from_json(r.body) for r in driver.receive(["default"], 2)]
    assert {m.fairness_key for m in got} == {"A", "B"}
    assert len(driver.receive(["other"], 5)) == 2


def test_a_redriven_dead_letter_goes_back_to_its_tenant(kind: str, drivers: Any) -> None:
    if kind == "mock":
        pytest.skip("the mock keeps no dead letters to redrive")
    driver = drivers()
    jobs = JobService(driver)
    enqueue_backlog(driver, 20, 0)
    body = jobs.build_message(tenant_job, {"n": 0, "tenant": "B"}).encode()
    driver.dead_letter(body, "failed", queue="default")
    assert driver.redrive() == 1
    first = [JobMessage.from_json(driver.receive(max_messages=1)[0].body) for _ in range(2)]
    assert {m.fairness_key for m in first} == {"A", "B"}


# -- PostgreSQL: what its claim adds ---------------------------------------------------------


@pytest.mark.postgres
def test_a_worker_finds_a_queue_another_process_made_fair_within_its_refresh() -> None:
    with (
        fresh_schema("gwfair") as schema,
        PostgresQueueDriver(dsn(), schema=schema) as producer,
        PostgresQueueDriver(dsn(), schema=schema) as fresh,
        PostgresQueueDriver(dsn(), schema=schema) as looked,
    ):
        looked._fair.refresh = 0.3  # as fairness_refresh = 0.3 would make it
        assert looked.receive() == []  # it looked: no fair queue yet
        enqueue_backlog(producer, 500, 2)
        enqueued = time.monotonic()
        # A driver that never looked sees the fair queue on its first claim.
        first = [tenants(fresh.receive(max_messages=1)) for _ in range(2)]
        assert first == [["A"], ["B"]]
        # One that looked before claims the plain way until its next look, then B's
        # last job is served at once.
        while "B" not in tenants(looked.receive(max_messages=1)):
            assert time.monotonic() - enqueued < 0.3 + 5, "B never served"


def tenants(received: Sequence[Any]) -> list[str | None]:
    return [JobMessage.from_json(r.body).fairness_key for r in received]


@pytest.mark.postgres
def test_a_job_the_tag_missed_is_still_claimed() -> None:
    """A job without a key committed late (a long transaction) may miss its group: the fair
    queue's plain claim picks it up once the fair claim comes up short."""
    with fresh_schema("gwfair") as schema, PostgresQueueDriver(dsn(), schema=schema) as driver:
        enqueue_backlog(driver, 3, 0)
        late = JobService(driver).enqueue(plain_job, {"n": 99})
        first = driver.receive(max_messages=1)  # the fair claim tags the late job
        with connect(autocommit=True) as conn:  # as if it had committed after the tag
            conn.execute(
                f'UPDATE "{schema}".glasswork_jobs SET fairness_key = NULL WHERE job_id = %s',
                (late.job_id,),
            )
        rest = driver.receive(max_messages=10)
        ids = {JobMessage.from_json(r.body).job_id for r in [*first, *rest]}
        assert late.job_id in ids and len(ids) == 4


# -- two workers at once ---------------------------------------------------------------------


@pytest.mark.subprocess
def test_two_worker_processes_never_run_one_job_twice(kind: str, tmp_path: Path) -> None:
    if kind == "mock":
        pytest.skip("the mock lives in one process")
    from fixtures_app.fair import per_tenant
    from integration.test_worker_processes import COMMAND, TESTS, wait_until

    runs = tmp_path / "runs.db"
    with sqlite3.connect(runs) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    procs: list[subprocess.Popen[bytes]] = []

    def start(url: str, name: str) -> None:
        import os

        log = (tmp_path / f"{name}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    *COMMAND,
                    "worker",
                    "fixtures_app.fair:FairModule",
                    "--driver",
                    url,
                    "--concurrency",
                    "4",
                ],
                cwd=TESTS,
                env={**os.environ, "GLASSWORK_TEST_RUNS": str(runs)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    def count() -> int:
        try:
            with sqlite3.connect(runs, timeout=30) as conn:
                return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
        except sqlite3.OperationalError:
            return 0

    def run(url: str, driver: Any) -> list[str]:
        payloads = [{"key": f"{t}-{n}", "tenant": t} for t in "ABCDE" for n in range(60)]
        payloads += [{"key": f"none-{n}"} for n in range(30)]
        JobService(driver).enqueue_many(per_tenant, payloads)
        start(url, "w1")
        start(url, "w2")
        wait_until(lambda: count() >= len(payloads), timeout=60, what="every job to run")
        try:
            wait_until(lambda: driver.pending_count() == 0, timeout=30, what="every ack")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
        with sqlite3.connect(runs) as conn:
            return [r[0] for r in conn.execute("SELECT key FROM runs")]

    if kind == "sqlite":
        db = tmp_path / "jobs.db"
        driver = SQLiteQueueDriver(db)
        try:
            keys = run(f"sqlite:///{db}", driver)
        finally:
            driver.close()
    else:
        from pgtest import url as pg_url

        with fresh_schema("gwfairp") as schema, PostgresQueueDriver(dsn(), schema=schema) as d:
            keys = run(pg_url(schema), d)
    assert len(keys) == len(set(keys)) == 330


# -- upgrades from schema version 6 ----------------------------------------------------------


def test_a_version_6_sqlite_file_is_upgraded_and_claims_fairly(tmp_path: Path) -> None:
    from glasswork.jobs.drivers.sqlite import schema

    path = tmp_path / "v6.db"
    conn = sqlite3.connect(path)
    for step in schema.MIGRATIONS[:6]:
        if callable(step):
            step(conn)
        else:
            conn.executescript(step)
    now = datetime.now().timestamp()
    body = JobMessage.create("plain-job", {"n": 0}).encode()
    conn.execute(
        "INSERT INTO glasswork_jobs (queue, job_name, job_id, body, visible_at, enqueued_at) "
        "VALUES ('default', 'plain-job', 'old', ?, ?, ?)",
        (body, now, now),
    )
    conn.execute("PRAGMA user_version = 6")
    conn.commit()
    conn.close()
    driver = SQLiteQueueDriver(path)
    try:
        version = driver.file.conn().execute("PRAGMA user_version").fetchone()[0]
        assert version == schema.SCHEMA_VERSION
        enqueue_backlog(driver, 5, 1)
        order = [driver.receive(max_messages=1)[0] for _ in range(3)]
        assert {JobMessage.from_json(r.body).fairness_key for r in order} == {"A", "B", None}
    finally:
        driver.close()


@pytest.mark.postgres
def test_a_version_6_postgres_schema_is_upgraded_and_claims_fairly() -> None:
    from glasswork.jobs.drivers.postgres import SCHEMA_VERSION

    with fresh_schema("gwfair6") as schema:
        with PostgresQueueDriver(dsn(), schema=schema) as driver:
            JobService(driver).enqueue(plain_job, {"n": 0})
        with connect(autocommit=True) as conn:
            conn.execute(f'DROP TABLE "{schema}".glasswork_fair_queues')
            conn.execute(f'ALTER TABLE "{schema}".glasswork_jobs DROP COLUMN fairness_key')
            conn.execute(f'DELETE FROM "{schema}".glasswork_schema_versions WHERE version > 6')
        with PostgresQueueDriver(dsn(), schema=schema) as driver:
            enqueue_backlog(driver, 5, 1)
            order = [driver.receive(max_messages=1)[0] for _ in range(3)]
            assert {JobMessage.from_json(r.body).fairness_key for r in order} == {"A", "B", None}
        with connect() as conn:
            versions = conn.execute(f'SELECT version FROM "{schema}".glasswork_schema_versions')
            assert [r[0] for r in versions] == list(range(1, SCHEMA_VERSION + 1))
