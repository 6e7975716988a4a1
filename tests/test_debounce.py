"""Debounce and supersede (``enqueue(..., debounce=)``, issue 21) on the mock, SQLite (a
file) and PostgreSQL (the real server, a schema per test), through the services and real
workers: the last payload of a burst runs once, a window after the last enqueue; a
superseded job ends cancelled and never runs; racing threads and processes leave one job;
an enqueue while the job runs runs it again after the window, the running one's outcome no
longer counting; and what is refused, and how. SQS is tests/integration/test_sqs_debounce.py;
what every driver promises is the contract suite's TestDebounce."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    AsyncJobService,
    ConfigurationError,
    DuplicateJobError,
    JobMessage,
    JobService,
    MockQueueDriver,
    PermanentJobError,
    define_job,
)
from glasswork.jobs.debounce import superseded_reason, superseding_job
from glasswork.jobs.drivers.contract import QueueDriver
from glasswork.jobs.drivers.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.records import EnqueueResult
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.worker import Worker
from pgtest import POSTGRESQL, dsn, fresh_schema


class Edit(BaseModel):
    doc: str
    n: int


RUNS: list[tuple[str, int, float]] = []  # (doc, n, time.monotonic()) of every run
GATE: dict[str, Any] = {"started": threading.Event(), "release": threading.Event(), "fail": False}


def reindex(payload: Edit) -> int:
    RUNS.append((payload.doc, payload.n, time.monotonic()))
    if payload.n < 0:  # the slow run of the tests of an enqueue while it runs
        GATE["started"].set()
        GATE["release"].wait(30)
        if GATE["fail"] == "permanent":
            raise PermanentJobError("the superseded run fails for good")
        if GATE["fail"]:
            raise RuntimeError("the superseded run fails")
    return payload.n


reindex_job = define_job(
    name="reindex",
    schema=Edit,
    unique=lambda p: p.doc,
    retry={"max_attempts": 5, "backoff": 0.05, "jitter": False},
    handler=reindex,
)
plain_job = define_job(name="plain", schema=Edit, handler=reindex)
APP = define_module(name="debounce-app", jobs=[reindex_job, plain_job])


@pytest.fixture(autouse=True)
def _fresh_runs() -> Iterator[None]:
    RUNS.clear()
    GATE.update(started=threading.Event(), release=threading.Event(), fail=False)
    yield
    GATE["release"].set()


def open_driver(kind: str, where: str) -> Any:
    if kind == "sqlite":
        return SQLiteQueueDriver(where, visibility_timeout=5)
    return PostgresQueueDriver(dsn(), schema=where, visibility_timeout=5)


@pytest.fixture(params=["sqlite", POSTGRESQL])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path / "jobs.db")
    else:
        with fresh_schema("gwdeb") as schema:
            yield "postgresql", schema


@pytest.fixture
def sql(place: tuple[str, str]) -> Iterator[Any]:
    driver = open_driver(*place)
    yield driver
    driver.close()


@pytest.fixture(params=["mock", "sqlite", POSTGRESQL])
def any_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "mock":
        yield MockQueueDriver()
    elif request.param == "sqlite":
        driver = SQLiteQueueDriver(tmp_path / "jobs.db", visibility_timeout=5)
        yield driver
        driver.close()
    else:
        with fresh_schema("gwdeb") as schema:
            driver = PostgresQueueDriver(dsn(), schema=schema, visibility_timeout=5)
            yield driver
            driver.close()


def wait_until(check: Callable[[], Any], what: str, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s")
        time.sleep(0.02)
    return found


class Running:
    """A long-running worker on ``driver`` in a thread, stopped at the end."""

    def __init__(self, driver: Any) -> None:
        self.worker = Worker(module=APP, driver=driver, concurrency=4, job_timeout=None)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        GATE["release"].set()
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


# -- the service: what is refused, and how -----------------------------------------------------


def test_debounce_without_a_unique_key_is_refused_naming_the_job() -> None:
    driver = MockQueueDriver()
    with pytest.raises(ConfigurationError, match=r"job 'plain' cannot be debounced.*unique="):
        JobService(driver).enqueue(plain_job, Edit(doc="a", n=1), debounce="30s")
    with pytest.raises(ConfigurationError, match="'plain'"):
        asyncio.run(AsyncJobService(driver).enqueue(plain_job, Edit(doc="a", n=1), debounce=30))
    keyless = define_job(name="keyless", schema=Edit, unique=lambda p: None, handler=reindex)
    with pytest.raises(ConfigurationError, match=r"'keyless'.*returned None"):
        JobService(driver).enqueue(keyless, Edit(doc="a", n=1), debounce="30s")
    assert driver.jobs == []


def test_a_bad_window_is_refused_naming_the_job_and_the_option() -> None:
    service = JobService(MockQueueDriver())
    with pytest.raises(ValueError, match="job 'reindex': debounce: cannot read delay 'soon'"):
        service.enqueue(reindex_job, Edit(doc="a", n=1), debounce="soon")
    with pytest.raises(ValueError, match="debounce: a delay cannot be negative"):
        service.enqueue(reindex_job, Edit(doc="a", n=1), debounce=-1)
    with pytest.raises(TypeError, match="debounce: a delay must be"):
        service.enqueue(reindex_job, Edit(doc="a", n=1), debounce=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after the year 9999"):
        service.enqueue(reindex_job, Edit(doc="a", n=1), debounce=timedelta(days=4_000_000))


def test_enqueue_many_refuses_debounce_and_enqueue_raw_takes_it_alone() -> None:
    driver = MockQueueDriver()
    service = JobService(driver)
    with pytest.raises(ConfigurationError, match="enqueue_many does not debounce"):
        service.enqueue_many(reindex_job, [Edit(doc="a", n=1)], debounce="1s")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="enqueue_many does not debounce"):
        asyncio.run(
            AsyncJobService(driver).enqueue_many(reindex_job, [], debounce=1)  # type: ignore[arg-type]
        )
    with pytest.raises(TypeError, match="not delay and debounce"):
        service.enqueue_raw(reindex_job, {"doc": "a", "n": 1}, delay="1s", debounce="1s")
    first = service.enqueue_raw(reindex_job, {"doc": "a", "n": 1}, debounce="1s")
    second = service.enqueue_raw(reindex_job, {"doc": "a", "n": 2}, debounce="1s")
    assert [m.payload for m in driver.pending] == [{"doc": "a", "n": 2}]
    assert superseding_job(first.status()) == second.job_id


class _KeysOnly(QueueDriver):
    """A driver of someone else's: producing only, no Debounce group."""

    name = "keys-only"

    def __init__(self) -> None:
        self.sent: list[JobMessage] = []

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        self.sent.append(message)
        return EnqueueResult("1", message.job_id, message.queue)

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self.enqueue(message)


