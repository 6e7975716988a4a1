"""The SQLite queue file as the driver's parts use it: one connection per thread (and per
process: a connection never crosses ``fork()``), opened and migrated on first use; write
transactions (``BEGIN IMMEDIATE``); and writes that make room when the disk is full, with
the file's disk reserve (:mod:`.reserve`)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ...errors import ConfigurationError
from .files import open_file
from .reserve import DiskReserve
from .schema import SCHEMA_VERSION, migrate, schema_version

T = TypeVar("T")

logger = logging.getLogger("glasswork.jobs")


class QueueFile:
    """The queue at ``path``: connections wait ``busy_timeout`` seconds for locks and use
    ``synchronous``; ``create`` False refuses a missing file or one without a queue in it.
    ``reserve`` is the file's disk reserve."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float,
        synchronous: str,
        create: bool,
        reserve: DiskReserve,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self.create = create
        self.reserve = reserve
        self._local = threading.local()
        #: Every thread's connection (closed together by :meth:`close`).
        self.connections: weakref.WeakSet[_Owned] = weakref.WeakSet()
        self._lock = threading.Lock()
        #: A write failed for a full disk with no reserve left to give (said once).
        self._stalled = False

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened, and the schema brought up to date, on first
        use)."""
        owned: _Owned | None = getattr(self._local, "owned", None)
        # A connection must not cross fork(): the child opens its own.
        if owned is not None and owned.pid == os.getpid():
            return owned.conn
        owned = self._local.owned = _Owned(self._open())
        with self._lock:
            self.connections.add(owned)
        return owned.conn

    def _open(self) -> sqlite3.Connection:
        """A new connection; what stops one is a :class:`ConfigurationError` saying why."""
        if not self.create and not self.path.exists():
            raise ConfigurationError(
                f"{self.path} does not exist: no queue was created there (check the path; "
                "enqueueing a job or starting a worker creates it)"
            )
        if not self.create and schema_version(self.path) == 0:
            raise ConfigurationError(
                f"{self.path} holds no Glasswork queue (an empty or another SQLite file): "
                "check the path; enqueueing a job or starting a worker creates the tables"
            )
        try:
            return self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise ConfigurationError(
                f"cannot use {self.path} as a queue file: {_why_unusable(self.path, exc)}"
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        conn = open_file(self.path, self.busy_timeout, self.synchronous)
        pages = self.reserve.checkpoint_pages(conn.execute("PRAGMA page_size").fetchone()[0])
        if pages is not None:
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        # Zero deleted jobs only in pages written anyway: a build whose default is ON
        # (Debian's) writes every freed page of a large job again on ack, which a full
        # disk refuses.
        conn.execute("PRAGMA secure_delete = FAST")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            # Another process may be creating or upgrading the schema too: decide under the
            # write lock.
            with self.transaction(conn):
                version = migrate(conn)
        if version != SCHEMA_VERSION:
            conn.close()
            raise ConfigurationError(
                f"{self.path} has Glasswork queue schema version {version}; this version of "
                f"glasswork reads version {SCHEMA_VERSION}"
            )
        return conn

    @contextmanager
    def transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``) on ``conn`` (default: this thread's)."""
        conn = conn or self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (a full disk) leaves the transaction open, and some errors roll
            # it back themselves: either way the connection must end up outside one.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: its statements see one state of the file."""
        conn = self.conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in a write transaction: what workers do to jobs already stored. On a full
        disk the WAL cannot grow: :meth:`_make_room`, and try once more. (Enqueues do not:
        on a full disk they fail at once, leaving that room to the workers.)"""
        conn = self.conn()
        try:
            with self.transaction(conn):
                result = fn(conn)
        except sqlite3.OperationalError as exc:
            if not _disk_full(exc) or not self._make_room(conn):
                raise
            with self.transaction(conn):
                result = fn(conn)
        self._stalled = False
        self.reserve.tend()
        return result

    def _make_room(self, conn: sqlite3.Connection) -> bool:
        """Copy the WAL into the database file, so the next write reuses the WAL's space from
        its start; when the disk has no room for that either, release the disk reserve
        first. True when the whole WAL was copied."""
        try:
            return _checkpoint(conn)
        except sqlite3.Error as exc:
            if not _disk_full(exc):
                return False
        self.reserve.release()  # False: none left, or another process just released it
        try:
            return _checkpoint(conn)
        except sqlite3.Error as exc:
            if _disk_full(exc) and not self._stalled:
                self._stalled = True
                logger.error(
                    "the disk holding %s is full and its disk reserve is used up: workers "
                    "cannot claim or finish jobs (a claim or an ack is a write) until space "
                    "is freed there; stored jobs are kept and run once it is",
                    self.path,
                )
            return False

    def close(self) -> None:
        """Close every connection opened on this file (in all threads)."""
        with self._lock:
            owned, self.connections = list(self.connections), weakref.WeakSet()
        for o in owned:
            o.close()
        self._local = threading.local()


class _Owned:
    """One thread's connection. It lives in that thread's ``threading.local``, so it is
    closed when the thread ends (a worker's driver thread, say) rather than leaking."""

    __slots__ = ("__weakref__", "conn", "pid")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()

    def close(self) -> None:
        # Closing a connection inherited over fork() could disturb the parent's locks.
        if self.pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()

    def __del__(self) -> None:
        self.close()


def _disk_full(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == sqlite3.SQLITE_FULL
    return "disk is full" in str(error)


def _checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database file; True when all of it was, so the next write
    starts the WAL over in the space it already has. Raises what SQLite raised (a full
    disk: the database file cannot grow)."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return bool(busy == 0 and frames == copied)


def _why_unusable(path: Path, error: BaseException) -> str:
    """SQLite's reason a file cannot be opened, with the likely cause spelled out."""
    if path.is_dir():
        return f"it is a directory, not a database file ({error})"
    folder = path.parent
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"it is on a read-only file system ({error})"
    if folder.exists() and not os.access(folder, os.W_OK):
        return f"its directory {folder} is not writable ({error})"
    return str(error)
