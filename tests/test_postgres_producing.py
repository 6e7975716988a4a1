"""What an enqueue costs the PostgreSQL server: one prepared statement and one round trip for
one job, and for a batch of any size; read from libpq's trace of the protocol messages.
Also the batch's text as it arrives (its arrays travel in binary), and the per-round-trip
deadline's watchdog."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import pq

from glasswork.jobs import DuplicateJobError, JobMessage
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.postgres.deadlines import _Watchdog
from pgtest import connect, dsn, fresh_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def driver() -> Iterator[PostgresQueueDriver]:
    with fresh_schema() as schema, PostgresQueueDriver(dsn(), schema=schema) as d:
        yield d


def msg(payload: object = None, **kw: object) -> JobMessage:
    return JobMessage.create("ping", payload, **kw)  # type: ignore[arg-type]


@contextmanager
def traced(conn: psycopg.Connection) -> Iterator[list[str]]:
    """The frontend (F) and backend (B) protocol messages ``conn`` exchanges in the block:
    the message names, in order."""
    messages: list[str] = []
    with tempfile.TemporaryFile("w+") as out:
        conn.pgconn.trace(out.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield messages
        finally:
            conn.pgconn.untrace()
            out.seek(0)
            messages += [" ".join(line.split("\t")[::2][:2]) for line in out.read().splitlines()]


def round_trips(messages: list[str]) -> int:
    return messages.count("B ReadyForQuery")


def test_one_enqueue_is_one_prepared_statement_in_one_round_trip(
    driver: PostgresQueueDriver,
) -> None:
    with connect(autocommit=True) as conn:
        bound = driver.bind(conn)
        bound.enqueue(msg(1))  # prepares the statement on this connection
        with traced(conn) as messages:
            bound.enqueue(msg(2))
        assert round_trips(messages) == 1
        assert "F Parse" not in messages  # the statement prepared at the first enqueue
        assert messages.count("F Bind") == 1
        assert driver.pending_count() == 2


@pytest.mark.slow
@pytest.mark.parametrize("unique", [False, True])
def test_a_batch_of_any_size_is_one_prepared_statement(
    driver: PostgresQueueDriver, unique: bool
) -> None:
    def batch(size: int, tag: str) -> list[JobMessage]:
        return [msg(i, unique_key=f"{tag}-{i}" if unique else None) for i in range(size)]

    with connect(autocommit=True) as conn:
        bound = driver.bind(conn)
        bound.enqueue_many(batch(3, "a"))  # prepares it on this connection
        with traced(conn) as messages:
            results = bound.enqueue_many(batch(5000, "b"))
        assert len(results) == 5000 and driver.pending_count() == 5003
        assert messages.count("F Bind") == 1 and "F Parse" not in messages
        if unique:
            # A batch that may take back what it inserted (a duplicate key) does it in a
            # transaction of its own, so no job of it is seen meanwhile.
            assert messages.count("F Query") == 2  # BEGIN, COMMIT
            assert round_trips(messages) == 3
        else:
            assert round_trips(messages) == 1  # a single statement is atomic on its own


def test_a_batch_with_a_taken_unique_key_stores_none_of_its_jobs(
    driver: PostgresQueueDriver,
) -> None:
    driver.enqueue(msg("held", unique_key="k"))
    with pytest.raises(DuplicateJobError):
        driver.enqueue_many([msg(1, unique_key="x"), msg(2), msg(3, unique_key="k")])
    with pytest.raises(DuplicateJobError):
        driver.enqueue_many([msg(1, unique_key="y"), msg(2, unique_key="y")])
    assert driver.pending_count() == 1


def test_a_connection_with_preparing_turned_off_is_left_so(driver: PostgresQueueDriver) -> None:
    # Behind a pooler in transaction mode (PgBouncer), prepared statements must be off.
    with psycopg.connect(dsn(), autocommit=True, prepare_threshold=None) as conn:
        bound = driver.bind(conn)
        for i in range(3):
            bound.enqueue(msg(i))
        bound.enqueue_many([msg(3), msg(4)])
        prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
        assert prepared == (0,)
    assert driver.pending_count() == 5


def test_the_drivers_own_connections_prepare_at_the_first_enqueue() -> None:
    with (
        fresh_schema() as schema,
        PostgresQueueDriver(dsn(), schema=schema, max_connections=1) as driver,
    ):
        driver.enqueue(msg(1))
        driver.enqueue_many([msg(2), msg(3)])
        # The pool's one connection ran both: a white-box look at it.
        pool = driver._connections.pool()
        conn = pool.getconn()
        try:
            rows = conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()
        finally:
            pool.putconn(conn)
    inserts = [row[0] for row in rows if row[0].startswith("INSERT INTO")]
    assert len(inserts) == 2  # one for a job, one for a batch


def test_a_batch_keeps_any_text_as_it_was(driver: PostgresQueueDriver) -> None:
    tricky = ['quote " backslash \\ newline \n tab \t', "é 😀 ü", "{}", "", "NULL", "a,b"]
    sent = [msg(t) for t in tricky]
    driver.enqueue_many(sent)
    received = driver.receive(max_messages=10)
    assert sorted(r.body for r in received) == sorted(m.encode() for m in sent)
    assert sorted(JobMessage.from_json(r.body).payload for r in received) == sorted(tricky)


def test_a_later_batch_returns_when_each_job_is_due(driver: PostgresQueueDriver) -> None:
    now = driver.enqueue_many([msg(1), msg(2)])
    later = driver.enqueue_many([msg(3), msg(4)], delay_seconds=60)
    assert [r.scheduled_at for r in now] == [None, None]
    assert all(r.scheduled_at is not None for r in later)
    assert [int(r.message_id) for r in now + later] == sorted(
        int(r.message_id) for r in now + later
    )


# -- the watchdog of the per-round-trip deadline ------------------------------------------


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_the_watchdog_shuts_a_socket_past_its_deadline_even_behind_a_longer_one() -> None:
    # The watchdog sleeps until the earliest deadline it knows of: one registered later,
    # and shorter than any before, must wake it.
    watchdog = _Watchdog()
    long_a, long_b = socket.socketpair()
    short_a, short_b = socket.socketpair()
    with long_a, long_b, short_a, short_b:
        slow = watchdog.start(long_a.fileno(), 3600)
        fast = watchdog.start(short_a.fileno(), 0.2)
        deadline = time.monotonic() + 30
        while not closed_by_peer(short_b):
            assert time.monotonic() < deadline, "the short wait was never shut"
        assert fast.expired and not slow.expired
        assert not closed_by_peer(long_b)
        watchdog.stop(fast)  # gone already: no error
        watchdog.stop(slow)


def test_the_watchdog_leaves_a_finished_wait_alone() -> None:
    watchdog = _Watchdog()
    done_a, done_b = socket.socketpair()
    later_a, later_b = socket.socketpair()
    with done_a, done_b, later_a, later_b:
        finished = watchdog.start(done_a.fileno(), 0.2)
        watchdog.stop(finished)
        # A later deadline passing shows the watchdog went past the finished wait's.
        later = watchdog.start(later_a.fileno(), 0.4)
        deadline = time.monotonic() + 30
        while not closed_by_peer(later_b):
            assert time.monotonic() < deadline, "the watchdog stopped watching"
        assert later.expired and not finished.expired
        assert not closed_by_peer(done_b)


def test_the_watchdog_thread_is_woken_only_when_parked() -> None:
    watchdog = _Watchdog()
    notified = []
    real = watchdog._changed.notify

    def counting(n: int = 1) -> None:
        notified.append(threading.current_thread().name)
        real(n)

    watchdog._changed.notify = counting  # type: ignore[method-assign]
    a, b = socket.socketpair()
    with a, b:
        first = watchdog.start(a.fileno(), 60)  # starts the thread
        watchdog.stop(first)
        for _ in range(1000):  # round trips while the thread sleeps: no wake-ups
            watchdog.stop(watchdog.start(a.fileno(), 60))
    assert len(notified) <= 1  # at most once, had the thread parked in between
