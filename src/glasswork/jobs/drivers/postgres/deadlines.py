"""How long a call to the server may block: every connection the driver opens is bounded.

* Connecting: libpq's ``connect_timeout``.
* A server that vanished from the network (a failover moved its address, a host died): TCP
  keepalives and ``tcp_user_timeout`` make the kernel give the connection up.
* A statement that runs too long: PostgreSQL's ``statement_timeout`` (and
  ``idle_in_transaction_session_timeout``) on the driver's sessions, so the server cancels it
  with an error.
* A peer whose TCP stack still answers while no reply ever comes (a frozen server; a proxy or
  load balancer holding the old connection after a failover): every wait for the server has
  a deadline, ``statement_timeout`` plus :data:`ANSWER_GRACE`. A watchdog thread shuts the
  socket of a connection waiting past it, so the wait fails as a lost connection
  (:class:`NoAnswer`) and the driver's retry takes a new one.

The libpq settings are defaults (:data:`TCP_DEFAULTS`): one given in the connection string
or URL, or its environment variable, wins.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

#: libpq settings the driver adds unless the connection string (or environment) sets them.
TCP_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "15000",  # milliseconds
}
_ENVIRONMENT = {"connect_timeout": "PGCONNECT_TIMEOUT", "options": "PGOPTIONS"}

#: The driver's ``statement_timeout`` unless it is given one.
DEFAULT_STATEMENT_TIMEOUT = 15.0
#: The longest ``statement_timeout`` PostgreSQL holds (milliseconds, in an int).
MAX_STATEMENT_TIMEOUT = 2_147_483.0

#: Seconds past ``statement_timeout`` a connection may stay silent before it is taken for
#: dead: time for the server's cancellation to arrive.
ANSWER_GRACE = 2.0


def bounded_conninfo(conninfo: str, statement_timeout: float) -> str:
    """``conninfo`` with :data:`TCP_DEFAULTS` where it has no setting of its own, and the
    server-side timeouts of ``statement_timeout`` seconds (0: none) put before its own
    ``options`` (a ``-c statement_timeout=...`` of yours there still wins)."""
    params = {k: v for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    for key, value in TCP_DEFAULTS.items():
        if key not in params and not os.environ.get(_ENVIRONMENT.get(key, "")):
            params[key] = value
    if statement_timeout > 0:
        ms = math.ceil(statement_timeout * 1000)
        server = f"-c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}"
        own = params.get("options", os.environ.get("PGOPTIONS", ""))
        params["options"] = f"{server} {own}".strip()
    return make_conninfo("", **params)


def answer_timeout(statement_timeout: float) -> float | None:
    """How long a connection may stay silent before it is taken for dead (None: forever)."""
    return statement_timeout + ANSWER_GRACE if statement_timeout > 0 else None


class NoAnswer(psycopg.OperationalError):
    """The server did not answer within the deadline: the connection was closed as dead."""


class BoundedConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection whose every wait for the server (a statement, a commit, a fetch)
    ends within :attr:`answer_timeout` seconds (None: no deadline)."""

    answer_timeout: float | None = None
    _cursor: psycopg.Cursor[TupleRow] | None = None

    def reused_cursor(self) -> psycopg.Cursor[TupleRow]:
        """This connection's cursor for the driver's statements, made once: making one costs
        about as much client time as running a short statement. Only for statements whose
        rows are read at once (the next one replaces them)."""
        cursor = self._cursor
        if cursor is None or cursor.closed:
            cursor = self._cursor = self.cursor()
        return cursor

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        # Every round trip of a psycopg connection goes through wait().
        seconds = self.answer_timeout
        if seconds is None:
            return super().wait(gen, *args, **kwargs)
        waiting = _WATCHDOG.start(self.pgconn.socket, seconds)
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.Error as exc:
            if waiting.expired:
                raise NoAnswer(
                    f"no answer from the PostgreSQL server within {seconds:g}s "
                    "(statement_timeout plus a grace): the connection was closed as dead"
                ) from exc
            raise
        finally:
            _WATCHDOG.stop(waiting)


def connect(conninfo: str, statement_timeout: float) -> BoundedConnection:
    """An autocommit connection bounded as the driver's pool connections are."""
    conn = BoundedConnection.connect(bounded_conninfo(conninfo, statement_timeout), autocommit=True)
    conn.answer_timeout = answer_timeout(statement_timeout)
    return conn


class _Waiting:
    """One wait for the server: the socket and when to give up on it."""

    __slots__ = ("deadline", "expired", "fd")

    def __init__(self, fd: int, deadline: float) -> None:
        self.fd = fd
        self.deadline = deadline
        self.expired = False

    def expire(self) -> None:
        """Shut the socket down: the blocked wait wakes to a closed connection."""
        self.expired = True
        try:
            with socket.socket(fileno=os.dup(self.fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone: the wait fails (or finished) anyway


class _Watchdog:
    """One thread per process, waking at the earliest deadline of the waits in progress.

    A wait is registered only while its thread is inside it (and the watchdog acts only
    under the same lock), so its socket is still open whenever the watchdog shuts it.

    Registering costs a plain lock and a dict entry, not a wake-up of the thread (this runs
    on every round trip): no wait is shorter than the shortest timeout registered so far, so
    a thread that sleeps no longer than that past its last look never misses a deadline.
    Only a thread parked with nothing to watch is woken.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waits: dict[int, _Waiting] = {}
        self._shortest = math.inf
        self._parked = True
        self._running = False

    def start(self, fd: int, seconds: float) -> _Waiting:
        waiting = _Waiting(fd, time.monotonic() + seconds)
        with self._lock:
            self._waits[id(waiting)] = waiting
            # A shorter timeout than any before: the thread may be sleeping past its deadline.
            wake = self._parked or seconds < self._shortest
            self._shortest = min(self._shortest, seconds)
            if wake:
                self._parked = False
                if self._running:
                    self._changed.notify()
                else:
                    self._running = True
                    threading.Thread(
                        target=self._run, name="glasswork-postgres-deadlines", daemon=True
                    ).start()
        return waiting

    def stop(self, waiting: _Waiting) -> None:
        with self._lock:
            self._waits.pop(id(waiting), None)  # gone if it expired

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                for key, waiting in list(self._waits.items()):
                    if waiting.deadline <= now:
                        del self._waits[key]
                        waiting.expire()
                if not self._waits:
                    self._parked = True
                    self._changed.wait()
                    continue
                earliest = min(w.deadline for w in self._waits.values())
                self._changed.wait(min(earliest, now + self._shortest) - now)


_WATCHDOG = _Watchdog()