def test_a_driver_without_the_debounce_group_is_refused_clearly() -> None:
    driver = _KeysOnly()
    with pytest.raises(
        ConfigurationError, match=r"'reindex' cannot be debounced on the keys-only driver"
    ):
        JobService(driver).enqueue(reindex_job, Edit(doc="a", n=1), debounce="1s")
    with pytest.raises(ConfigurationError, match="no Debounce capability"):
        asyncio.run(AsyncJobService(driver).enqueue(reindex_job, Edit(doc="a", n=1), debounce=1))
    assert driver.sent == []


def test_a_superseding_enqueue_is_logged_at_debug_only(
    caplog: pytest.LogCaptureFixture, any_driver: Any
) -> None:
    service = JobService(any_driver)
    with caplog.at_level(logging.DEBUG, logger="glasswork.jobs"):
        first = service.enqueue(reindex_job, Edit(doc="d", n=1), debounce=60)
        second = service.enqueue(reindex_job, Edit(doc="d", n=2), debounce=60)
    lines = [r for r in caplog.records if "superseded by job" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.DEBUG]
    assert f"job {first.job_id} superseded by job {second.job_id}" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- the last payload wins, once, at the end of the window ---------------------------------------


def test_the_last_payload_wins_and_the_run_moves_to_the_end_of_its_window(
    any_driver: Any,
) -> None:
    service = JobService(any_driver)
    first = service.enqueue(reindex_job, Edit(doc="d", n=1), debounce="1s")
    time.sleep(0.4)
    second = service.enqueue(reindex_job, Edit(doc="d", n=2), debounce="1s")
    assert first.scheduled_at is not None
    assert second.scheduled_at is not None
    assert second.scheduled_at - first.scheduled_at >= timedelta(seconds=0.35)
    cancelled = first.status()
    assert cancelled is not None
    assert (cancelled.state, cancelled.error) == ("cancelled", superseded_reason(second.job_id))
    assert second.status().state == "scheduled"  # type: ignore[union-attr]
    with Running(any_driver):
        assert second.wait(timeout=20) == 2
        assert first.wait(timeout=20) == 2  # followed to the job that superseded it
    assert [(doc, n) for doc, n, _ in RUNS] == [("d", 2)]
    assert first.status().state == "cancelled"  # type: ignore[union-attr]
    due = second.scheduled_at.timestamp() - time.time() + time.monotonic()
    assert RUNS[0][2] >= due - 0.05, "it ran before the end of its window"


