"""What the SQLite and PostgreSQL drivers promise beyond the driver contract (the contract
itself is glasswork.jobs.testing.contract, run on every driver by test_testing_contract.py):
oldest first within a queue, fairness between queues, dead-lettering a job whose lease keeps
running out, releases that are not lost leases, numeric dead-letter ids, outcome retention,
and processes claiming one queue. Each runs on both: SQLite (one file) and PostgreSQL (the
real server, a schema per test)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.records import OutcomeCount
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError
from pgtest import POSTGRESQL, dsn, fresh_schema

Make = Callable[..., Any]


def open_driver(kind: str, where: str, **options: Any) -> Any:
    """A driver of ``kind`` on ``where`` (a SQLite path or a PostgreSQL schema)."""
    if kind == "sqlite":
        return SQLiteQueueDriver(where, **options)
    return PostgresQueueDriver(dsn(), schema=where, **options)


@pytest.fixture(params=["sqlite", POSTGRESQL])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield "sqlite", str(tmp_path / "jobs.db")
    else:
        with fresh_schema() as schema:
            yield "postgresql", schema


@pytest.fixture
def make(place: tuple[str, str]) -> Iterator[Make]:
    """``make(**options)``: a driver on this test's queue; all are closed at the end."""
    opened: list[Any] = []

    def factory(**options: Any) -> Any:
        opened.append(open_driver(*place, **options))
        return opened[-1]

    yield factory
    for d in opened:
        d.close()


@pytest.fixture
def driver(make: Make) -> Any:
    return make(visibility_timeout=5)


def msg(name: str = "ping", payload: object = None, **kw: object) -> JobMessage:
    return JobMessage.create(name, payload, **kw)  # type: ignore[arg-type]


def test_receive_claims_oldest_first_within_a_queue(driver: Any) -> None:
    ids = [r.message_id for r in driver.enqueue_many([msg(payload=i) for i in range(100)])]
    got = driver.receive(max_messages=2)
    assert [r.message_id for r in got] == ids[:2]
    assert [r.message_id for r in driver.receive(max_messages=5)] == ids[2:7]


def test_a_release_is_not_a_lost_lease(make: Make) -> None:
    driver = make(visibility_timeout=5, max_lost_leases=1)
    driver.enqueue_many([msg(payload=i) for i in range(2)])
    held = driver.receive(max_messages=2)
    for _ in range(3):  # three clean shutdowns of a worker holding both
        driver.release_many(held)
        held = driver.receive(max_messages=2)
    # max_lost_leases=1 would have buried them had a release counted.
    assert driver.dead_letters() == []
    assert [r.attempt for r in held] == [1, 1]


def test_job_whose_lease_keeps_running_out_is_dead_lettered(make: Make) -> None:
    driver = make(visibility_timeout=0.05, max_lost_leases=2)
    driver.enqueue(msg("crashy", queue="q"))
    for _ in range(2):
        assert driver.receive(wait_seconds=5)
        time.sleep(0.06)
    assert driver.receive() == []
    [dead] = driver.dead_letters()
    assert (dead.job_name, dead.queue) == ("crashy", "q")
    assert dead.reason.startswith("delivered 3 times; 2 times its lease (0.05s) ran out")
    assert "died or stalled" in dead.reason
    assert driver.pending_count() == 0


def test_an_empty_receive_waits_its_time(driver: Any) -> None:
    driver.enqueue(msg(queue="reports"))
    started = time.monotonic()
    assert driver.receive(["emails"], 10, wait_seconds=0.3) == []
    assert time.monotonic() - started >= 0.29


def test_receive_serves_every_queue_even_when_one_is_busy(driver: Any) -> None:
    driver.enqueue_many([msg(queue="busy") for _ in range(50)])
    driver.enqueue(msg(queue="quiet"))
    assert {r.queue for _ in range(2) for r in driver.receive(max_messages=5)} == {"busy", "quiet"}
    driver.enqueue(msg(queue="quiet"))
    listed = {r.queue for _ in range(2) for r in driver.receive(["busy", "quiet"], 5)}
    assert listed == {"busy", "quiet"}


def test_dead_letters_are_listed_oldest_first_with_numeric_ids(driver: Any) -> None:
    driver.dead_letter("x", "first")
    driver.dead_letter("y", "second")
    assert [d.reason for d in driver.dead_letters()] == ["first", "second"]
    assert all(d.id.isdigit() for d in driver.dead_letters())
    with pytest.raises(ConfigurationError, match="dead-letter ids are numbers"):
        driver.purge_dead_letters(["abc"])


def _claim_all(kind: str, where: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    driver = open_driver(kind, where, visibility_timeout=60)
    claimed = []
    while batch := driver.receive(max_messages=7):
        claimed.extend(r.message_id for r in batch)
    driver.close()
    out.put(claimed)


@pytest.mark.subprocess
def test_processes_claiming_one_queue_never_share_a_job(
    driver: Any, place: tuple[str, str]
) -> None:
    driver.enqueue_many([msg(payload=i) for i in range(2000)])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(*place, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    every = [m for part in claimed for m in part]
    assert len(every) == len(set(every)) == 2000


def minute(offset: int = 0) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now + timedelta(minutes=offset)


def test_outcome_counts_past_the_retention_are_dropped(driver: Any) -> None:
    driver.outcome_retention = 3600
    driver.record_outcomes(
        [
            OutcomeCount(minute(-120), "q", "a", "done", 1),
            OutcomeCount(minute(-10), "q", "a", "done", 1),
        ]
    )
    assert [c.minute for c in driver.outcome_history(minute(-1000))] == [minute(-10)]
