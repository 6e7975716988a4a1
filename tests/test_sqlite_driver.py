"""SQLiteQueueDriver: what only the SQLite file does (WAL, per-thread connections, processes
sharing a file); the contract every durable driver keeps is in test_queue_driver_contract.py."""

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

from glasswork.jobs import JobMessage
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


def test_receive_filters_queues_and_waits(driver: SQLiteQueueDriver) -> None:
    driver.enqueue(msg(queue="emails"))
    driver.enqueue(msg(queue="reports"))
    assert [r.queue for r in driver.receive(["emails"], 10)] == ["emails"]
    assert [r.queue for r in driver.receive(None, 10)] == ["reports"]
    started = time.monotonic()
    assert driver.receive(["emails"], 10, wait_seconds=0.2) == []
    assert time.monotonic() - started >= 0.19


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