def test_a_burst_runs_the_job_once_with_the_last_payload(any_driver: Any) -> None:
    service = JobService(any_driver)
    handles = [service.enqueue(reindex_job, Edit(doc="d", n=n), debounce=0.5) for n in range(20)]
    other = service.enqueue(reindex_job, Edit(doc="other", n=100), debounce=0.5)
    with Running(any_driver):
        assert handles[-1].wait(timeout=20) == 19
        assert other.wait(timeout=20) == 100
        assert handles[0].wait(timeout=20) == 19
    assert sorted((doc, n) for doc, n, _ in RUNS) == [("d", 19), ("other", 100)]
    for earlier, later in zip(handles, handles[1:], strict=False):  # noqa: RUF007
        status = earlier.status()
        assert status is not None
        assert (status.state, superseding_job(status)) == ("cancelled", later.job_id)
    assert pending(any_driver) == 0


def test_a_burst_through_the_lambda_path_of_the_mock_runs_once() -> None:
    driver = MockQueueDriver()
    service = JobService(driver)
    handles = [service.enqueue(reindex_job, Edit(doc="d", n=n), debounce="1h") for n in range(5)]
    assert len(driver.pending) == 1
    driver.drain(APP)
    assert [(doc, n) for doc, n, _ in RUNS] == [("d", 4)]
    assert handles[0].wait(timeout=1) == 4
    assert driver.pending == []


def test_async_service_debounces_as_the_sync_one(any_driver: Any) -> None:
    async def burst() -> list[str]:
        async with AsyncJobService(any_driver) as jobs:
            handles = [
                await jobs.enqueue(reindex_job, Edit(doc="d", n=n), debounce=60) for n in range(3)
            ]
            raw = await jobs.enqueue_raw(reindex_job, {"doc": "d", "n": 9}, debounce=60)
            return [h.job_id for h in [*handles, raw]]

    ids = asyncio.run(burst())
    statuses = [any_driver.job_status(i) for i in ids]
    assert [s.state for s in statuses] == ["cancelled"] * 3 + ["scheduled"]
    assert [superseding_job(s) for s in statuses[:3]] == ids[1:]


def test_a_debounced_job_and_a_plain_one_of_one_key_refuse_each_other(any_driver: Any) -> None:
    service = JobService(any_driver)
    plain = service.enqueue(reindex_job, Edit(doc="p", n=1))
    with pytest.raises(DuplicateJobError) as refused:
        service.enqueue(reindex_job, Edit(doc="p", n=2), debounce="1s")
    assert refused.value.existing_job_id == plain.job_id
    assert "enqueued without debounce=" in refused.value.__notes__[0]
    assert plain.status().state == "pending"  # type: ignore[union-attr]
    service.enqueue(reindex_job, Edit(doc="q", n=1), debounce="1s")
    with pytest.raises(DuplicateJobError):
        service.enqueue(reindex_job, Edit(doc="q", n=2))


# -- an enqueue while the job runs ----------------------------------------------------------------


