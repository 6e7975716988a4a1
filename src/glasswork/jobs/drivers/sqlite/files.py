"""How every Glasswork SQLite file is opened: the queue's, the idempotency store's."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from ...errors import ConfigurationError


def file_path(path: str | os.PathLike[str], owner: str) -> Path:
    """``path`` as a file every thread and process can open (``:memory:`` cannot be)."""
    text = os.fspath(path)
    if text == ":memory:" or text.startswith("file::memory:"):
        raise ConfigurationError(
            f"{owner} needs a file (each thread and process opens it); use a temporary file "
            "instead of ':memory:'"
        )
    return Path(text)


def check_synchronous(value: str) -> str:
    """A valid ``PRAGMA synchronous`` setting, upper-cased."""
    if value.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigurationError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {value!r}")
    return value.upper()


def open_file(path: Path, busy_timeout: float, synchronous: str) -> sqlite3.Connection:
    """A connection as every Glasswork SQLite file is opened: in WAL mode, waiting up to
    ``busy_timeout`` seconds for locks, with ``synchronous``, and in autocommit mode
    (isolation_level=None: callers issue BEGIN IMMEDIATE themselves, so a claim takes the
    write lock before reading and two processes cannot claim the same rows)."""
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        # Switching to WAL needs an exclusive lock and does not wait on busy_timeout.
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn
