"""Jobs that record every run, with pid and times, in the SQLite file named by the
``GLASSWORK_TEST_RUNS`` environment variable, so tests can prove what ran where and when."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from glasswork import define_module
from glasswork.jobs import define_job, define_periodic_job


def _runs() -> sqlite3.Connection:
    conn = sqlite3.connect(os.environ["GLASSWORK_TEST_RUNS"], timeout=30, isolation_level=None)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS runs (key TEXT, pid INTEGER, attempt INTEGER, "
        "started REAL, finished REAL)"
    )
    return conn


def _record(key: str, attempt: int, seconds: float, until: str | None = None) -> None:
    """Record a run that takes ``seconds``, or, given ``until`` (a file path), lasts until
    that file exists, for at most ``seconds``."""
    conn = _runs()
    try:
        row = conn.execute(
            "INSERT INTO runs (key, pid, attempt, started) VALUES (?, ?, ?, ?)",
            (key, os.getpid(), attempt, time.time()),
        ).lastrowid
        if until is None:
            time.sleep(seconds)
        else:
            deadline = time.monotonic() + seconds
            while not os.path.exists(until) and time.monotonic() < deadline:
                time.sleep(0.02)
        conn.execute("UPDATE runs SET finished = ? WHERE rowid = ?", (time.time(), row))
    finally:
        conn.close()


def _record_handler(payload: dict[str, Any], ctx: Any) -> None:
    _record(payload["key"], ctx.attempt, float(payload.get("sleep", 0)), payload.get("until"))


def _fail_handler(payload: dict[str, Any], ctx: Any) -> None:
    _record(payload["key"], ctx.attempt, 0)
    raise RuntimeError(f"failure number {ctx.attempt}")


record = define_job(
    name="record",
    handler=_record_handler,
    unique=lambda p: p.get("unique"),
)
fail = define_job(
    name="fail",
    handler=_fail_handler,
    retry={"max_attempts": 3, "backoff": 0.05, "jitter": False},
)
tick = define_periodic_job(
    name="tick",
    schedule="rate(1 second)",
    handler=lambda payload, ctx: _record("tick", ctx.attempt, 0),
)

AppModule = define_module(name="fixtures", jobs=[record, fail, tick])
