"""JobService: what it checks before anything is sent, and what it sends; input one driver
cannot store is refused alike on every driver (SQLite, PostgreSQL, SQS on moto, the mock)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from glasswork.jobs import (
    AsyncJobService,
    DuplicateJobError,
    EnqueueResult,
    InvalidJobPayloadError,
    JobService,
    MockQueueDriver,
    PayloadTooLargeError,
    define_job,
)
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from pgtest import POSTGRESQL, dsn, fresh_schema

Stored = Callable[[], int]


class Welcome(BaseModel):
    user_id: str


welcome = define_job(
    name="send-welcome-email",
    queue="emails",
    schema=Welcome,
    unique={"key": lambda p: p.user_id},
    handler=lambda payload, ctx: None,
)
ping = define_job(name="ping", handler=lambda payload, ctx: None)
blob = define_job(name="blob", schema=str, handler=lambda payload, ctx: None)


@pytest.fixture
def driver():
    return MockQueueDriver()


@pytest.fixture
def service(driver):
    return JobService(driver)


def test_enqueue_sends_validated_payload_and_returns_result(service, driver):
    result = service.enqueue(welcome, {"user_id": "123"})
    assert isinstance(result, EnqueueResult)
    assert result.queue == "emails"
    assert result.scheduled_at is None
    [message] = driver.jobs
    assert message.job_name == "send-welcome-email"
    assert message.payload == {"user_id": "123"}
    assert message.job_id == result.job_id
    assert message.unique_key == "123"
    assert driver.enqueued[0].message is message


def test_enqueue_accepts_a_model_instance(service, driver):
    service.enqueue(welcome, Welcome(user_id="9"))
    assert driver.jobs[0].payload == {"user_id": "9"}


def test_job_without_queue_uses_the_service_default(driver):
    JobService(driver, default_queue="background").enqueue(ping, {"ok": True})
    assert driver.jobs[0].queue == "background"
    assert driver.jobs[0].payload == {"ok": True}


def test_invalid_payload_is_refused_before_sending(service, driver):
    with pytest.raises(InvalidJobPayloadError) as caught:
        service.enqueue(welcome, {"userId": "123"})
    assert caught.value.errors[0]["loc"] == ("user_id",)
    assert driver.jobs == []


def test_oversize_payload_is_refused_before_sending(service, driver):
    with pytest.raises(PayloadTooLargeError, match="262,144-byte limit"):
        service.enqueue(blob, "x" * 262_144)
    assert driver.jobs == []


def test_duplicate_unique_key_is_refused_while_pending(service, driver):
    first = service.enqueue(welcome, {"user_id": "1"})
    with pytest.raises(DuplicateJobError) as caught:
        service.enqueue(welcome, {"user_id": "1"})
    assert caught.value.existing_job_id == first.job_id
    service.enqueue(welcome, {"user_id": "2"})  # another key is fine
    assert len(driver.jobs) == 2


@pytest.mark.parametrize(("delay", "seconds"), [("10m", 600), (90, 90), (timedelta(hours=2), 7200)])
def test_enqueue_in_passes_the_delay_in_seconds(service, driver, delay, seconds):
    before = datetime.now(UTC)
    result = service.enqueue_in(welcome, {"user_id": "1"}, delay)
    assert driver.enqueued[0].delay_seconds == seconds
    assert result.scheduled_at is not None
    assert (
        timedelta(seconds=seconds - 1)
        < result.scheduled_at - before
        < timedelta(seconds=seconds + 1)
    )


def test_enqueue_in_zero_is_immediate(service, driver):
    assert service.enqueue_in(ping, None, "0s").scheduled_at is None
    assert driver.enqueued[0].delay_seconds == 0


def test_enqueue_at_future_aware_datetime(service, driver):
    when = datetime.now(timezone(timedelta(hours=2))) + timedelta(hours=1)
    result = service.enqueue_at(welcome, {"user_id": "1"}, when)
    assert 3590 < driver.enqueued[0].delay_seconds <= 3600
    assert result.scheduled_at is not None


def test_enqueue_at_past_time_runs_now(service, driver):
    service.enqueue_at(ping, None, datetime.now(UTC) - timedelta(days=1))
    assert driver.enqueued[0].delay_seconds == 0


def test_enqueue_at_naive_datetime_is_an_error(service, driver):
    with pytest.raises(ValueError, match="aware datetime"):
        service.enqueue_at(ping, None, datetime.now() + timedelta(hours=1))
    with pytest.raises(TypeError):
        service.enqueue_at(ping, None, "2030-01-01T00:00:00Z")
    assert driver.jobs == []


def test_enqueue_many_validates_everything_first(service, driver):
    with pytest.raises(InvalidJobPayloadError):
        service.enqueue_many(welcome, [{"user_id": "1"}, {"nope": 1}])
    assert driver.jobs == []
    results = service.enqueue_many(welcome, [{"user_id": str(i)} for i in range(25)])
    assert len(results) == 25
    assert len({r.job_id for r in results}) == 25
    assert [m.payload["user_id"] for m in driver.jobs] == [str(i) for i in range(25)]
    assert service.enqueue_many(welcome, []) == []


def test_enqueue_many_with_duplicate_keys_sends_nothing(service, driver):
    with pytest.raises(DuplicateJobError):
        service.enqueue_many(welcome, [{"user_id": "1"}, {"user_id": "1"}])
    assert driver.jobs == []
    service.enqueue_many(welcome, [{"user_id": "1"}])  # the refused batch held no key


def test_enqueue_many_with_delay(service, driver):
    service.enqueue_many(ping, [1, 2], delay="5m")
    assert [e.delay_seconds for e in driver.enqueued] == [300, 300]


def test_service_refuses_things_that_are_not_jobs_or_drivers(service):
    with pytest.raises(TypeError, match="define_job"):
        service.enqueue(lambda p, c: None, {})
    with pytest.raises(TypeError, match="QueueDriver"):
        JobService(object())


def test_enqueue_many_holds_off_the_garbage_collector_while_it_builds(driver):
    # Thousands of new messages that all live on make the cyclic collector run over them
    # again and again; it waits until the batch is sent, and is left as it was found.
    import gc

    from pydantic import field_validator

    seen = []

    class Watched(BaseModel):
        n: int

        @field_validator("n")
        @classmethod
        def note(cls, value: int) -> int:
            seen.append(gc.isenabled())
            return value

    watched = define_job(name="watched", schema=Watched, handler=lambda payload, ctx: None)
    service = JobService(driver)
    service.enqueue_many(watched, [{"n": 1}, {"n": 2}, {"n": 3}])
    assert seen == [False, False, False] and gc.isenabled()
    with pytest.raises(InvalidJobPayloadError):
        service.enqueue_many(welcome, [{"user_id": "1"}, {"nope": 1}])
    assert gc.isenabled()  # after a failure too
    gc.disable()
    try:
        service.enqueue_many(watched, [{"n": 4}])
        assert not gc.isenabled()  # one the application turned off stays off
    finally:
        gc.enable()


@pytest.fixture(params=["sqlite", POSTGRESQL, pytest.param("sqs", marks=pytest.mark.aws), "mock"])
def any_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Stored]]:
    """Every driver, SQS (with a unique-key table) and the mock included, with a count of
    the jobs it holds: for what each must answer alike."""
    if request.param == "sqs":
        yield request.getfixturevalue("sqs_driver")
    elif request.param == "mock":
        mock = MockQueueDriver()
        yield mock, lambda: len(mock.pending)
    elif request.param == "sqlite":
        sqlite = SQLiteQueueDriver(tmp_path / "jobs.db")
        yield sqlite, sqlite.pending_count
        sqlite.close()
    else:
        with fresh_schema() as schema, PostgresQueueDriver(dsn(), schema=schema) as postgres:
            yield postgres, postgres.pending_count


@pytest.fixture
def sqs_driver(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Stored]:
    """An SQS driver on the moto server, keeping unique keys in DynamoDB."""
    boto3 = pytest.importorskip("boto3")
    from glasswork.jobs.drivers.sqs import SQSQueueDriver
    from glasswork.jobs.drivers.sqs.scheduler import create_scheduler_table
    from moto_support import reset_moto

    reset_moto(moto_endpoint)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_endpoint)
    queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    create_scheduler_table("jobs-table", region="us-east-1", endpoint_url=moto_endpoint)
    driver = SQSQueueDriver(
        queues={"default": queue},
        region="us-east-1",
        endpoint_url=moto_endpoint,
        scheduler_table="jobs-table",
        unique_table="jobs-table",
    )

    def stored() -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])
        counts = attributes["Attributes"]
        return sum(
            int(counts[name])
            for name in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed")
        )

    return driver, stored


# -- input every driver answers alike --------------------------------------------------------

keyed = define_job(name="keyed", handler=lambda payload, ctx: None, unique=lambda p: p["key"])


def on_async_service(driver: Any, call: Callable[[AsyncJobService], Awaitable[Any]]) -> Any:
    """``call`` on an AsyncJobService of ``driver``, which checks input as JobService does."""

    async def run() -> Any:
        async with AsyncJobService(driver) as jobs:
            return await call(jobs)

    return asyncio.run(run())


def test_a_unique_key_holding_nul_is_refused_on_every_driver_before_anything_is_stored(
    any_driver: tuple[Any, Stored],
) -> None:
    # PostgreSQL text cannot hold U+0000 (a raw psycopg.DataError there); the others took it.
    driver, stored = any_driver
    jobs = JobService(driver)
    with pytest.raises(InvalidJobPayloadError, match=r"unique key 'a\\x00b' holds U\+0000"):
        jobs.enqueue(keyed, {"key": "a\x00b"})
    with pytest.raises(InvalidJobPayloadError, match=r"U\+0000"):
        jobs.enqueue_many(keyed, [{"key": "fine"}, {"key": "\x00"}])
    with pytest.raises(InvalidJobPayloadError, match=r"U\+0000"):
        on_async_service(driver, lambda a: a.enqueue(keyed, {"key": "a\x00b"}))
    assert stored() == 0
    jobs.enqueue(keyed, {"key": "fine"})  # the batch took nothing, not even its key
    assert stored() == 1


def test_a_due_time_past_the_year_9999_is_refused_on_every_driver_before_anything_is_stored(
    any_driver: tuple[Any, Stored],
) -> None:
    # SQLite refused it; PostgreSQL stored it, then failed to read the time back (or
    # overflowed); the mock overflowed after taking the key; SQS overflowed.
    driver, stored = any_driver
    jobs = JobService(driver)
    for delay in (1e12, 1e300, float("inf"), timedelta(days=3_000_000)):
        with pytest.raises(ValueError, match=r"after the year 9999.*nothing was stored"):
            jobs.enqueue_in(keyed, {"key": "late"}, delay)
        with pytest.raises(ValueError, match=r"after the year 9999.*nothing was stored"):
            jobs.enqueue_many(keyed, [{"key": "late"}], delay=delay)
    with pytest.raises(ValueError, match=r"after the year 9999.*nothing was stored"):
        on_async_service(driver, lambda a: a.enqueue_in(keyed, {"key": "late"}, 1e12))
    with pytest.raises(ValueError, match=r"after the year 9999.*nothing was stored"):
        on_async_service(driver, lambda a: a.enqueue_many(keyed, [{"key": "late"}], delay=1e12))
    west = timezone(timedelta(hours=-12))  # datetime.max there is past 9999 in UTC
    with pytest.raises(ValueError, match="nothing was stored"):
        jobs.enqueue_at(keyed, {"key": "late"}, datetime.max.replace(tzinfo=west))
    assert stored() == 0
    jobs.enqueue(keyed, {"key": "late"})  # nothing held the key
    with pytest.raises(DuplicateJobError):
        jobs.enqueue(keyed, {"key": "late"})
    assert stored() == 1
