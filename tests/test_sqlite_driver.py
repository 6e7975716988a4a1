"""SQLiteQueueDriver: what only the SQLite file does (WAL, per-thread connections, no
in-memory database); the driver contract is test_testing_contract.py, what it shares with PostgreSQL
test_sql_drivers.py."""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.drivers.urls import driver_from_url
from glasswork.jobs.errors import ConfigurationError, EnqueueError


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
    assert len(driver.file.connections) == 1  # only this thread's
    assert driver.pending_count() == 20


def test_memory_database_is_refused_with_a_reason() -> None:
    with pytest.raises(ConfigurationError, match="needs a file"):
        SQLiteQueueDriver(":memory:")


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        # Taken, these would break every claim or wait later (a lease that never ends, a
        # sleep that cannot be slept).
        ("visibility_timeout", "inf", "visibility_timeout must be positive seconds"),
        ("visibility_timeout", "1e300", "visibility_timeout must be positive seconds"),
        ("visibility_timeout", "0", "visibility_timeout must be positive seconds"),
        ("poll_interval", "nan", "poll_interval must be positive seconds"),
        ("poll_interval", "inf", "poll_interval must be positive seconds"),
        ("busy_timeout", "inf", "busy_timeout must be 0 or more seconds"),
        ("busy_timeout", "-1", "busy_timeout must be 0 or more seconds"),
    ],
)
def test_durations_that_cannot_work_are_refused_at_construction(
    db: Path, setting: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SQLiteQueueDriver(db, **{setting: float(value)})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=message):
        driver_from_url(f"sqlite:///{db}?{setting}={value}")
    assert not db.exists()  # refused before anything was made


def test_a_write_lock_held_past_busy_timeout_fails_the_call_and_stores_nothing(db: Path) -> None:
    # What docs/worker.md says bounds a call: no call waits longer than busy_timeout.
    driver = SQLiteQueueDriver(db, busy_timeout=0.2)
    driver.enqueue(msg(payload=1))
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(EnqueueError, match="database is locked; nothing was stored"):
            driver.enqueue(msg(payload=2))
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            driver.receive()
        assert driver.pending_count() == 1  # reads do not wait
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    [got] = driver.receive()
    assert JobMessage.from_json(got.body).payload == 1
    driver.close()


def test_the_driver_has_a_readable_repr(tmp_path: Path) -> None:
    assert repr(SQLiteQueueDriver(tmp_path / "j.db")).startswith("SQLiteQueueDriver(")