@pytest.mark.parametrize("fails", [False, "retry", "permanent"])
def test_an_enqueue_while_the_job_runs_runs_it_again_and_the_old_run_never_counts(
    any_driver: Any, fails: bool | str
) -> None:
    """The running job is not interrupted; what it returns (or a failure it would retry)
    no longer counts: it ends cancelled, never runs again, and the latest payload runs a
    window after its enqueue. A failure for good is dead-lettered as any: it ends dead."""
    GATE["fail"] = fails
    service = JobService(any_driver)
    with Running(any_driver):
        slow = service.enqueue(reindex_job, Edit(doc="d", n=-1), debounce=0)
        assert GATE["started"].wait(20)
        enqueued = time.monotonic()
        latest = service.enqueue(reindex_job, Edit(doc="d", n=7), debounce=0.5)
        GATE["release"].set()
        assert latest.wait(timeout=20) == 7
        wait_until(lambda: not pending(any_driver), "nothing left to run")
        wait_until(lambda: slow.status().state != "running", "the slow run's end")  # type: ignore[union-attr]
    assert [(doc, n) for doc, n, _ in RUNS] == [("d", -1), ("d", 7)]
    assert RUNS[1][2] >= enqueued + 0.45
    status = slow.status()
    assert status is not None
    if fails == "permanent":
        assert (status.state, status.error) == (
            "dead",
            "PermanentJobError: the superseded run fails for good",
        )
        assert dead_letters(any_driver) == [slow.job_id]
    else:
        assert (status.state, status.error) == (
            "cancelled",
            superseded_reason(latest.job_id, running=True),
        )
        assert slow.wait(timeout=5) == 7  # followed
        assert dead_letters(any_driver) == []


def dead_letters(driver: Any) -> list[str | None]:
    """The job ids of ``driver``'s dead letters."""
    if isinstance(driver, MockQueueDriver):
        return [d.message.job_id if d.message else None for d in driver.dead_letters]
    return [d.job_id for d in driver.dead_letters()]


def pending(driver: Any) -> int:
    if isinstance(driver, MockQueueDriver):
        return len(driver.pending)
    return int(driver.pending_count())


# -- racing enqueues ------------------------------------------------------------------------------


def test_threads_racing_debounced_enqueues_leave_exactly_one_run(any_driver: Any) -> None:
    service = JobService(any_driver)
    barrier = threading.Barrier(6)
    handles: list[Any] = []
    errors: list[BaseException] = []

    def burst(thread: int) -> None:
        barrier.wait()
        for n in range(5):
            try:
                handles.append(
                    service.enqueue(reindex_job, Edit(doc="d", n=thread * 10 + n), debounce=0.3)
                )
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=burst, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert pending(any_driver) == 1
    with Running(any_driver):
        # Nothing left at all (delayed jobs included) once the one job ran: no second run.
        wait_until(lambda: RUNS and not pending(any_driver), "the run")
    assert len(RUNS) == 1
    statuses = {h.job_id: h.status() for h in handles}
    winners = [i for i, s in statuses.items() if s is not None and s.state != "cancelled"]
    assert len(winners) == 1
    assert RUNS[0][1] == handles[[h.job_id for h in handles].index(winners[0])].wait(1)


def _enqueue_burst(kind: str, where: str, start: Any, out: Any, process: int) -> None:
    driver = open_driver(kind, where)
    service = JobService(driver)
    start.wait(60)
    ids = [
        service.enqueue(reindex_job, Edit(doc="d", n=process * 100 + n), debounce=60).job_id
        for n in range(10)
    ]
    driver.close()
    out.put(ids)


@pytest.mark.subprocess
@pytest.mark.slow
def test_processes_racing_debounced_enqueues_leave_exactly_one_job(
    place: tuple[str, str], sql: Any
) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_enqueue_burst, args=(*place, start, out, p)) for p in range(3)]
    for p in procs:
        p.start()
    start.set()
    ids = [i for _ in procs for i in out.get(timeout=120)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sql.pending_count() == 1
    assert sql.receive(wait_seconds=0) == []  # due in a minute
    statuses = {i: sql.job_status(i) for i in ids}
    live = [i for i, s in statuses.items() if s.state == "scheduled"]
    assert len(live) == 1
    cancelled = {i for i, s in statuses.items() if s.state == "cancelled"}
    assert cancelled == set(ids) - set(live)
    # Every superseded job names a job of the burst, and following them all ends at the one.
    for job_id in cancelled:
        seen = {job_id}
        while (later := superseding_job(statuses[job_id])) is not None and later not in seen:
            seen.add(job_id := later)
        assert job_id == live[0]


# -- PostgreSQL: inside the caller's transaction -----------------------------------------------


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[PostgresQueueDriver, str]]:
    with fresh_schema("gwdeb") as schema:
        driver = PostgresQueueDriver(dsn(), schema=schema, visibility_timeout=5)
        yield driver, schema
        driver.close()


