"""A job's life on the SQLite driver: the StatusStore rules (tests/status_support.py), and
what only the file does: its schema upgrade, finishing with nothing to keep costing what an
acknowledgement costs, expired ends purged."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glasswork.jobs.drivers.records import FinalStatus
from glasswork.jobs.drivers.sqlite import SCHEMA_VERSION, SQLiteQueueDriver, schema
from status_support import StatusRules, claim_one, msg


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def open_driver(db: Path) -> Iterator[Any]:
    opened: list[SQLiteQueueDriver] = []

    def open_one(**settings: Any) -> SQLiteQueueDriver:
        opened.append(SQLiteQueueDriver(db, **settings))
        return opened[-1]

    yield open_one
    for driver in opened:
        driver.close()


class TestSQLiteStatus(StatusRules):
    pass


def statements(driver: SQLiteQueueDriver, action: Any) -> list[str]:
    """The SQL ``action()`` runs on this thread's connection (numbers left out: SQLite
    shows the statements with their parameters)."""
    seen: list[str] = []
    conn = driver._conn()
    conn.set_trace_callback(seen.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    return [re.sub(r"\d+", "N", sql) for sql in seen]


def test_finishing_with_nothing_to_keep_runs_exactly_the_acknowledgement(db: Path) -> None:
    driver = SQLiteQueueDriver(db)
    driver.enqueue_many([msg(), msg(), msg(), msg()])
    a, b, c, d = driver.receive(max_messages=4)
    acked = statements(driver, lambda: driver.ack_many([a, b]))
    finished = statements(
        driver,
        lambda: driver.finish_many(
            [(c, FinalStatus("done", result=1, keep_for=0)), (d, FinalStatus("failed", keep_for=0))]
        ),
    )
    assert finished == acked and driver.pending_count() == 0
    driver.close()


def test_finishing_with_an_end_to_keep_is_one_transaction(db: Path) -> None:
    driver = SQLiteQueueDriver(db)
    driver.enqueue_many([msg(), msg()])
    received = driver.receive(max_messages=2)
    ran = statements(
        driver, lambda: driver.finish_many([(r, FinalStatus("done", result=2)) for r in received])
    )
    assert [s.split()[0] for s in ran if s.split()[0] in ("BEGIN", "COMMIT")] == ["BEGIN", "COMMIT"]
    driver.close()


def test_expired_ends_are_purged_by_later_finishes(db: Path) -> None:
    driver = SQLiteQueueDriver(db)
    old = msg()
    driver.enqueue(old)
    driver.finish(claim_one(driver), FinalStatus("done", keep_for=0.01))
    time.sleep(0.02)  # let it expire (the row, not the test, depends on the time)
    driver._next_purge = 0.0
    driver.enqueue(msg())
    driver.finish(claim_one(driver), FinalStatus("done"))
    rows = driver._conn().execute("SELECT job_id FROM glasswork_job_results").fetchall()
    assert old.job_id not in [r[0] for r in rows] and len(rows) == 1
    driver.close()


def make_version_4(path: Path) -> None:
    """A file as glasswork with schema version 4 left it, holding a waiting job and a dead
    letter."""
    conn = sqlite3.connect(path)
    for step in schema.MIGRATIONS[:4]:
        if callable(step):
            step(conn)
        else:
            conn.executescript(step)
    now = time.time()
    conn.execute(
        "INSERT INTO glasswork_jobs (queue, job_name, job_id, body, visible_at, enqueued_at) "
        "VALUES ('default', 'ping', 'old-job', ?, ?, ?)",
        (msg(job_id="old-job").encode(), now, now),
    )
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()


def test_a_version_4_file_is_upgraded_and_keeps_its_jobs(db: Path) -> None:
    make_version_4(db)
    assert SCHEMA_VERSION == 8
    driver = SQLiteQueueDriver(db)
    assert driver._conn().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    status = driver.job_status("old-job")
    assert (status.state, status.priority) == ("pending", 0)
    driver.enqueue(msg(priority=4))
    first, second = claim_one(driver), claim_one(driver)
    assert "old-job" in second.body and "old-job" not in first.body
    driver.finish(second, FinalStatus("done", result="ok"))
    assert driver.job_status("old-job").result == "ok"
    driver.close()


def test_claims_and_running_jobs_use_the_indexes(db: Path) -> None:
    driver = SQLiteQueueDriver(db)
    plans = [
        row[3]
        for sql in (
            "SELECT id FROM glasswork_jobs WHERE queue = 'q' AND priority <> 0 AND priority > 0 "
            "AND visible_at <= 1 ORDER BY priority DESC, visible_at LIMIT 5",
            "SELECT id FROM glasswork_jobs WHERE queue = 'q' AND priority = 0 AND visible_at <= 1 "
            "ORDER BY visible_at LIMIT 5",
            "SELECT job_id FROM glasswork_jobs WHERE job_id = 'x' AND leased = 1 "
            "AND cancel_requested = 1",
            "UPDATE glasswork_jobs SET progress = 0.5 WHERE job_id = 'x' AND leased = 1",
        )
        for row in driver._conn().execute(f"EXPLAIN QUERY PLAN {sql}")
    ]
    assert all("INDEX" in plan and "TEMP" not in plan for plan in plans), plans
    driver.close()
