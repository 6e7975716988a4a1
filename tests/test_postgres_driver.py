"""PostgresQueueDriver against the real server: the SQLite driver's semantics, plus
SKIP LOCKED claims across processes, LISTEN/NOTIFY wake-ups and lost connections.

Each test works in a schema of its own (tests/pgtest.py)."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from glasswork.jobs import DuplicateJobError, JobMessage
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.errors import ConfigurationError
from pgtest import DSN, connect, fresh_schema


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


@pytest.fixture
def driver(schema: str) -> Iterator[PostgresQueueDriver]:
    with PostgresQueueDriver(DSN, schema=schema, visibility_timeout=5) as d:
        yield d


def make(schema: str, **options: object) -> PostgresQueueDriver:
    return PostgresQueueDriver(DSN, schema=schema, **options)  # type: ignore[arg-type]


def msg(name: str = "ping", payload: object = None, **kw: object) -> JobMessage:
    return JobMessage.create(name, payload, **kw)  # type: ignore[arg-type]


def terminate_sessions(schema: str) -> int:
    """Kill every server session of this test's drivers (as a server restart would)."""
    with connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database() "
            "AND (query LIKE %s OR query LIKE %s)",
            (f'%"{schema}"%', f"%glasswork:{schema}%"),
        ).fetchall()
    return len(rows)


# -- the queue ------------------------------------------------------------------------------


def test_receive_claims_oldest_first_and_counts_attempts(driver: PostgresQueueDriver) -> None:
    ids = [driver.enqueue(msg(payload=i)).message_id for i in range(3)]
    got = driver.receive(max_messages=2)
    assert [r.message_id for r in got] == ids[:2]
    assert all(r.attempt == 1 and r.queue == "default" for r in got)
    assert [JobMessage.from_json(r.body).payload for r in got] == [0, 1]
    # Claimed jobs are invisible until their lease ends.
    assert [r.message_id for r in driver.receive(max_messages=5)] == ids[2:]
    assert driver.receive() == []


def test_ack_removes_and_nack_redelivers_after_delay(driver: PostgresQueueDriver) -> None:
    driver.enqueue(msg(payload="a"))
    driver.enqueue(msg(payload="b"))
    first, second = driver.receive(max_messages=2)
    driver.ack(first)
    driver.nack(second, delay_seconds=0.3)
    assert driver.receive() == []
    assert driver.stats()["default"].delayed == 1
    [again] = driver.receive(wait_seconds=5)
    assert again.message_id == second.message_id
    assert again.attempt == 2
    driver.ack_many([again])
    assert driver.pending_count() == 0


def test_expired_lease_is_delivered_again_and_the_stale_holder_cannot_settle_it(
    schema: str,
) -> None:
    with make(schema, visibility_timeout=0.2) as driver:
        driver.enqueue(msg())
        [first] = driver.receive()
        assert driver.receive() == []
        [second] = driver.receive(wait_seconds=5)
        assert second.attempt == 2
        # The first holder's lease is gone: its late ack, release or extension must not touch
        # the new delivery.
        driver.ack(first)
        driver.nack(first)
        assert driver.extend_leases([first], 60) == 0
        assert driver.stats()["default"].in_flight == 1
        driver.ack(second)
        assert driver.stats() == {}


def test_job_whose_lease_keeps_running_out_is_dead_lettered(schema: str) -> None:
    with make(schema, visibility_timeout=0.05, max_lost_leases=2) as driver:
        driver.enqueue(msg("crashy", queue="q"))
        for _ in range(2):
            assert driver.receive(wait_seconds=5)
            time.sleep(0.06)
        assert driver.receive() == []
        [dead] = driver.dead_letters()
        assert (dead.job_name, dead.queue) == ("crashy", "q")
        assert dead.reason.startswith("delivered 3 times; 2 times its lease (0.05s) ran out")
        assert "died or stalled" in dead.reason
        assert driver.pending_count() == 0


def test_extend_leases_keeps_a_long_job_hidden(schema: str) -> None:
    with make(schema, visibility_timeout=0.3) as driver:
        driver.enqueue(msg())
        [held] = driver.receive()
        assert driver.extend_leases([held], 2) == 1
        time.sleep(0.4)
        assert driver.receive() == []
        driver.ack(held)
        assert driver.extend_leases([held], 2) == 0


def test_delays_of_any_length(driver: PostgresQueueDriver) -> None:
    far = driver.enqueue_in(msg(), 3 * 86400)
    soon = driver.enqueue_at(msg(), datetime.now(UTC) + timedelta(seconds=0.3))
    past = driver.enqueue_at(msg(), datetime.now(UTC) - timedelta(days=1))
    assert far.scheduled_at is not None
    assert far.scheduled_at > datetime.now(UTC) + timedelta(days=2)
    assert soon.scheduled_at is not None
    assert past.scheduled_at is None
    assert [r.message_id for r in driver.receive()] == [past.message_id]
    [got] = driver.receive(wait_seconds=5)
    assert got.message_id == soon.message_id
    assert driver.stats()["default"].delayed == 1


