"""The contract the long-running worker relies on, checked on every durable driver alike:
SQLite (one file) and PostgreSQL (the real server, a schema per test).

Leases and receipts, attempts per delivery, lost-lease dead-lettering, delays, queue
fairness, unique keys, batches, dead letters, stats and periodic claims; and what the
dashboard reads (glasswork.jobs.drivers.contract): outcome history and job lookup. What a job
may hold (unique keys, due times) is checked on every driver, SQS and the mock included,
through JobService: input one driver cannot store is refused alike on all of them."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from glasswork.jobs import (
    AsyncJobService,
    DuplicateJobError,
    InvalidJobPayloadError,
    JobMessage,
    JobService,
    MockQueueDriver,
    define_job,
)
from glasswork.jobs.drivers.contract import JobFinder, OutcomeStore
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.records import OutcomeCount
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError
from pgtest import POSTGRESQL, dsn, fresh_schema

Make = Callable[..., Any]
Stored = Callable[[], int]


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


@pytest.fixture(params=["sqlite", POSTGRESQL, "sqs", "mock"])
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


def test_receive_claims_oldest_first_and_counts_attempts(driver: Any) -> None:
    ids = [driver.enqueue(msg(payload=i)).message_id for i in range(3)]
    got = driver.receive(max_messages=2)
    assert [r.message_id for r in got] == ids[:2]
    assert all(r.attempt == 1 and r.queue == "default" for r in got)
    assert [JobMessage.from_json(r.body).payload for r in got] == [0, 1]
    # Claimed jobs are invisible until their lease ends.
    assert [r.message_id for r in driver.receive(max_messages=5)] == ids[2:]
    assert driver.receive() == []


def test_ack_removes_and_nack_redelivers_after_delay(driver: Any) -> None:
    driver.enqueue(msg(payload="a"))
    driver.enqueue(msg(payload="b"))
    first, second = driver.receive(max_messages=2)
    driver.ack(first)
    driver.nack(second, delay_seconds=0.3)
    assert driver.receive() == []
    assert driver.stats()["default"].delayed == 1
    [again] = driver.receive(wait_seconds=5)
    assert again.message_id == second.message_id
    assert again.attempt == 2
    driver.ack_many([again])
    assert driver.pending_count() == 0


def test_nack_many_releases_at_once(driver: Any) -> None:
    driver.enqueue_many([msg(payload=i) for i in range(3)])
    held = driver.receive(max_messages=3)
    driver.nack_many(held)
    assert sorted(r.attempt for r in driver.receive(max_messages=3)) == [2, 2, 2]


def test_release_many_hands_jobs_back_without_counting_an_attempt(make: Make) -> None:
    driver = make(visibility_timeout=5, max_lost_leases=1)
    driver.enqueue_many([msg(payload=i) for i in range(2)])
    held = driver.receive(max_messages=2)
    assert [r.attempt for r in held] == [1, 1]
    for _ in range(3):  # three clean shutdowns of a worker holding both
        driver.release_many(held)
        held = driver.receive(max_messages=2)  # due again at once, not after the lease
        assert [r.attempt for r in held] == [1, 1]
    # A release is not a lost lease either (max_lost_leases=1 would have buried them).
    assert driver.dead_letters() == []
    driver.nack(held[0])  # a failure is an attempt, as before
    [again] = driver.receive()
    assert again.attempt == 2
    driver.ack_many([again, held[1]])
    assert driver.pending_count() == 0


def test_a_stale_release_leaves_the_new_delivery_alone(make: Make) -> None:
    driver = make(visibility_timeout=0.2)
    driver.enqueue(msg())
    [first] = driver.receive()
    [second] = driver.receive(wait_seconds=5)  # the first lease ran out
    assert driver.extend_leases([second], 60) == 1  # the new holder keeps its own
    driver.release_many([first])
    assert driver.receive() == []  # still leased to the second holder
    assert driver.stats()["default"].in_flight == 1
    driver.ack(second)
    assert driver.pending_count() == 0


def test_expired_lease_is_delivered_again_and_the_stale_holder_cannot_settle_it(
    make: Make,
) -> None:
    driver = make(visibility_timeout=0.2)
    driver.enqueue(msg())
    [first] = driver.receive()
    assert driver.receive() == []
    [second] = driver.receive(wait_seconds=5)
    assert second.attempt == 2
    # The new holder keeps its lease (so a slow machine cannot let it run out too).
    assert driver.extend_leases([second], 60) == 1
    # The first holder's lease is gone: its late ack, release or extension must not touch
    # the new delivery.
    driver.ack(first)
    driver.nack(first)
    assert driver.extend_leases([first], 60) == 0
    assert driver.stats()["default"].in_flight == 1
    driver.ack(second)
    assert driver.stats() == {}


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


def test_extend_leases_keeps_a_long_job_hidden(make: Make) -> None:
    driver = make(visibility_timeout=0.3)
    driver.enqueue(msg())
    [held] = driver.receive()
    assert driver.extend_leases([held], 2) == 1
    time.sleep(0.4)
    assert driver.receive() == []
    driver.ack(held)
    assert driver.extend_leases([held], 2) == 0


def test_delays_of_any_length(driver: Any) -> None:
    far = driver.enqueue_in(msg(), 3 * 86400)
    soon = driver.enqueue_at(msg(), datetime.now(UTC) + timedelta(seconds=0.3))
    past = driver.enqueue_at(msg(), datetime.now(UTC) - timedelta(days=1))
    assert far.scheduled_at is not None
    assert far.scheduled_at > datetime.now(UTC) + timedelta(days=2)
    assert soon.scheduled_at is not None
    assert past.scheduled_at is None
    assert [r.message_id for r in driver.receive()] == [past.message_id]
    [got] = driver.receive(wait_seconds=5)
    assert got.message_id == soon.message_id
    assert driver.stats()["default"].delayed == 1


def test_receive_filters_queues_and_waits_its_time(driver: Any) -> None:
    driver.enqueue(msg(queue="emails"))
    driver.enqueue(msg(queue="reports"))
    assert [r.queue for r in driver.receive(["emails"], 10)] == ["emails"]
    assert [r.queue for r in driver.receive(None, 10)] == ["reports"]
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


def test_unique_key_is_refused_while_pending_and_free_after_ack(driver: Any) -> None:
    first = driver.enqueue(msg("welcome", unique_key="u1"))
    driver.enqueue(msg("other-job", unique_key="u1"))  # keys are per job name
    with pytest.raises(DuplicateJobError) as refused:
        driver.enqueue(msg("welcome", unique_key="u1"))
    assert refused.value.existing_job_id == first.job_id
    with pytest.raises(DuplicateJobError):  # delayed or not
        driver.enqueue_in(msg("welcome", unique_key="u1"), 60)
    [claimed] = driver.receive(["default"], 1)
    with pytest.raises(DuplicateJobError):  # still pending while in flight
        driver.enqueue(msg("welcome", unique_key="u1"))
    driver.ack(claimed)
    driver.enqueue(msg("welcome", unique_key="u1"))


def test_unique_key_race_between_threads_admits_exactly_one(driver: Any) -> None:
    accepted, refused = [], []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            accepted.append(driver.enqueue(msg("welcome", unique_key="same")))
        except DuplicateJobError:
            refused.append(1)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(accepted), len(refused)) == (1, 7)
    assert driver.pending_count() == 1


def test_enqueue_many_is_all_or_nothing(driver: Any) -> None:
    results = driver.enqueue_many([msg(payload=i) for i in range(100)])
    assert len({r.message_id for r in results}) == 100
    first_three = driver.receive(max_messages=3)
    assert [JobMessage.from_json(r.body).payload for r in first_three] == [0, 1, 2]
    driver.enqueue(msg("welcome", unique_key="taken"))
    batch = [msg("welcome", unique_key="new"), msg("welcome", unique_key="taken")]
    with pytest.raises(DuplicateJobError, match="taken"):
        driver.enqueue_many(batch)
    assert driver.pending_count() == 101
    with pytest.raises(DuplicateJobError, match="twice"):
        driver.enqueue_many([msg("welcome", unique_key="twice")] * 2)
    assert driver.pending_count() == 101
    delayed = driver.enqueue_many([msg(), msg()], delay_seconds=60)
    assert all(r.scheduled_at is not None for r in delayed)


def test_dead_letters_keep_body_reason_and_time_and_redrive(driver: Any) -> None:
    good = msg("welcome", {"user_id": "1"}, queue="emails", unique_key="1")
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert driver.dead_letter(good.encode(), "PermanentJobError: nope", queue="emails")
    assert driver.dead_letter("not json", "MalformedMessageError: bad", queue="emails")
    first, second = driver.dead_letters()
    assert (first.job_name, first.job_id, first.queue) == ("welcome", good.job_id, "emails")
    assert first.reason == "PermanentJobError: nope"
    assert first.failed_at is not None and first.failed_at >= before
    assert second.job_name is None
    assert driver.stats()["emails"].dead == 2
    assert driver.dead_letters(queue="other") == []
    assert len(driver.dead_letters(limit=1)) == 1

    driver.enqueue(msg("welcome", unique_key="1"))  # holds the key: redrive must skip it
    assert driver.redrive([first.id]) == 0
    [holder] = driver.receive(["default"], 1)
    driver.ack(holder)
    assert driver.redrive([first.id]) == 1
    [again] = driver.receive(["emails"], 5)
    assert again.body == good.encode()
    assert again.attempt == 1
    assert driver.redrive([]) == 0
    assert driver.redrive(queue="emails") == 1  # the malformed one, back on its queue
    assert [r.body for r in driver.receive(["emails"], 5)] == ["not json"]
    driver.dead_letter("x", "bad")
    driver.dead_letter("y", "bad")
    one, _ = driver.dead_letters()
    assert driver.purge_dead_letters([one.id]) == 1
    assert driver.purge_dead_letters() == 1
    assert driver.dead_letters() == []
    with pytest.raises(ConfigurationError, match="dead-letter ids are numbers"):
        driver.purge_dead_letters(["abc"])


def test_stats_per_queue(driver: Any) -> None:
    driver.enqueue(msg(queue="a"))
    driver.enqueue(msg(queue="a"))
    driver.enqueue_in(msg(queue="a"), 60)
    driver.enqueue(msg(queue="b"))
    driver.receive(["a"], 1)
    driver.dead_letter("x", "bad", queue="b")
    driver.dead_letter("y", "bad")
    stats = driver.stats()
    assert (stats["a"].ready, stats["a"].delayed, stats["a"].in_flight) == (1, 1, 1)
    assert (stats["b"].ready, stats["b"].dead, stats["b"].pending) == (1, 1, 1)
    assert stats["default"].dead == 1
    assert driver.pending_count() == 4
    assert driver.pending_count(["a"]) == 3


def test_claim_periodic_fires_once_per_time_across_drivers(driver: Any, make: Make) -> None:
    at = datetime(2026, 1, 1, 3, tzinfo=UTC)
    other = make()
    assert driver.claim_periodic("cleanup", at)
    assert not other.claim_periodic("cleanup", at)
    assert not driver.claim_periodic("cleanup", at)
    assert other.claim_periodic("other", at)
    assert other.claim_periodic("cleanup", at + timedelta(minutes=5))
    assert not driver.claim_periodic("cleanup", at)  # an older fire never wins


def _claim_all(kind: str, where: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    driver = open_driver(kind, where, visibility_timeout=60)
    claimed = []
    while batch := driver.receive(max_messages=7):
        claimed.extend(r.message_id for r in batch)
    driver.close()
    out.put(claimed)


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


# -- what the dashboard reads: outcome history and job lookup ---------------------------------


def minute(offset: int = 0) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now + timedelta(minutes=offset)


def test_driver_offers_both_inspection_capabilities(driver: Any) -> None:
    assert isinstance(driver, OutcomeStore)
    assert isinstance(driver, JobFinder)


def test_recorded_outcome_counts_of_one_key_add_up(driver: Any) -> None:
    driver.record_outcomes([OutcomeCount(minute(-1), "q", "a", "done", 2)])
    driver.record_outcomes(
        [
            OutcomeCount(minute(-1) + timedelta(seconds=42), "q", "a", "done", 3),
            OutcomeCount(minute(), "q", "a", "retry", 1),
            OutcomeCount(minute(), "q", "a", "retry", 4),  # the same key twice in one call
        ]
    )
    driver.record_outcomes([])
    assert driver.outcome_history(minute(-5)) == [
        OutcomeCount(minute(-1), "q", "a", "done", 5),
        OutcomeCount(minute(), "q", "a", "retry", 5),
    ]
    assert driver.outcome_history(minute() + timedelta(seconds=30)) == [
        OutcomeCount(minute(), "q", "a", "retry", 5)
    ]


def test_outcome_counts_past_the_retention_are_dropped(driver: Any) -> None:
    driver.outcome_retention = 3600
    driver.record_outcomes(
        [
            OutcomeCount(minute(-120), "q", "a", "done", 1),
            OutcomeCount(minute(-10), "q", "a", "done", 1),
        ]
    )
    assert [c.minute for c in driver.outcome_history(minute(-1000))] == [minute(-10)]


def test_find_job_tells_ready_delayed_in_flight_and_dead(make: Make) -> None:
    driver = make(visibility_timeout=30)
    ready = JobMessage.create("a", {"n": 1}, queue="q")
    delayed = JobMessage.create("b", None, queue="q")
    running = JobMessage.create("c", None, queue="r")
    driver.enqueue(ready)
    driver.enqueue_in(delayed, 3600)
    driver.enqueue(running)
    [claimed] = driver.receive(["r"])
    driver.dead_letter(ready.encode(), "boom", queue="q")  # a second copy, dead

    found = driver.find_job(ready.job_id)
    assert [(f.state, f.job_name, f.queue) for f in found] == [
        ("ready", "a", "q"),
        ("dead", "a", "q"),
    ]
    assert found[0].attempts == 0 and found[0].body == ready.encode()
    assert found[0].enqueued_at is not None and found[0].enqueued_at.tzinfo is UTC
    assert found[1].dead_letter == driver.dead_letters()[0]  # as dead_letters() lists it
    assert found[1].dead_letter.reason == "boom"
    [later] = driver.find_job(delayed.job_id)
    assert later.state == "delayed" and later.due_at is not None
    assert later.due_at > datetime.now(UTC) + timedelta(minutes=59)
    [held] = driver.find_job(running.job_id)
    assert (held.state, held.attempts) == ("in_flight", claimed.attempt)
    assert held.due_at is not None and held.due_at > datetime.now(UTC) + timedelta(seconds=20)
    assert driver.find_job("no-such-id") == []
    assert driver.find_job("x' OR '1'='1") == []


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
