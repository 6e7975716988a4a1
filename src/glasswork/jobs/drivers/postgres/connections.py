"""Connections for the driver: a ``psycopg_pool`` pool per process, and retries with backoff
when the server goes away (a restart, a failover) instead of failing the caller at once.
Every connection is bounded (:mod:`.deadlines`), so a dead one fails the call rather than
blocking it, and the retry applies."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from .deadlines import BoundedConnection, answer_timeout, bounded_conninfo

T = TypeVar("T")

logger = logging.getLogger("glasswork.postgres")


def redacted(conninfo: str) -> str:
    """``conninfo`` without its password, for messages and ``repr``."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unreadable connection string>"
    params.pop("password", None)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def describe(error: BaseException) -> str:
    """An error on one line (libpq's messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


class ConnectionLost(Exception):
    """The connection broke (or none could be had) while running ``what``."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Connections:
    """Autocommit connections from a pool opened on first use in each process (a pool must
    not cross ``fork()``), and :meth:`run`, which retries a unit of work on a fresh connection
    while the server is unreachable, for up to ``reconnect_timeout`` seconds. Each statement
    is bounded by ``statement_timeout`` (see :mod:`.deadlines`)."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int,
        max_size: int,
        reconnect_timeout: float,
        statement_timeout: float,
        log: logging.Logger = logger,
    ) -> None:
        self.conninfo = bounded_conninfo(conninfo, statement_timeout)
        self.answer_timeout = answer_timeout(statement_timeout)
        self.min_size = min_size
        self.max_size = max_size
        self.reconnect_timeout = reconnect_timeout
        self.log = log
        self._pool: ConnectionPool[BoundedConnection] | None = None
        self._pid = 0
        self._lock = threading.Lock()
        # Pools inherited over fork(): kept referenced, never used or closed here, since
        # closing them would end the parent's sessions on the shared sockets.
        self._inherited: list[ConnectionPool[BoundedConnection]] = []

    def pool(self) -> ConnectionPool[BoundedConnection]:
        """This process's pool, opened on first use."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is not None and self._pid != os.getpid():
                self._inherited.append(self._pool)
                self._pool = None
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.conninfo,
                    connection_class=BoundedConnection,
                    configure=self._configure,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    kwargs={"autocommit": True},
                    name="glasswork",
                    open=True,
                )
                self._pid = os.getpid()
            return self._pool

    def _configure(self, conn: BoundedConnection) -> None:
        conn.answer_timeout = self.answer_timeout

    def run(self, what: str, work: Callable[[psycopg.Connection, bool], T]) -> T:
        """``work(connection, retrying)`` on a pooled connection. When the connection breaks
        (or none can be had), wait with backoff and call it again on a new one with
        ``retrying=True``; after ``reconnect_timeout`` seconds (and at least one retry),
        raise the last error. Work that is not idempotent uses ``retrying`` to find out
        whether it already happened."""
        first_failure: float | None = None
        delay = 0.05
        while True:
            try:
                result = self._attempt(work, retrying=first_failure is not None)
            except ConnectionLost as lost:
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                elif now - first_failure >= self.reconnect_timeout:
                    raise lost.error from None
                self.log.warning(
                    "lost the PostgreSQL connection while trying to %s (%s); trying again in %.2fs",
                    what,
                    describe(lost.error),
                    delay,
                )
                self._discard_broken()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if first_failure is not None:
                self.log.warning(
                    "PostgreSQL connection back after %.1fs; %s done",
                    time.monotonic() - first_failure,
                    what,
                )
            return result

    def _attempt(self, work: Callable[[psycopg.Connection, bool], T], *, retrying: bool) -> T:
        pool = self.pool()
        try:
            conn = pool.getconn(timeout=5.0)
        except PoolTimeout as exc:
            raise ConnectionLost(exc) from exc
        # Not pool.connection(): its ``with conn`` adds a commit, a wait for nothing on these
        # autocommit connections, to every call. putconn() rolls back a transaction left open.
        try:
            return work(conn, retrying)
        except psycopg.OperationalError as exc:
            # The server went away, or the connection was closed as dead (.deadlines): the
            # pool drops it.
            if conn.closed:
                raise ConnectionLost(exc) from exc
            raise
        finally:
            pool.putconn(conn)

    def _discard_broken(self) -> None:
        """After one pooled connection broke, the others probably did too (a restart, a
        failover): replace them all rather than fail on each in turn. (Testing them would
        take a deadline each when they are half-open.)"""
        try:
            self.pool().drain()
        except Exception:  # best effort: the retry finds out anyway
            self.log.debug("could not drain the pool's connections", exc_info=True)

    def close(self) -> None:
        """Close this process's pool (connections in use are closed when returned)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()