def test_receive_filters_queues_and_waits_its_time(driver: PostgresQueueDriver) -> None:
    driver.enqueue(msg(queue="emails"))
    driver.enqueue(msg(queue="reports"))
    assert [r.queue for r in driver.receive(["emails"], 10)] == ["emails"]
    assert [r.queue for r in driver.receive(None, 10)] == ["reports"]
    started = time.monotonic()
    assert driver.receive(["emails"], 10, wait_seconds=0.3) == []
    assert time.monotonic() - started >= 0.29
    assert driver.receive(max_messages=0) == []


def test_receive_serves_every_queue_even_when_one_is_busy(driver: PostgresQueueDriver) -> None:
    driver.enqueue_many([msg(queue="busy") for _ in range(50)])
    driver.enqueue(msg(queue="quiet"))
    assert {r.queue for _ in range(2) for r in driver.receive(max_messages=5)} == {"busy", "quiet"}
    driver.enqueue(msg(queue="quiet"))
    listed = {r.queue for _ in range(2) for r in driver.receive(["busy", "quiet"], 5)}
    assert listed == {"busy", "quiet"}


# -- unique keys and batches ---------------------------------------------------------------


def test_unique_key_is_refused_while_pending_and_free_after_ack(
    driver: PostgresQueueDriver,
) -> None:
    first = driver.enqueue(msg("welcome", unique_key="u1"))
    driver.enqueue(msg("other-job", unique_key="u1"))  # keys are per job name
    with pytest.raises(DuplicateJobError) as refused:
        driver.enqueue(msg("welcome", unique_key="u1"))
    assert refused.value.existing_job_id == first.job_id
    with pytest.raises(DuplicateJobError):  # delayed or not
        driver.enqueue_in(msg("welcome", unique_key="u1"), 60)
    [claimed] = driver.receive(["default"], 1)
    with pytest.raises(DuplicateJobError):  # still pending while in flight
        driver.enqueue(msg("welcome", unique_key="u1"))
    driver.ack(claimed)
    driver.enqueue(msg("welcome", unique_key="u1"))


def test_unique_key_race_between_threads_admits_exactly_one(driver: PostgresQueueDriver) -> None:
    accepted, refused = [], []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            accepted.append(driver.enqueue(msg("welcome", unique_key="same")))
        except DuplicateJobError:
            refused.append(1)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(accepted), len(refused)) == (1, 7)
    assert driver.pending_count() == 1


def test_enqueue_many_is_one_statement_and_all_or_nothing(driver: PostgresQueueDriver) -> None:
    results = driver.enqueue_many([msg(payload=i) for i in range(100)])
    assert len({r.message_id for r in results}) == 100
    assert [JobMessage.from_json(r.body).payload for r in driver.receive(max_messages=3)] == [
        0,
        1,
        2,
    ]
    driver.enqueue(msg("welcome", unique_key="taken"))
    batch = [msg("welcome", unique_key="new"), msg("welcome", unique_key="taken")]
    with pytest.raises(DuplicateJobError, match="taken"):
        driver.enqueue_many(batch)
    assert driver.pending_count() == 101
    with pytest.raises(DuplicateJobError, match="twice"):
        driver.enqueue_many([msg("welcome", unique_key="twice")] * 2)
    assert driver.pending_count() == 101
    delayed = driver.enqueue_many([msg(), msg()], delay_seconds=60)
    assert all(r.scheduled_at is not None for r in delayed)
    assert driver.enqueue_many([]) == []


# -- dead letters, stats, periodic -----------------------------------------------------------


def test_dead_letters_keep_body_reason_and_time_and_redrive(
    driver: PostgresQueueDriver,
) -> None:
    good = msg("welcome", {"user_id": "1"}, queue="emails", unique_key="1")
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert driver.dead_letter(good.encode(), "PermanentJobError: nope", queue="emails")
    assert driver.dead_letter("not json", "MalformedMessageError: bad", queue="emails")
    first, second = driver.dead_letters()
    assert (first.job_name, first.job_id, first.queue) == ("welcome", good.job_id, "emails")
    assert first.reason == "PermanentJobError: nope"
    assert first.failed_at is not None and first.failed_at >= before
    assert second.job_name is None
    assert driver.stats()["emails"].dead == 2
    assert driver.dead_letters(queue="other") == []
    assert len(driver.dead_letters(limit=1)) == 1

    driver.enqueue(msg("welcome", unique_key="1"))  # holds the key: redrive must skip it
    assert driver.redrive([first.id]) == 0
    [holder] = driver.receive(["default"], 1)
    driver.ack(holder)
    assert driver.redrive([first.id]) == 1
    [again] = driver.receive(["emails"], 5)
    assert again.body == good.encode()
    assert again.attempt == 1
    assert driver.redrive([]) == 0
    assert driver.redrive(queue="emails") == 1  # the malformed one, back on its queue
    assert [r.body for r in driver.receive(["emails"], 5)] == ["not json"]
    driver.dead_letter("x", "bad")
    driver.dead_letter("y", "bad")
    one, _ = driver.dead_letters()
    assert driver.purge_dead_letters([one.id]) == 1
    assert driver.purge_dead_letters() == 1
    assert driver.dead_letters() == []
    with pytest.raises(ConfigurationError, match="ids are numbers"):
        driver.purge_dead_letters(["abc"])


