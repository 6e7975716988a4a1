"""Transactional enqueue: ``JobService(...).enqueue(..., connection=conn)`` writes in the
caller's transaction on the real server. A job exists if and only if that transaction
committed, and waiting workers hear of it at the commit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from psycopg.rows import class_row, dict_row, namedtuple_row
from pydantic import BaseModel

from glasswork.jobs import DuplicateJobError, JobMessage, JobService, define_job
from glasswork.jobs.drivers.postgres import BoundPostgresDriver, PostgresQueueDriver
from glasswork.jobs.errors import ConfigurationError
from pgtest import connect, dsn, fresh_schema

pytestmark = pytest.mark.postgres


class Signup(BaseModel):
    user_id: str


welcome = define_job(
    name="welcome",
    schema=Signup,
    unique=lambda p: p.user_id,
    handler=lambda payload, ctx: None,
)


@pytest.fixture
def driver() -> Iterator[PostgresQueueDriver]:
    with fresh_schema() as schema, PostgresQueueDriver(dsn(), schema=schema) as d:
        with connect(autocommit=True) as conn:
            conn.execute(f'CREATE TABLE "{schema}".users (id text PRIMARY KEY)')
        yield d


@pytest.fixture
def conn() -> Iterator[psycopg.Connection]:
    with connect() as c:  # not autocommit: the first statement opens a transaction
        yield c


def users_table(driver: PostgresQueueDriver) -> str:
    return f'"{driver.schema}".users'


def user_ids(driver: PostgresQueueDriver) -> list[str]:
    """The user ids of every ready job (claiming them)."""
    return sorted(
        JobMessage.from_json(r.body).payload["user_id"] for r in driver.receive(max_messages=100)
    )


def test_rolled_back_transaction_leaves_no_job(
    driver: PostgresQueueDriver, conn: psycopg.Connection
) -> None:
    jobs = JobService(driver)
    conn.execute(f"INSERT INTO {users_table(driver)} VALUES ('1')")
    jobs.enqueue(welcome, {"user_id": "1"}, connection=conn)
    jobs.enqueue_in(welcome, {"user_id": "2"}, "1h", connection=conn)
    jobs.enqueue_many(welcome, [{"user_id": "3"}, {"user_id": "4"}], connection=conn)
    conn.rollback()
    assert driver.pending_count() == 0
    # The keys the rolled-back jobs held are free again.
    jobs.enqueue(welcome, {"user_id": "1"})


def test_committed_transaction_makes_the_jobs_visible_only_at_commit(
    driver: PostgresQueueDriver, conn: psycopg.Connection
) -> None:
    jobs = JobService(driver)
    conn.execute(f"INSERT INTO {users_table(driver)} VALUES ('1')")
    result = jobs.enqueue(welcome, {"user_id": "1"}, connection=conn)
    jobs.enqueue_at(
        welcome, {"user_id": "2"}, datetime.now(UTC) + timedelta(hours=1), connection=conn
    )
    assert driver.pending_count() == 0  # not committed yet: no worker can see it
    assert driver.receive() == []
    conn.commit()
    [got] = driver.receive()
    assert got.message_id == result.message_id
    assert JobMessage.from_json(got.body).payload == {"user_id": "1"}
    assert driver.stats()["default"].delayed == 1


def test_the_commit_wakes_a_waiting_worker(
    driver: PostgresQueueDriver, conn: psycopg.Connection
) -> None:
    driver.poll_interval = 60
    JobService(driver).enqueue(welcome, {"user_id": "1"}, connection=conn)
    threading.Timer(0.3, conn.commit).start()
    [got] = driver.receive(wait_seconds=30)
    assert got.attempt == 1


def test_a_duplicate_leaves_the_callers_transaction_usable(
    driver: PostgresQueueDriver, conn: psycopg.Connection
) -> None:
    jobs = JobService(driver)
    jobs.enqueue(welcome, {"user_id": "taken"})
    conn.execute(f"INSERT INTO {users_table(driver)} VALUES ('1')")
    with pytest.raises(DuplicateJobError, match="taken"):
        jobs.enqueue(welcome, {"user_id": "taken"}, connection=conn)
    with pytest.raises(DuplicateJobError, match="taken"):  # none of the batch is kept
        jobs.enqueue_many(welcome, [{"user_id": "new"}, {"user_id": "taken"}], connection=conn)
    jobs.enqueue(welcome, {"user_id": "new"}, connection=conn)  # its key is free again
    conn.execute(f"INSERT INTO {users_table(driver)} VALUES ('2')")  # still usable
    conn.commit()
    assert user_ids(driver) == ["new", "taken"]
    with connect() as check:
        assert check.execute(f"SELECT count(*) FROM {users_table(driver)}").fetchone() == (2,)


@pytest.mark.parametrize(
    "row_factory",
    [dict_row, namedtuple_row, class_row(SimpleNamespace)],
    ids=["dict_row", "namedtuple_row", "class_row"],
)
def test_any_row_factory_of_the_callers_connection_works(
    driver: PostgresQueueDriver, row_factory: Any
) -> None:
    # The enqueue reads back what it inserted: with the caller's row factory it would raise
    # after the INSERT had run in the caller's transaction.
    jobs = JobService(driver)
    jobs.enqueue(welcome, {"user_id": "taken"})
    with connect(row_factory=row_factory) as conn:
        one = jobs.enqueue(welcome, {"user_id": "1"}, connection=conn)
        later = jobs.enqueue_in(welcome, {"user_id": "2"}, "1h", connection=conn)
        batch = jobs.enqueue_many(welcome, [{"user_id": "3"}, {"user_id": "4"}], connection=conn)
        with pytest.raises(DuplicateJobError, match="taken"):
            jobs.enqueue_many(welcome, [{"user_id": "5"}, {"user_id": "taken"}], connection=conn)
        conn.commit()
    assert one.message_id.isdigit() and one.scheduled_at is None
    assert later.scheduled_at is not None
    assert len({r.message_id for r in batch}) == 2
    assert user_ids(driver) == ["1", "3", "4", "taken"]
    assert driver.stats()["default"].delayed == 1


@pytest.mark.parametrize("first_ends_with", ["commit", "rollback"])
def test_a_unique_key_race_between_transactions_waits_for_the_first(
    driver: PostgresQueueDriver, first_ends_with: str
) -> None:
    """The second enqueue waits for the first transaction: refused if it commits, admitted
    if it rolls back."""
    jobs = JobService(driver)
    outcome: list[str] = []
    with connect() as first, connect() as second:
        jobs.enqueue(welcome, {"user_id": "u"}, connection=first)

        def enqueue_second() -> None:
            try:
                jobs.enqueue(welcome, {"user_id": "u"}, connection=second)
                outcome.append("admitted")
            except DuplicateJobError:
                outcome.append("refused")

        thread = threading.Thread(target=enqueue_second)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive()  # blocked on the first transaction's row
        getattr(first, first_ends_with)()
        thread.join(10)
        second.commit()
    assert outcome == ["refused" if first_ends_with == "commit" else "admitted"]
    assert user_ids(driver) == ["u"]


def test_an_autocommit_connection_commits_each_enqueue(driver: PostgresQueueDriver) -> None:
    jobs = JobService(driver)
    with connect(autocommit=True) as conn:
        jobs.enqueue(welcome, {"user_id": "1"}, connection=conn)
        jobs.enqueue(welcome, {"user_id": "2"})
        with pytest.raises(DuplicateJobError):
            jobs.enqueue_many(welcome, [{"user_id": "3"}, {"user_id": "2"}], connection=conn)
        assert driver.pending_count() == 2  # the batch left nothing behind
    assert user_ids(driver) == ["1", "2"]


def test_bind_needs_a_psycopg_connection(driver: PostgresQueueDriver) -> None:
    with pytest.raises(ConfigurationError, match="psycopg 3 Connection"):
        driver.bind(object())
    with pytest.raises(ConfigurationError, match="driver_connection"):
        JobService(driver).enqueue(welcome, {"user_id": "1"}, connection="dsn")
    with connect() as conn:
        bound = driver.bind(conn)
        assert isinstance(bound, BoundPostgresDriver)
        assert bound.enqueue_many([]) == []
        assert isinstance(bound.bind(conn), BoundPostgresDriver)
        assert "bind" in repr(bound)


def test_bind_refuses_an_async_connection(driver: PostgresQueueDriver) -> None:
    import asyncio

    async def attempt() -> None:
        async with await psycopg.AsyncConnection.connect(dsn()) as conn:
            with pytest.raises(ConfigurationError, match="not an AsyncConnection"):
                driver.bind(conn)

    asyncio.run(attempt())


def test_a_worker_runs_the_committed_job(driver: PostgresQueueDriver) -> None:
    """The documented pattern end to end: the app's row and its job in one transaction."""
    from glasswork import define_module
    from glasswork.jobs import Worker

    ran: list[str] = []
    job = define_job(
        name="welcome", schema=Signup, handler=lambda payload, ctx: ran.append(payload.user_id)
    )
    jobs = JobService(driver)
    with connect() as conn:
        with conn.transaction():
            conn.execute(f"INSERT INTO {users_table(driver)} VALUES ('kept')")
            jobs.enqueue(job, {"user_id": "kept"}, connection=conn)

        def failing_request() -> None:
            with conn.transaction():
                conn.execute(f"INSERT INTO {users_table(driver)} VALUES ('dropped')")
                jobs.enqueue(job, {"user_id": "dropped"}, connection=conn)
                raise RuntimeError("the request failed")

        with pytest.raises(RuntimeError):
            failing_request()
    Worker(module=define_module("app", jobs=[job]), driver=driver).run_until_empty(timeout=30)
    assert ran == ["kept"]
