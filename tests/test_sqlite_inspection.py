"""The SQLite driver's outcome table: the upgrade of a version-1 file (schema version 2); its
dead-letter ids, never reused, and the upgrade of a version-2 file to them (version 3).
(Outcome history and job lookup as every driver with them offers them: the contract suite,
test_testing_contract.py.)"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.records import OutcomeCount
from glasswork.jobs.drivers.sqlite import SCHEMA_VERSION, SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError


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


# -- dead-letter ids are never reused (schema version 3) ----------------------------------------

_VERSION_2_DEAD_LETTERS = """
CREATE TABLE glasswork_dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT,
    job_name TEXT,
    job_id TEXT,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
)"""


def _dead_letter_ids(driver: SQLiteQueueDriver) -> list[str]:
    return [r.id for r in driver.dead_letters()]


def _bury_one(driver: SQLiteQueueDriver, name: str) -> str:
    message = JobMessage.create(name, {}, queue="q")
    driver.dead_letter(message.encode(), f"{name} failed", queue="q")
    return next(f.dead_letter.id for f in driver.find_job(message.job_id) if f.dead_letter)


def test_a_purged_dead_letter_id_is_never_handed_out_again(driver: SQLiteQueueDriver) -> None:
    first, second, third = (_bury_one(driver, n) for n in ("a", "b", "c"))
    assert driver.purge_dead_letters([third]) == 1
    fourth = _bury_one(driver, "d")  # a ticket saying "redrive #3" must not redrive "d"
    assert int(fourth) > int(third)
    assert driver.redrive([third]) == 0 and driver.find_dead_letter(third) is None
    driver.purge_dead_letters(None)
    assert int(_bury_one(driver, "e")) > int(fourth)
    assert {first, second}.isdisjoint(_dead_letter_ids(driver))


def _make_version_2(path: Path) -> list[str]:
    """A file as glasswork with schema version 2 left it (dead-letter ids reused, no search
    indexes, no heartbeats), with three dead letters, the newest purged; their ids."""
    d = SQLiteQueueDriver(path)
    ids = [_bury_one(d, n) for n in ("a", "b", "c")]
    d.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("ALTER TABLE glasswork_dead_letters RENAME TO old")
    conn.execute(_VERSION_2_DEAD_LETTERS)
    conn.execute(
        "INSERT INTO glasswork_dead_letters "
        "SELECT id, queue, job_name, job_id, body, reason, failed_at FROM old"
    )
    conn.execute("DROP TABLE old")
    conn.execute("CREATE INDEX glasswork_dead_letters_queue ON glasswork_dead_letters (queue, id)")
    conn.execute("DROP TABLE glasswork_workers")
    conn.execute("DELETE FROM glasswork_dead_letters WHERE id = ?", (int(ids[2]),))
    conn.execute("PRAGMA user_version = 2")
    conn.execute("COMMIT")
    conn.close()
    return ids


def test_a_version_2_file_is_upgraded_to_ids_never_reused_and_keeps_its_dead_letters(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    ids = _make_version_2(path)
    driver = SQLiteQueueDriver(path)
    try:
        assert _dead_letter_ids(driver) == ids[:2]
        assert driver.find_dead_letter(ids[1]).reason == "b failed"  # type: ignore[union-attr]
        newest = _bury_one(driver, "d")
        assert driver.purge_dead_letters([newest]) == 1
        assert int(_bury_one(driver, "e")) > int(newest)
        assert driver.heartbeat_store().workers() == []
    finally:
        driver.close()
    conn = sqlite3.connect(path)
    (create,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'glasswork_dead_letters'"
    ).fetchone()
    indexes = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'glasswork_dead_letters'"
        )
    }
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    assert "AUTOINCREMENT" in create
    assert {
        "glasswork_dead_letters_queue",
        "glasswork_dead_letters_job",
        "glasswork_dead_letters_failed",
    } <= indexes