def test_stats_per_queue(driver: PostgresQueueDriver) -> None:
    driver.enqueue(msg(queue="a"))
    driver.enqueue(msg(queue="a"))
    driver.enqueue_in(msg(queue="a"), 60)
    driver.enqueue(msg(queue="b"))
    driver.receive(["a"], 1)
    driver.dead_letter("x", "bad", queue="b")
    driver.dead_letter("y", "bad")
    stats = driver.stats()
    assert (stats["a"].ready, stats["a"].delayed, stats["a"].in_flight) == (1, 1, 1)
    assert (stats["b"].ready, stats["b"].dead, stats["b"].pending) == (1, 1, 1)
    assert stats["default"].dead == 1
    assert driver.pending_count() == 4
    assert driver.pending_count(["a"]) == 3


def test_claim_periodic_fires_once_per_time_across_drivers(
    driver: PostgresQueueDriver, schema: str
) -> None:
    at = datetime(2026, 1, 1, 3, tzinfo=UTC)
    with make(schema) as other:
        assert driver.claim_periodic("cleanup", at)
        assert not other.claim_periodic("cleanup", at)
        assert not driver.claim_periodic("cleanup", at)
        assert other.claim_periodic("other", at)
        assert other.claim_periodic("cleanup", at + timedelta(minutes=5))
        assert not driver.claim_periodic("cleanup", at)  # an older fire never wins


# -- many processes ---------------------------------------------------------------------------


def _claim_all(schema: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    with PostgresQueueDriver(DSN, schema=schema, visibility_timeout=60) as driver:
        claimed = []
        while batch := driver.receive(max_messages=7):
            claimed.extend(r.message_id for r in batch)
    out.put(claimed)


def test_processes_claiming_one_queue_never_share_a_job(
    driver: PostgresQueueDriver, schema: str
) -> None:
    driver.enqueue_many([msg(payload=i) for i in range(2000)])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(schema, out)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    every = [m for part in claimed for m in part]
    assert len(every) == len(set(every)) == 2000


def _enqueue_after_fork(driver: PostgresQueueDriver) -> None:
    driver.enqueue(msg(payload="child"))


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


def test_a_commit_wakes_a_waiting_receive_without_waiting_for_the_poll(schema: str) -> None:
    with make(schema, poll_interval=60) as driver, make(schema) as producer:
        timer = threading.Timer(0.3, lambda: producer.enqueue(msg(queue="emails")))
        started = time.monotonic()
        timer.start()
        got = driver.receive(["emails"], 10, wait_seconds=30)
        assert [r.queue for r in got] == ["emails"]
        assert time.monotonic() - started < 20  # woken by NOTIFY, long before the poll
        timer.join()


def test_a_notification_for_another_queue_does_not_end_the_wait(schema: str) -> None:
    with make(schema, poll_interval=60) as driver, make(schema) as producer:
        threading.Timer(0.1, lambda: producer.enqueue(msg(queue="other"))).start()
        threading.Timer(0.5, lambda: producer.enqueue(msg(queue="mine"))).start()
        got = driver.receive(["mine"], 10, wait_seconds=30)
        assert [r.queue for r in got] == ["mine"]


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


# -- lost connections --------------------------------------------------------------------------


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
        ({"max_lost_leases": 0}, "max_lost_leases must be at least 1"),
        ({"poll_interval": 0}, "poll_interval must be positive"),
        ({"min_connections": 3, "max_connections": 2}, "max_connections must be at least"),
        ({"schema": ""}, "schema must be 1 to 63 characters"),
    ],
)
def test_bad_settings_say_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PostgresQueueDriver(DSN, **options)  # type: ignore[arg-type]


def test_repr_hides_the_password(schema: str) -> None:
    with_password = DSN.replace("postgres@", "postgres:secret@")
    assert "secret" in with_password
    with PostgresQueueDriver(with_password, schema=schema) as driver:
        assert driver.enqueue(msg()).message_id  # trust auth ignores the password
        shown = repr(driver)
    assert schema in shown and "127.0.0.1" in shown
    assert "secret" not in shown
