"""SQLiteQueueDriver: durable queue semantics on one file, across threads and processes."""

from __future__ import annotations

import gc
import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from glasswork.jobs import DuplicateJobError, JobMessage
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def driver(db: Path) -> Iterator[SQLiteQueueDriver]:
    d = SQLiteQueueDriver(db, visibility_timeout=5)
    yield d
    d.close()


def msg(name: str = "ping", payload: object = None, **kw: object) -> JobMessage:
    return JobMessage.create(name, payload, **kw)  # type: ignore[arg-type]


def test_file_uses_wal_and_survives_reopening(db: Path) -> None:
    first = SQLiteQueueDriver(db)
    first.enqueue(msg(payload={"n": 1}))
    first.close()
    second = SQLiteQueueDriver(db)
    [got] = second.receive()
    assert JobMessage.from_json(got.body).payload == {"n": 1}
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_threads_connection_closes_when_the_thread_ends(driver: SQLiteQueueDriver) -> None:
    threads = [threading.Thread(target=driver.enqueue, args=(msg(),)) for _ in range(20)]
    for t in threads:
        t.start()
        t.join()
    gc.collect()
    assert len(driver._connections) == 1  # only this thread's
    assert driver.pending_count() == 20


def test_memory_database_is_refused_with_a_reason() -> None:
    with pytest.raises(ConfigurationError, match="needs a file"):
        SQLiteQueueDriver(":memory:")


def test_receive_claims_oldest_first_and_counts_attempts(driver: SQLiteQueueDriver) -> None:
    ids = [driver.enqueue(msg(payload=i)).message_id for i in range(3)]
    got = driver.receive(max_messages=2)
    assert [r.message_id for r in got] == ids[:2]
    assert all(r.attempt == 1 and r.queue == "default" for r in got)
    # Claimed jobs are invisible until their lease ends.
    assert [r.message_id for r in driver.receive(max_messages=5)] == ids[2:]
    assert driver.receive() == []


def test_ack_removes_and_nack_redelivers_after_delay(driver: SQLiteQueueDriver) -> None:
    driver.enqueue(msg(payload="a"))
    driver.enqueue(msg(payload="b"))
    first, second = driver.receive(max_messages=2)
    driver.ack(first)
    driver.nack(second, delay_seconds=0.2)
    assert driver.receive() == []
    assert driver.stats()["default"].delayed == 1
    time.sleep(0.25)
    [again] = driver.receive()
    assert again.message_id == second.message_id
    assert again.attempt == 2


def test_expired_lease_is_delivered_again(db: Path) -> None:
    driver = SQLiteQueueDriver(db, visibility_timeout=0.2)
    driver.enqueue(msg())
    [first] = driver.receive()
    assert driver.receive() == []
    time.sleep(0.25)
    [second] = driver.receive()
    assert second.attempt == 2
    # The first holder's lease is gone: its late ack must not remove the new delivery.
    driver.ack(first)
    assert driver.stats()["default"].in_flight == 1
    driver.ack(second)
    assert driver.stats() == {}


def test_job_whose_lease_keeps_running_out_is_dead_lettered(db: Path) -> None:
    driver = SQLiteQueueDriver(db, visibility_timeout=0.05, max_lost_leases=2)
    driver.enqueue(msg("crashy"))
    for _ in range(2):
        assert driver.receive(wait_seconds=1)
        time.sleep(0.06)
    assert driver.receive() == []
    [dead] = driver.dead_letters()
    assert dead.job_name == "crashy"
    assert "lease" in dead.reason
    assert "died or stalled" in dead.reason


def test_extend_leases_keeps_a_long_job_hidden(db: Path) -> None:
    driver = SQLiteQueueDriver(db, visibility_timeout=0.2)
    driver.enqueue(msg())
    [held] = driver.receive()
    time.sleep(0.1)
    assert driver.extend_leases([held], 0.5) == 1
    time.sleep(0.2)
    assert driver.receive() == []
    driver.ack(held)
    assert driver.extend_leases([held], 0.5) == 0


def test_delays_of_any_length(driver: SQLiteQueueDriver) -> None:
    far = driver.enqueue_in(msg(), 3 * 86400)
    soon = driver.enqueue_at(msg(), datetime.now(UTC) + timedelta(seconds=0.2))
    assert far.scheduled_at is not None
    assert far.scheduled_at > datetime.now(UTC) + timedelta(days=2)
    assert driver.receive() == []
    [got] = driver.receive(wait_seconds=2)
    assert got.message_id == soon.message_id
    assert driver.stats()["default"].delayed == 1


def test_receive_filters_queues_and_waits(driver: SQLiteQueueDriver) -> None:
    driver.enqueue(msg(queue="emails"))
    driver.enqueue(msg(queue="reports"))
    assert [r.queue for r in driver.receive(["emails"], 10)] == ["emails"]
    assert [r.queue for r in driver.receive(None, 10)] == ["reports"]
    started = time.monotonic()
    assert driver.receive(["emails"], 10, wait_seconds=0.2) == []
    assert time.monotonic() - started >= 0.19


