"""What only the PostgreSQL driver does, against the real server: LISTEN/NOTIFY wake-ups,
lost connections, a pool per process, settings. (The driver contract:
test_testing_contract.py; what it shares with SQLite: test_sql_drivers.py.) Each test
works in a schema of its own."""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pytest

from glasswork import define_module
from glasswork.jobs import JobContext, JobMessage, JobService, PermanentJobError, Worker, define_job
from glasswork.jobs.drivers.postgres import PostgresQueueDriver, notifications
from glasswork.jobs.errors import ConfigurationError
from pgproxy import proxy
from pgtest import connect, dsn, fresh_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


@pytest.fixture
def driver(schema: str) -> Iterator[PostgresQueueDriver]:
    with PostgresQueueDriver(dsn(), schema=schema, visibility_timeout=5) as d:
        yield d


T = TypeVar("T")


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def make(schema: str, **options: object) -> PostgresQueueDriver:
    return PostgresQueueDriver(dsn(), schema=schema, **options)  # type: ignore[arg-type]


def msg(name: str = "ping", payload: object = None, **kw: object) -> JobMessage:
    return JobMessage.create(name, payload, **kw)  # type: ignore[arg-type]


def terminate_sessions(schema: str) -> int:
    """Kill every server session of this test's drivers (as a server restart would), and wait
    until they are gone: a backend told to terminate exits when it next gets the CPU."""
    with connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database() "
            "AND (query LIKE %s OR query LIKE %s)",
            (f'%"{schema}"%', f"%glasswork:{schema}%"),
        ).fetchall()
    return len(rows)


# -- processes ---------------------------------------------------------------------------


def _enqueue_after_fork(driver: PostgresQueueDriver) -> None:
    driver.enqueue(msg(payload="child"))