@pytest.mark.postgres
def test_a_debounced_enqueue_commits_and_rolls_back_with_the_callers_transaction(
    pg: tuple[PostgresQueueDriver, str],
) -> None:
    driver, _ = pg
    service = JobService(driver)
    first = service.enqueue(reindex_job, Edit(doc="d", n=1), debounce=60)
    with psycopg.connect(dsn()) as conn:
        with conn.transaction(force_rollback=True):
            undone = service.enqueue(reindex_job, Edit(doc="d", n=2), debounce=60, connection=conn)
        assert first.status().state == "scheduled"  # type: ignore[union-attr]
        assert driver.job_status(undone.job_id) is None
        with conn.transaction():
            kept = service.enqueue(reindex_job, Edit(doc="d", n=3), debounce=60, connection=conn)
            # The caller's transaction stays usable after a refusal.
            service.enqueue(reindex_job, Edit(doc="p", n=1), connection=conn)
            with pytest.raises(DuplicateJobError):
                service.enqueue(reindex_job, Edit(doc="p", n=2), debounce=60, connection=conn)
            conn.execute("SELECT 1")
    assert superseding_job(first.status()) == kept.job_id
    assert kept.status().state == "scheduled"  # type: ignore[union-attr]
    assert driver.pending_count() == 2


@pytest.mark.postgres
def test_two_transactions_debouncing_one_key_take_turns_and_the_later_wins(
    pg: tuple[PostgresQueueDriver, str],
) -> None:
    driver, _ = pg
    service = JobService(driver)
    done: list[Any] = []
    with psycopg.connect(dsn()) as one, psycopg.connect(dsn(), autocommit=True) as two:
        with one.transaction():
            first = service.enqueue(reindex_job, Edit(doc="d", n=1), debounce=60, connection=one)
            racer = threading.Thread(
                target=lambda: done.append(
                    service.enqueue(reindex_job, Edit(doc="d", n=2), debounce=60, connection=two)
                )
            )
            racer.start()
            racer.join(0.5)
            assert done == [], "the second enqueue did not wait for the first transaction"
        racer.join(20)
    [second] = done
    assert superseding_job(driver.job_status(first.job_id)) == second.job_id
    assert driver.pending_count() == 1
    assert driver.receive(wait_seconds=0) == []  # not due for a minute


@pytest.mark.postgres
def test_a_version_6_schema_is_upgraded_and_then_debounces() -> None:
    from pgtest import connect

    with fresh_schema("gwdeb6") as schema:
        with PostgresQueueDriver(dsn(), schema=schema) as driver:
            waiting = JobService(driver).enqueue(reindex_job, Edit(doc="old", n=1))
        with connect(autocommit=True) as conn:
            conn.execute(f'DROP FUNCTION "{schema}".glasswork_debounce')
            conn.execute(f'DELETE FROM "{schema}".glasswork_schema_versions WHERE version > 6')
        needs = f"schema version 6, this glasswork needs {PG_SCHEMA_VERSION}"
        with pytest.raises(ConfigurationError, match=needs):
            PostgresQueueDriver(dsn(), schema=schema, migrate=False)
        with PostgresQueueDriver(dsn(), schema=schema) as driver:
            service = JobService(driver)
            first = service.enqueue(reindex_job, Edit(doc="d", n=1), debounce=60)
            second = service.enqueue(reindex_job, Edit(doc="d", n=2), debounce=60)
            assert superseding_job(first.status()) == second.job_id
            assert driver.job_status(waiting.job_id).state == "pending"  # kept
            assert driver.pending_count() == 2
