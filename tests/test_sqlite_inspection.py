"""The SQLite driver's outcome table: the upgrade of a version-1 file (schema version 2).
(Outcome history and job lookup as every durable driver offers them:
test_queue_driver_contract.py.)"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.sqlite import SCHEMA_VERSION, SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError
from glasswork.jobs.inspection import OutcomeCount


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[SQLiteQueueDriver]:
    d = SQLiteQueueDriver(tmp_path / "jobs.db", visibility_timeout=30)
    yield d
    d.close()


def minute(offset: int = 0) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now + timedelta(minutes=offset)


def _make_version_1(path: Path) -> None:
    """A file as glasswork with schema version 1 left it: no outcome table."""
    d = SQLiteQueueDriver(path)
    d.enqueue(JobMessage.create("kept", {"n": 1}, queue="q"))
    d.dead_letter("{}", "old failure", queue="q")
    d.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE glasswork_outcomes")
    conn.execute("ALTER TABLE glasswork_dead_letters DROP COLUMN traceback")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def test_a_version_1_file_is_upgraded_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _make_version_1(path)
    driver = SQLiteQueueDriver(path)
    try:
        assert driver.stats()["q"].ready == 1 and driver.stats()["q"].dead == 1
        driver.record_outcomes([OutcomeCount(minute(), "q", "kept", "done", 1)])
        assert len(driver.outcome_history(minute(-1))) == 1
    finally:
        driver.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_threads_upgrading_one_file_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _make_version_1(path)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        start.wait()
        try:
            SQLiteQueueDriver(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "glasswork_outcomes" in tables
    conn.close()


def test_a_file_from_a_newer_glasswork_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteQueueDriver(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigurationError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SQLiteQueueDriver(path)