@pytest.mark.subprocess
def test_a_forked_process_opens_its_own_pool(driver: PostgresQueueDriver) -> None:
    driver.enqueue(msg(payload="parent"))  # the parent's pool is open before the fork
    child = multiprocessing.get_context("fork").Process(target=_enqueue_after_fork, args=(driver,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    driver.enqueue(msg(payload="parent again"))  # the parent's connections still work
    payloads = sorted(JobMessage.from_json(r.body).payload for r in driver.receive(max_messages=5))
    assert payloads == ["child", "parent", "parent again"]


# -- wake-ups -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_commit_wakes_a_waiting_receive_without_waiting_for_the_poll(schema: str) -> None:
    with make(schema, poll_interval=60) as driver, make(schema) as producer:
        timer = threading.Timer(0.3, lambda: producer.enqueue(msg(queue="emails")))
        started = time.monotonic()
        timer.start()
        got = driver.receive(["emails"], 10, wait_seconds=30)
        assert [r.queue for r in got] == ["emails"]
        assert time.monotonic() - started < 20  # woken by NOTIFY, long before the poll
        timer.join()


@pytest.mark.slow
def test_a_notification_for_another_queue_does_not_end_the_wait(schema: str) -> None:
    with make(schema, poll_interval=60) as driver, make(schema) as producer:
        threading.Timer(0.1, lambda: producer.enqueue(msg(queue="other"))).start()
        threading.Timer(0.5, lambda: producer.enqueue(msg(queue="mine"))).start()
        got = driver.receive(["mine"], 10, wait_seconds=30)
        assert [r.queue for r in got] == ["mine"]


@pytest.mark.slow
def test_a_missed_notification_is_covered_by_the_slow_poll(schema: str) -> None:
    with make(schema, poll_interval=0.3) as driver:
        driver.receive(wait_seconds=0.01)  # listening from here on

        def insert_silently() -> None:
            with connect(autocommit=True) as conn:
                conn.execute("SET session_replication_role = replica")  # no triggers: no NOTIFY
                conn.execute(
                    f'INSERT INTO "{schema}".glasswork_jobs (queue, body) VALUES (%s, %s)',
                    ("default", msg().encode()),
                )

        threading.Timer(0.1, insert_silently).start()
        assert len(driver.receive(wait_seconds=30)) == 1


@pytest.mark.slow
def test_a_row_any_producer_inserts_wakes_a_waiting_receive(schema: str) -> None:
    with make(schema, poll_interval=60) as driver:
        driver.receive(wait_seconds=0.01)  # listening from here on

        def insert_raw() -> None:
            with connect(autocommit=True) as conn:
                conn.execute(
                    f'INSERT INTO "{schema}".glasswork_jobs (queue, body) VALUES (%s, %s)',
                    ("default", msg(payload="raw").encode()),
                )

        threading.Timer(0.2, insert_raw).start()
        started = time.monotonic()
        [got] = driver.receive(wait_seconds=30)
        assert JobMessage.from_json(got.body).payload == "raw"
        assert time.monotonic() - started < 20  # the trigger's NOTIFY, not the poll


def test_a_delayed_job_wakes_the_wait_when_it_comes_due(driver: PostgresQueueDriver) -> None:
    driver.enqueue_in(msg(), 0.3)
    driver.poll_interval = 60
    [got] = driver.receive(wait_seconds=30)
    assert got.attempt == 1


# -- text PostgreSQL cannot store ---------------------------------------------------------------


def test_a_permanent_error_whose_message_holds_nul_is_dead_lettered_once_with_its_reason(
    schema: str,
) -> None:
    # The README's own handler puts user input in the message; text columns refuse U+0000.
    runs: list[int] = []

    def refuse(payload: dict[str, str], ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        raise PermanentJobError(f"bad input: {payload['text']}")

    job = define_job(name="refuse", handler=refuse)
    with make(schema, visibility_timeout=1) as driver:
        JobService(driver).enqueue(job, {"text": "a\x00b"})
        worker = Worker(module=define_module("nul", jobs=[job]), driver=driver)
        worker.run_until_empty(timeout=10)
        [dead] = driver.dead_letters()
        # The NUL shown as Python shows it; nothing else changed.
        assert dead.reason == "PermanentJobError: bad input: a\\x00b"
        assert runs == [1]
        assert driver.pending_count() == 0


def test_a_body_whose_names_hold_nul_is_dead_lettered_and_redriven(
    driver: PostgresQueueDriver,
) -> None:
    # Any producer may insert a row: its JSON may name the job with an escaped U+0000.
    body = json.dumps({"version": 1, "jobName": "odd\x00name", "jobId": "id\x00", "payload": 1})
    driver.dead_letter(body, "unknown job", queue="default")
    [dead] = driver.dead_letters()
    assert (dead.job_name, dead.job_id, dead.body) == ("odd\\x00name", "id\\x00", body)
    assert driver.redrive() == 1
    [again] = driver.receive()
    assert again.body == body


# -- lost connections --------------------------------------------------------------------------


@pytest.mark.slow
def test_terminated_sessions_are_reconnected_and_logged(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    with make(schema, min_connections=2, poll_interval=60) as driver, make(schema) as producer:
        driver.enqueue(msg(payload=1))
        assert driver.receive(wait_seconds=1)  # pool and listener connected
        assert terminate_sessions(schema) >= 2
        caplog.set_level(logging.WARNING, logger="glasswork.postgres")
        driver.enqueue(msg(payload=2))  # calls retry on fresh connections
        [got] = driver.receive()
        assert JobMessage.from_json(got.body).payload == 2
        assert "lost the PostgreSQL connection while trying to" in caplog.text
        assert "PostgreSQL connection back after" in caplog.text
        # The listener reconnects too, and a waiting receive is woken again by NOTIFY.
        threading.Timer(1.0, lambda: producer.enqueue(msg(payload=3))).start()
        [woken] = driver.receive(wait_seconds=30)
        assert JobMessage.from_json(woken.body).payload == 3
        assert "cannot listen for new jobs" in caplog.text


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``, failing the test if it has not returned after ``seconds`` (it is left
    running in a daemon thread: a hung call must not hang the suite)."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds}s"
    if errors:
        raise errors[0]
    return results[0]


@pytest.mark.slow
def test_half_open_connections_are_closed_as_dead_and_calls_retried_on_new_ones(
    schema: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A failover that leaves the old connections open and silent (no RST, no FIN), while new
    # connections reach the server: every call is bounded, so it retries on a new one.
    monkeypatch.setattr(notifications, "HEARTBEAT", 0.5)
    with (
        proxy() as through,
        PostgresQueueDriver(
            through.dsn(),
            schema=schema,
            min_connections=2,
            poll_interval=60,
            statement_timeout=1,
            reconnect_timeout=10,
        ) as driver,
        make(schema) as producer,
    ):
        driver.enqueue(msg(payload=1))
        assert driver.receive(wait_seconds=1)  # pool and listener connected
        assert through.blackhole() >= 3
        caplog.set_level(logging.WARNING, logger="glasswork.postgres")
        within(30, lambda: driver.enqueue(msg(payload=2)))
        [got] = within(30, driver.receive)
        assert JobMessage.from_json(got.body).payload == 2
        assert "no answer from the PostgreSQL server within 3s" in caplog.text
        assert "PostgreSQL connection back after" in caplog.text
        # The listener finds its connection dead too: a waiting receive is woken by NOTIFY.
        wait_until(lambda: "cannot listen for new jobs" in caplog.text, what="the listener")
        threading.Timer(1.0, lambda: producer.enqueue(msg(payload=3))).start()
        [woken] = within(30, lambda: driver.receive(wait_seconds=20))
        assert JobMessage.from_json(woken.body).payload == 3


@pytest.mark.slow
def test_a_statement_past_statement_timeout_is_cancelled_by_the_server_and_not_retried(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An open transaction holds a unique key: the driver's enqueue of that key waits on it,
    # until the server cancels the statement; the connection was alive, so nothing retries.
    caplog.set_level(logging.WARNING, logger="glasswork.postgres")
    with make(schema, statement_timeout=1) as driver, connect() as holder:
        driver.bind(holder).enqueue(msg("welcome", unique_key="k"))  # not committed
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            within(30, lambda: driver.enqueue(msg("welcome", unique_key="k")))
        holder.rollback()
        driver.enqueue(msg("welcome", unique_key="k"))
        assert driver.pending_count() == 1
    assert "lost the PostgreSQL connection" not in caplog.text


def test_a_retried_enqueue_does_not_insert_twice(driver: PostgresQueueDriver) -> None:
    # As after a connection lost between the commit and its answer.
    message = msg("welcome", unique_key="k")
    first = driver.enqueue(message)
    calls = []

    def retrying(what: str, work):  # type: ignore[no-untyped-def]
        with driver._connections.pool().connection() as conn:
            calls.append(what)
            return work(conn, True)

    driver._connections.run = retrying  # type: ignore[method-assign]
    again = driver.enqueue(message)
    assert (again.message_id, calls) == (first.message_id, ["enqueue"])
    assert driver.pending_count() == 1


def test_a_retried_periodic_claim_recognises_its_own_win(driver: PostgresQueueDriver) -> None:
    run = driver._connections.run

    def twice(what: str, work):  # type: ignore[no-untyped-def]
        run(what, work)  # committed, but (as if) the answer was lost
        return run(what, lambda conn, _: work(conn, True))

    driver._connections.run = twice  # type: ignore[method-assign]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert driver.claim_periodic("cleanup", at)
    driver._connections.run = run  # type: ignore[method-assign]
    assert not driver.claim_periodic("cleanup", at)


def test_server_unreachable_at_construction_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot prepare the job tables") as info:
        PostgresQueueDriver("postgresql://postgres:secret@127.0.0.1:1/test")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"visibility_timeout": 0}, "visibility_timeout must be positive"),
        # Taken, these would fail every claim later ("interval out of range").
        ({"visibility_timeout": float("inf")}, "visibility_timeout must be positive"),
        ({"visibility_timeout": 1e300}, "visibility_timeout must be positive"),
        ({"poll_interval": float("nan")}, "poll_interval must be positive"),
        ({"reconnect_timeout": float("inf")}, "reconnect_timeout must be 0 or more"),
        ({"statement_timeout": float("nan")}, "statement_timeout must be 0 or more"),
        ({"statement_timeout": 1e7}, "statement_timeout must be 0 or more"),
        ({"max_lost_leases": 0}, "max_lost_leases must be at least 1"),
        ({"poll_interval": 0}, "poll_interval must be positive"),
        ({"min_connections": 3, "max_connections": 2}, "max_connections must be at least"),
        ({"schema": ""}, "schema must be 1 to 53 bytes long"),
        ({"schema": "s" * 54}, "schema must be 1 to 53 bytes long"),
    ],
)
def test_bad_settings_say_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PostgresQueueDriver(dsn(), **options)  # type: ignore[arg-type]


def test_repr_hides_the_password(schema: str) -> None:
    with_password = dsn().replace("postgres@", "postgres:secret@")
    assert "secret" in with_password
    with PostgresQueueDriver(with_password, schema=schema) as driver:
        assert driver.enqueue(msg()).message_id  # trust auth ignores the password
        shown = repr(driver)
    assert schema in shown and "127.0.0.1" in shown
    assert "secret" not in shown