def test_receive_serves_every_queue_even_when_one_is_busy(driver: SQLiteQueueDriver) -> None:
    driver.enqueue_many([msg(queue="busy") for _ in range(50)])
    driver.enqueue(msg(queue="quiet"))
    queues = {r.queue for _ in range(3) for r in driver.receive(max_messages=5)}
    assert queues == {"busy", "quiet"}


def test_unique_key_is_refused_while_pending_and_free_after_ack(
    driver: SQLiteQueueDriver,
) -> None:
    first = driver.enqueue(msg("welcome", unique_key="u1"))
    driver.enqueue(msg("other-job", unique_key="u1"))  # keys are per job name
    with pytest.raises(DuplicateJobError) as refused:
        driver.enqueue(msg("welcome", unique_key="u1"))
    assert refused.value.existing_job_id == first.job_id
    [claimed] = driver.receive(["default"], 1)
    with pytest.raises(DuplicateJobError):  # still pending while in flight
        driver.enqueue(msg("welcome", unique_key="u1"))
    driver.ack(claimed)
    driver.enqueue(msg("welcome", unique_key="u1"))


def test_unique_key_race_between_threads_admits_exactly_one(db: Path) -> None:
    driver = SQLiteQueueDriver(db)
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


def test_enqueue_many_is_all_or_nothing(driver: SQLiteQueueDriver) -> None:
    results = driver.enqueue_many([msg(payload=i) for i in range(100)])
    assert len({r.message_id for r in results}) == 100
    driver.enqueue(msg("welcome", unique_key="taken"))
    batch = [msg("welcome", unique_key="new"), msg("welcome", unique_key="taken")]
    with pytest.raises(DuplicateJobError, match="taken"):
        driver.enqueue_many(batch)
    assert driver.pending_count() == 101
    with pytest.raises(DuplicateJobError, match="twice"):
        driver.enqueue_many([msg("welcome", unique_key="twice")] * 2)


def test_dead_letters_keep_body_reason_and_time_and_redrive(
    driver: SQLiteQueueDriver,
) -> None:
    good = msg("welcome", {"user_id": "1"}, queue="emails", unique_key="1")
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert driver.dead_letter(good.encode(), "PermanentJobError: nope", queue="emails")
    assert driver.dead_letter("not json", "MalformedMessageError: bad", queue="emails")
    first, second = driver.dead_letters()
    assert (first.job_name, first.job_id, first.queue) == ("welcome", good.job_id, "emails")
    assert first.reason == "PermanentJobError: nope"
    assert first.failed_at >= before
    assert second.job_name is None
    assert driver.stats()["emails"].dead == 2

    driver.enqueue(msg("welcome", unique_key="1"))  # holds the key: redrive must skip it
    assert driver.redrive([first.id]) == 0
    [holder] = driver.receive(["default"], 1)
    driver.ack(holder)
    assert driver.redrive([first.id]) == 1
    [again] = driver.receive(["emails"], 5)
    assert again.body == good.encode()
    assert again.attempt == 1
    assert driver.purge_dead_letters() == 1
    assert driver.dead_letters() == []


def test_stats_per_queue(driver: SQLiteQueueDriver) -> None:
    driver.enqueue(msg(queue="a"))
    driver.enqueue(msg(queue="a"))
    driver.enqueue_in(msg(queue="a"), 60)
    driver.enqueue(msg(queue="b"))
    driver.receive(["a"], 1)
    driver.dead_letter("x", "bad", queue="b")
    stats = driver.stats()
    assert (stats["a"].ready, stats["a"].delayed, stats["a"].in_flight) == (1, 1, 1)
    assert (stats["b"].ready, stats["b"].dead, stats["b"].pending) == (1, 1, 1)


def test_claim_periodic_fires_once_per_time(driver: SQLiteQueueDriver) -> None:
    at = datetime(2026, 1, 1, 3, tzinfo=UTC)
    assert driver.claim_periodic("cleanup", at)
    assert not driver.claim_periodic("cleanup", at)
    assert driver.claim_periodic("other", at)
    assert driver.claim_periodic("cleanup", at + timedelta(minutes=5))


def _claim_all(path: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    driver = SQLiteQueueDriver(path, visibility_timeout=60)
    claimed = []
    while batch := driver.receive(max_messages=7):
        claimed.extend(r.message_id for r in batch)
    out.put(claimed)


def test_processes_claiming_one_file_never_share_a_job(db: Path) -> None:
    driver = SQLiteQueueDriver(db)
    driver.enqueue_many([msg(payload=i) for i in range(2000)])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(str(db), out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    every = [m for part in claimed for m in part]
    assert len(every) == len(set(every)) == 2000
