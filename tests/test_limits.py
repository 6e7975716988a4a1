"""Flow limits (issue 21): ``define_job(rate_limit=...)`` and ``concurrency_limit=`` with a
``concurrency_key``, held across workers by the SQLite, PostgreSQL and mock drivers, refused
loudly where they cannot be held.

The driver-level tests call :meth:`FlowLimits.acquire` on real deliveries, and claim through
:meth:`ClaimLimits.limited_claims` (SQLite and PostgreSQL take limits inside the claim); the
worker tests run real workers (in-process, and ``glasswork worker`` processes sharing one
queue) whose handlers record when each run started. The contract suite
(``TestFlowLimits``, ``TestClaimLimits``) holds each driver to the groups' basics.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fixtures_app.limited import paced, per_tenant
from glasswork import define_module
from glasswork.jobs import (
    ConfigurationError,
    JobMessage,
    JobService,
    MockQueueDriver,
    QueueDriver,
    Worker,
    bootstrap_worker,
    define_job,
)
from glasswork.jobs.drivers.contract import Consuming, capabilities_of
from glasswork.jobs.drivers.postgres import SCHEMA_VERSION, PostgresQueueDriver
from glasswork.jobs.drivers.records import EnqueueResult, ReceivedMessage
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.limits import JobLimits, RateLimit, slot_key
from glasswork.jobs.metrics import EMFMetrics, PrometheusMetrics
from integration.test_worker_processes import COMMAND, TESTS, wait_until
from pgtest import dsn, fresh_schema, url

LIMITED = "fixtures_app.limited:LimitedModule"

# -- definitions and the envelope ------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "count", "window"),
    [("5/s", 5, 1.0), ("100/m", 100, 60.0), ("1000/h", 1000, 3600.0), (" 7 / minute ", 7, 60.0)],
)
def test_rate_limits_are_read_per_second_minute_or_hour(
    written: str, count: int, window: float
) -> None:
    job = define_job(name="j", handler=lambda: None, rate_limit=written)
    assert job.rate_limit == RateLimit(count, window)
    assert job.limits == JobLimits(RateLimit(count, window), None)


@pytest.mark.parametrize("bad", ["100", "0/s", "-1/s", "10/d", "ten/s", "1.5/s", 10, "10/5s"])
def test_a_rate_limit_in_another_form_is_refused_naming_the_job_and_the_forms(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"job 'mail': rate_limit must be .*'100/m'"):
        define_job(name="mail", handler=lambda: None, rate_limit=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_concurrency_limit_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="job 'j': concurrency_limit must be a positive"):
        define_job(name="j", handler=lambda: None, concurrency_limit=bad)  # type: ignore[arg-type]


def test_a_concurrency_key_needs_a_limit_and_must_be_a_function() -> None:
    with pytest.raises(ConfigurationError, match="concurrency_key needs a concurrency_limit"):
        define_job(name="j", handler=lambda: None, concurrency_key=lambda p: p)
    with pytest.raises(ConfigurationError, match="concurrency_key must be a function"):
        define_job(name="j", handler=lambda: None, concurrency_limit=1, concurrency_key="t")  # type: ignore[arg-type]


def test_a_job_without_limits_has_none_to_check() -> None:
    assert define_job(name="j", handler=lambda: None).limits is None


def test_the_concurrency_key_is_computed_at_enqueue_and_travels_in_the_envelope() -> None:
    driver = MockQueueDriver()
    jobs = JobService(driver)
    jobs.enqueue(per_tenant, {"key": "a", "tenant": 42})
    jobs.enqueue(paced, {"key": "b"})
    keyed, plain = driver.jobs
    assert keyed.concurrency_key == "42"
    assert '"concurrencyKey":"42"' in keyed.encode()
    assert plain.concurrency_key is None and "concurrencyKey" not in plain.encode()
    assert JobMessage.from_json(keyed.encode()).concurrency_key == "42"


# -- the drivers' acquire --------------------------------------------------------------------

Opener = Callable[..., Any]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "mock"])
def open_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the driver under test (``lease``: its visibility timeout, where it has one)."""
    opened: list[Any] = []
    kind = request.param
    with fresh_schema("gwl") if kind == "postgresql" else _nothing() as schema:

        def open_(lease: float = 30.0) -> Any:
            if kind == "sqlite":
                driver: Any = SQLiteQueueDriver(tmp_path / "q.db", visibility_timeout=lease)
            elif kind == "postgresql":
                driver = PostgresQueueDriver(dsn(), schema=schema, visibility_timeout=lease)
            else:
                driver = MockQueueDriver()
            opened.append(driver)
            return driver

        open_.kind = kind  # type: ignore[attr-defined]
        yield open_
        for driver in opened:
            if hasattr(driver, "close"):
                driver.close()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _claim(driver: Any, n: int) -> list[ReceivedMessage]:
    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        got += driver.receive(max_messages=n - len(got))
    assert len(got) == n
    return got


def _enqueue(driver: Any, name: str, n: int, key: str | None = None) -> None:
    driver.enqueue_many([JobMessage.create(name, {"i": i}, concurrency_key=key) for i in range(n)])


def test_every_driver_that_holds_limits_says_so_through_capabilities_of(
    open_driver: Opener,
) -> None:
    assert capabilities_of(open_driver()).flow_limits is not None


def test_a_rate_limit_lets_count_starts_through_then_puts_the_rest_back_unspent(
    open_driver: Opener,
) -> None:
    driver = open_driver()
    _enqueue(driver, "paced", 5)
    limits = JobLimits(RateLimit(3, 1.0), None)
    deliveries = _claim(driver, 5)
    waits = [driver.acquire(r, "paced", None, limits) for r in deliveries]
    assert waits[:3] == [None, None, None]
    assert all(w is not None and 0 < w <= 1.0 for w in waits[3:])
    assert driver.receive(max_messages=10) == []  # put back for later, not due yet
    for r in deliveries[:3]:
        driver.ack(r)
    again = wait_until(lambda: driver.receive(max_messages=10), timeout=5, what="the put back")
    # Held back twice over is still the first attempt: a throttle is never an attempt.
    assert {r.attempt for r in again} == {1}


def test_no_window_of_the_rate_holds_more_starts_than_the_limit(open_driver: Opener) -> None:
    driver = open_driver()
    _enqueue(driver, "paced", 12)
    limits = JobLimits(RateLimit(4, 0.5), None)
    # Each start was granted between the call and its answer (the driver's clock, as
    # PostgreSQL's, may be read a round trip away): (before, after) of each granted call.
    granted: list[tuple[float, float]] = []
    deadline = time.monotonic() + 15
    while len(granted) < 12 and time.monotonic() < deadline:
        for r in driver.receive(max_messages=12):
            before = time.time()
            if driver.acquire(r, "paced", None, limits) is None:
                granted.append((before, time.time()))
                driver.ack(r)
        time.sleep(0.01)  # a poll's pause, not a wait for the condition
    assert len(granted) == 12
    # Five starts in one window of 0.5 s are certain when the fifth call answered less than
    # 0.5 s after the first was made: that never happens.
    for first, fifth in zip(granted, granted[4:], strict=False):
        assert fifth[1] - first[0] >= 0.5
    # ... and the limit is used, not only held: 12 starts at 4 per 0.5 s take about 1 s.
    assert granted[-1][1] - granted[0][0] < 1.0 + 1.0


def test_concurrency_is_counted_per_key_and_a_settled_delivery_frees_its_slot(
    open_driver: Opener,
) -> None:
    driver = open_driver()
    _enqueue(driver, "per_tenant", 3, key="a")
    _enqueue(driver, "per_tenant", 1, key="b")
    limits = JobLimits(None, 2)
    deliveries = _claim(driver, 4)
    by_key = {key: [r for r in deliveries if f'"concurrencyKey":"{key}"' in r.body] for key in "ab"}
    first, second, third = by_key["a"]
    assert driver.acquire(first, "per_tenant", "a", limits) is None
    assert driver.acquire(second, "per_tenant", "a", limits) is None
    assert driver.acquire(third, "per_tenant", "a", limits) is not None  # a third of "a"
    assert driver.acquire(by_key["b"][0], "per_tenant", "b", limits) is None
    driver.ack(first)
    [back] = wait_until(lambda: driver.receive(max_messages=10), timeout=5, what="the third")
    assert back.attempt == 1
    assert driver.acquire(back, "per_tenant", "a", limits) is None


def test_a_slot_whose_lease_ran_out_is_free_again(open_driver: Opener) -> None:
    if open_driver.kind == "mock":  # type: ignore[attr-defined]
        pytest.skip("the mock's deliveries have no lease to run out")
    driver = open_driver(lease=0.5)
    limits = JobLimits(None, 1)
    _enqueue(driver, "per_tenant", 1, key="a")
    [holder] = _claim(driver, 1)
    assert driver.acquire(holder, "per_tenant", "a", limits) is None
    _enqueue(driver, "per_tenant", 1, key="a")
    [waiter] = _claim(driver, 1)
    assert driver.acquire(waiter, "per_tenant", "a", limits) is not None
    started = time.monotonic()

    def one_starts() -> bool:
        # Nothing extends the holder's lease (its worker is gone): once it has run out,
        # a delivery of the key (the waiter, or the holder's job again) gets the slot.
        return any(
            driver.acquire(r, "per_tenant", "a", limits) is None
            for r in driver.receive(max_messages=2)
        )

    wait_until(one_starts, timeout=5, what="the slot to come free")
    assert time.monotonic() - started < 0.5 + 1.0


# -- the claim holding limits (SQLite and PostgreSQL) -----------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def open_sql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens SQL drivers onto one store (each with connections of its own)."""
    opened: list[Any] = []
    kind = request.param
    with fresh_schema("gwlc") if kind == "postgresql" else _nothing() as schema:

        def open_(lease: float = 30.0) -> Any:
            if kind == "sqlite":
                driver: Any = SQLiteQueueDriver(tmp_path / "q.db", visibility_timeout=lease)
            else:
                driver = PostgresQueueDriver(dsn(), schema=schema, visibility_timeout=lease)
            opened.append(driver)
            return driver

        open_.kind = kind  # type: ignore[attr-defined]
        yield open_
        for driver in opened:
            driver.close()


def _race(
    open_sql: Opener, limits: dict[str, JobLimits], hold: float, rounds: float
) -> list[tuple[float, float]]:
    """Three claimers, each on a driver of its own, claiming and acking deliveries of the
    limited jobs until ``rounds`` seconds have passed (each held ``hold`` seconds): for each
    delivery admitted, from when the claim returned to when its ack began (its slot and its
    start are certainly held then), and when its claim began."""
    drivers = [open_sql() for _ in range(3)]
    spans: list[tuple[float, float]] = []
    starts: list[tuple[float, float]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer(driver: Any) -> None:
        claims = driver.limited_claims(limits)
        end = time.monotonic() + rounds
        try:
            while time.monotonic() < end:
                before = time.time()
                batch = claims.claim(None, 3, 0.0, 3)
                after = time.time()
                time.sleep(hold)
                acked = time.time()
                driver.ack_many(batch.received)
                with lock:
                    for _ in batch.received:
                        spans.append((after, acked))
                        starts.append((before, after))
                if not batch.received:
                    time.sleep(0.005)  # a poll's pause
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(d,)) for d in drivers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    return spans if hold else starts


def test_claims_racing_on_three_connections_never_start_more_than_the_rate_in_any_window(
    open_sql: Opener,
) -> None:
    _enqueue(open_sql(), "paced", 40)
    granted = sorted(_race(open_sql, {"paced": JobLimits(RateLimit(4, 0.5), None)}, 0.0, 2.0))
    assert len(granted) >= 12
    # Each start was granted between its claim's call and answer: five in one window are
    # certain when the fifth answer came less than 0.5 s after the first call. Never.
    for first, fifth in zip(granted, granted[4:], strict=False):
        assert fifth[1] - first[0] >= 0.5


def test_claims_racing_on_three_connections_never_run_more_than_the_slots_of_a_key(
    open_sql: Opener,
) -> None:
    driver = open_sql()
    _enqueue(driver, "per_tenant", 30, key="a")
    _enqueue(driver, "per_tenant", 10, key="b")
    held = _race(open_sql, {"per_tenant": JobLimits(None, 2)}, 0.03, 2.0)
    assert len(held) >= 10
    running = most_running_at_once([{"started": a, "finished": b} for a, b in held])
    assert running <= 2 * 2  # two slots for each of the two keys
    counts = driver.throttle_counts()
    assert counts["per_tenant"] > 0


def test_a_claim_admits_limited_jobs_first_and_no_more_than_asked_leaving_the_rest_due(
    open_sql: Opener,
) -> None:
    driver = open_sql()
    _enqueue(driver, "free", 3)
    _enqueue(driver, "paced", 3)
    claims = driver.limited_claims({"paced": JobLimits(RateLimit(100, 1.0), None)})
    batch = claims.claim(None, 10, 0.0, 2)
    names = [JobMessage.from_json(r.body).job_name for r in batch.received]
    assert batch.limited == 2
    assert names == ["paced", "paced", "free", "free", "free"]
    assert batch.throttled == {}
    [left] = driver.receive(max_messages=10)  # never claimed: its first attempt, due now
    assert left.attempt == 1


def test_claims_and_acquire_count_the_same_slots_and_starts(open_sql: Opener) -> None:
    driver = open_sql()
    odd = "refund#partial"  # a name holding the separator of scoped keys
    _enqueue(driver, odd, 2, key="o-17")
    claims = driver.limited_claims({odd: JobLimits(RateLimit(3, 60.0), 1)})
    assert claims.claim(None, 1, 0.0, 1).limited == 1  # takes the slot and one start
    [other] = driver.receive(max_messages=1)
    assert driver.acquire(other, odd, "o-17", JobLimits(RateLimit(3, 60.0), 1)) is not None
    _enqueue(driver, "paced", 2)
    rate = JobLimits(RateLimit(1, 60.0), None)
    [first] = driver.receive(max_messages=1)
    assert driver.acquire(first, "paced", None, rate) is None
    paced = driver.limited_claims({"paced": rate})
    assert paced.claim(None, 5, 0.0, 5).throttled == {("paced", "default"): 1}
    assert driver.throttle_counts() == {odd: 1, "paced": 1}


def test_a_concurrency_key_of_any_length_is_held_alike_by_claims_and_acquire(
    open_sql: Opener,
) -> None:
    driver = open_sql()
    # Longer than an index entry may be (PostgreSQL: about 2,700 bytes), and not compressible.
    long_key = "".join(f"{n:x}{os.urandom(8).hex()}" for n in range(300))
    limits = JobLimits(None, 1)
    _enqueue(driver, "per_tenant", 2, key=long_key)
    claims = driver.limited_claims({"per_tenant": limits})
    assert claims.claim(None, 1, 0.0, 1).limited == 1
    [other] = driver.receive(max_messages=1)
    assert driver.acquire(other, "per_tenant", long_key, limits) is not None  # the same slot
    assert slot_key("per_tenant", long_key).startswith("per_tenant#sha256:")


def test_a_limited_row_whose_body_is_not_json_does_not_fail_the_claim(open_sql: Opener) -> None:
    driver = open_sql()
    _enqueue(driver, "per_tenant", 1, key="a")
    _insert_raw(driver, "per_tenant", "{not json")
    claims = driver.limited_claims({"per_tenant": JobLimits(None, 1)})
    batch = claims.claim(None, 10, 0.0, 10)
    # Unreadable, it has no key: its own slot (""), so both run; the worker dead-letters it.
    assert sorted(r.body[:5] for r in batch.received) == ['{"ver', "{not "]
    assert batch.limited == 2


def test_a_backlog_held_back_by_its_rate_comes_due_spread_over_the_next_windows(
    open_sql: Opener,
) -> None:
    driver = open_sql()
    _enqueue(driver, "paced", 7)
    claims = driver.limited_claims({"paced": JobLimits(RateLimit(2, 10.0), None)})
    before = time.time()
    batch = claims.claim(None, 10, 0.0, 10)
    assert batch.limited == 2
    assert batch.throttled == {("paced", "default"): 5}
    due = sorted(t - before for t in _waiting_due_times(driver))
    # Two per window, as they may start: the next window's two, then two more, then one;
    # never the five at once.
    assert len(due) == 5
    assert [round(t / 10) for t in due] == [1, 1, 2, 2, 3]


def _waiting_due_times(driver: Any) -> list[float]:
    """When the rows not leased come due (Unix time)."""
    if isinstance(driver, SQLiteQueueDriver):
        rows = driver._conn().execute("SELECT visible_at FROM glasswork_jobs WHERE leased = 0")
        return [float(t) for (t,) in rows]
    from pgtest import connect

    with connect() as conn:
        rows = conn.execute(
            "SELECT EXTRACT(EPOCH FROM visible_at)::float8 "
            f'FROM "{driver.schema}".glasswork_jobs WHERE NOT leased'
        ).fetchall()
    return [float(t) for (t,) in rows]


def test_a_corrupt_row_of_a_limited_job_is_dead_lettered_not_failing_the_claim(
    tmp_path: Path,
) -> None:
    driver = SQLiteQueueDriver(tmp_path / "q.db")
    try:
        _enqueue(driver, "per_tenant", 1, key="a")
        with driver._transaction() as conn:
            conn.execute(
                "INSERT INTO glasswork_jobs (queue, job_name, body, visible_at, enqueued_at) "
                "VALUES ('default', 'per_tenant', ?, 0, 0)",
                (b'{"concurrencyKey": "a", "x": "\xff"}',),
            )
        claims = driver.limited_claims({"per_tenant": JobLimits(None, 1)})
        batch = claims.claim(None, 10, 0.0, 10)
        assert [r.body[:5] for r in batch.received] == ['{"ver']
        [dead] = driver.dead_letters()
        assert "the row is corrupt" in dead.reason
    finally:
        driver.close()


def _insert_raw(driver: Any, job_name: str, body: str) -> None:
    if isinstance(driver, SQLiteQueueDriver):
        with driver._transaction() as conn:
            conn.execute(
                "INSERT INTO glasswork_jobs (queue, job_name, body, visible_at, enqueued_at) "
                "VALUES ('default', ?, ?, 0, 0)",
                (job_name, body),
            )
        return
    from pgtest import connect

    with connect(autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{driver.schema}".glasswork_jobs (queue, job_name, body) '
            "VALUES ('default', %s, %s)",
            (job_name, body),
        )


def test_a_claim_ends_a_cancelled_limited_job_without_it_taking_a_slot(open_sql: Opener) -> None:
    driver = open_sql(lease=0.5)
    claims = driver.limited_claims({"per_tenant": JobLimits(None, 1)})
    message = JobMessage.create("per_tenant", {}, concurrency_key="a")
    driver.enqueue(message)
    assert claims.claim(None, 10, 0.0, 10).limited == 1  # its worker dies holding it ...
    assert driver.cancel(message.job_id)  # ... asked to stop meanwhile
    wait_until(lambda: driver.stats()["default"].ready == 1, what="its lease to run out")
    other = JobMessage.create("per_tenant", {}, concurrency_key="a")
    driver.enqueue(other)
    # One claim finds both: the cancelled one ends there, and takes no slot from the other.
    batch = claims.claim(None, 10, 0.0, 10)
    assert [JobMessage.from_json(r.body).job_id for r in batch.received] == [other.job_id]
    assert batch.throttled == {}
    assert driver.job_status(message.job_id).state == "cancelled"


# -- refusing what cannot be held ------------------------------------------------------------


class NoLimitsDriver(QueueDriver, Consuming):
    """A driver written against the contract without FlowLimits (as SQS is, for now)."""

    name = "nolimits"

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        raise NotImplementedError

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        raise NotImplementedError

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        return []

    def ack(self, received: ReceivedMessage) -> None:
        return None

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        return None


def test_a_worker_on_a_driver_that_cannot_hold_limits_refuses_to_start() -> None:
    module = define_module(name="m", jobs=[paced])
    with pytest.raises(
        ConfigurationError,
        match=r"job 'paced' has rate_limit='10/s', but the nolimits driver cannot hold .*"
        r"FlowLimits",
    ):
        Worker(module=module, driver=NoLimitsDriver())


def test_the_lambda_handler_refuses_limited_jobs_rather_than_run_them_unlimited() -> None:
    module = define_module(name="m", jobs=[per_tenant])
    with pytest.raises(
        ConfigurationError, match=r"job 'per_tenant' has concurrency_limit=2, but the Lambda"
    ):
        bootstrap_worker(module=module, driver=MockQueueDriver())


def test_jobs_without_limits_run_on_any_driver_as_before() -> None:
    module = define_module(name="m", jobs=[define_job(name="free", handler=lambda: None)])
    Worker(module=module, driver=NoLimitsDriver())
    bootstrap_worker(module=module, driver=MockQueueDriver())


# -- in a worker -----------------------------------------------------------------------------


def most_in_any_window(starts: Sequence[float], window: float) -> int:
    """The most starts any half-open window of ``window`` seconds holds."""
    ordered = sorted(starts)
    most, low = 0, 0
    for high, t in enumerate(ordered):
        while ordered[low] <= t - window:
            low += 1
        most = max(most, high - low + 1)
    return most


@pytest.mark.parametrize("way", ["in the claim", "through acquire"])
def test_a_worker_holds_a_rate_limit_and_never_spends_attempts_on_throttles(
    open_driver: Opener, way: str
) -> None:
    driver = open_driver()
    if way == "through acquire":
        if capabilities_of(driver).claim_limits is None:
            pytest.skip("the driver takes limits only through acquire: the other case")
        driver.limited_claims = None  # opted out: the worker asks acquire() per start
    assert (capabilities_of(driver).claim_limits is None) == (
        way == "through acquire" or open_driver.kind == "mock"  # type: ignore[attr-defined]
    )
    starts: list[tuple[float, int]] = []
    lock = threading.Lock()

    def handler(payload: Any, ctx: Any) -> None:
        with lock:
            starts.append((time.time(), ctx.attempt))

    # One attempt only: a throttle counted as an attempt would dead-letter the job.
    job = define_job(name="paced", handler=handler, rate_limit="4/s", retry=False)
    jobs = JobService(driver)
    jobs.enqueue_many(job, [{"i": i} for i in range(10)])
    prometheus, lines = PrometheusMetrics(), []
    worker = Worker(
        module=define_module(name="m", jobs=[job]),
        driver=driver,
        concurrency=4,
        install_signal_handlers=False,
        poll_interval=0.01,
        metrics=[prometheus, EMFMetrics(write=lines.append)],
    )
    ran: list[Any] = []
    thread = threading.Thread(target=lambda: ran.append(worker.run()))
    thread.start()
    try:
        wait_until(lambda: len(starts) == 10, timeout=30, what="every job to start")
        wait_until(lambda: worker.summary.done == 10, timeout=10, what="every job to settle")
    finally:
        worker.stop()
        thread.join(30)
    [summary] = ran
    assert summary.done == 10 and summary.dead_lettered == 0
    assert summary.throttled > 0 and "throttled=" in str(summary)
    # Counted for Prometheus and CloudWatch too, as held back, not as runs.
    throttled = prometheus.registry.get_sample_value(
        "glasswork_jobs_throttled_total", {"job": "paced", "queue": "default"}
    )
    assert throttled == summary.throttled
    emf = [json.loads(line) for line in lines]
    assert sum(d.get("Throttled", 0) for d in emf) == summary.throttled
    assert sum(d.get("JobsDone", 0) for d in emf) == 10
    assert {attempt for _, attempt in starts} == {1}
    # The handlers' own clock readings, a dispatch after the driver counted the start: a
    # fifth of the window allows for that (a bucket refilling on top would start 7 here).
    assert most_in_any_window([t for t, _ in starts], 0.8) <= 4
    if isinstance(driver, MockQueueDriver):
        assert driver.dead_letters == []
    assert driver.throttle_counts() == {"paced": summary.throttled}


def test_deliveries_of_limited_jobs_go_ahead_of_every_job_waiting_for_a_thread() -> None:
    from glasswork.jobs.worker.handoff import Handoff
    from glasswork.jobs.worker.slots import Held

    def held(name: str) -> Held:
        return Held(ReceivedMessage(name, name, 1, "default", name), 0.0)

    handoff = Handoff(2, counted=False)
    handoff.put([held("waiting-1"), held("waiting-2")], 0.001)
    handoff.put([held("limited-1"), held("limited-2"), held("free")], 0.001, starting=2)
    order = [handoff.take(block=False) for _ in range(5)]
    assert [h.received.body for h in order if h is not None] == [
        "limited-1",
        "limited-2",
        "waiting-1",
        "waiting-2",
        "free",
    ]


def test_a_worker_claims_no_more_slow_limited_jobs_than_it_has_free_threads(
    open_sql: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = open_sql()
    claims_seen: list[tuple[int, int, int]] = []  # (free threads, limited, received)
    real = type(driver).limited_claims

    def spied(self: Any, limits: Any) -> Any:
        claims = real(self, limits)
        claim = claims.claim

        def claim_and_note(queues: Any, count: int, wait: float, free: int) -> Any:
            batch = claim(queues, count, wait, free)
            claims_seen.append((free, batch.limited, len(batch.received)))
            return batch

        claims.claim = claim_and_note
        return claims

    monkeypatch.setattr(type(driver), "limited_claims", spied)
    # Limited jobs of 60 ms (slow: never prefetched) among fast ones without limits, which
    # the worker prefetches.
    limited = define_job(name="limited", handler=lambda: time.sleep(0.06), concurrency_limit=1000)
    free = define_job(name="free", handler=lambda: None)
    jobs = JobService(driver)
    for _ in range(4):
        jobs.enqueue_many(free, [None] * 150)
        jobs.enqueue_many(limited, [None] * 10)
    worker = Worker(
        module=define_module(name="m", jobs=[limited, free]),
        driver=driver,
        concurrency=2,
        install_signal_handlers=False,
    )
    summary = worker.run_until_empty(timeout=60)
    assert summary.done == 640
    assert all(0 <= n <= room <= 2 for room, n, _ in claims_seen)
    assert any(got > 2 for _, _, got in claims_seen)  # the unlimited ones were prefetched


# -- worker processes sharing one queue ------------------------------------------------------


class Procs:
    """``glasswork worker`` processes of the limited fixtures app on one queue URL."""

    def __init__(self, tmp: Path, queue_url: str) -> None:
        self.tmp = tmp
        self.url = queue_url
        self.runs_db = tmp / "runs.db"
        self.procs: list[subprocess.Popen[bytes]] = []
        with sqlite3.connect(self.runs_db) as runs:
            runs.execute("PRAGMA journal_mode = WAL")

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [*COMMAND, "worker", LIMITED, "--driver", self.url, *args],
            cwd=TESTS,
            env={**os.environ, "GLASSWORK_TEST_RUNS": str(self.runs_db)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        wait_until(lambda: "worker started" in self.log(name), what=f"{name} to start")
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def runs(self) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.runs_db, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY started")]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def throttled(self, name: str) -> int:
        """The deliveries worker ``name`` counted as held back, from its summary line."""
        [line] = [x for x in self.log(name).splitlines() if "worker stopped" in x]
        found = re.search(r"throttled=(\d+)", line)
        return int(found.group(1)) if found else 0

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Procs, Any]]:
    """Worker processes on a queue with a 1-second lease, and a driver to enqueue with."""
    if request.param == "sqlite":
        db = tmp_path / "jobs.db"
        driver: Any = SQLiteQueueDriver(db)
        p = Procs(tmp_path, f"sqlite:///{db}?visibility_timeout=1")
        try:
            yield p, driver
        finally:
            p.stop()
            driver.close()
        return
    with fresh_schema("gwlp") as schema:
        driver = PostgresQueueDriver(dsn(), schema=schema)
        p = Procs(tmp_path, url(schema, visibility_timeout=1))
        try:
            yield p, driver
        finally:
            p.stop()
            driver.close()


def test_a_10_per_second_job_never_starts_more_than_10_times_in_any_second_across_3_workers(
    procs: tuple[Procs, Any],
) -> None:
    p, driver = procs
    for name in ("w1", "w2", "w3"):
        p.start(name, "--concurrency", "4")
    JobService(driver).enqueue_many(paced, [{"key": f"p-{i}"} for i in range(35)])
    wait_until(lambda: len(p.runs()) >= 35, timeout=30, what="every paced job to start")
    runs = p.runs()
    assert len(runs) == 35 and len({r["pid"] for r in runs}) >= 2
    assert {r["attempt"] for r in runs} == {1}
    # Starts as the handlers recorded them, after their own dispatch in processes sharing
    # two loaded cores (a handler has been seen to start over 0.1 s after its grant): the
    # limit is taken at the driver, so allow a quarter of the window for that and no more.
    # The driver's own grants are held to the exact window in
    # test_no_window_of_the_rate_holds_more_starts_than_the_limit. A limit per worker (30/s
    # here: 22 in 0.75 s) or a refilling bucket (10 at once, then 10/s: 17) fails this.
    starts = [r["started"] for r in runs]
    assert most_in_any_window(starts, 0.75) <= 10
    assert max(starts) - min(starts) >= 3.0 - 0.25 * 3  # 35 starts need 3 full windows
    assert driver.dead_letters() == []
    # Every worker counted what its claims held back; the backend counted them all.
    p.stop()
    throttled = sum(p.throttled(name) for name in ("w1", "w2", "w3"))
    assert throttled > 0
    assert driver.throttle_counts() == {"paced": throttled}


def test_concurrency_limit_2_never_has_3_running_for_one_key_across_3_workers(
    procs: tuple[Procs, Any],
) -> None:
    p, driver = procs
    for name in ("w1", "w2", "w3"):
        p.start(name, "--concurrency", "4")
    payloads = [
        {"key": f"{tenant}-{i}", "tenant": tenant, "sleep": 0.15}
        for i in range(6)
        for tenant in ("t1", "t2")
    ]
    JobService(driver).enqueue_many(per_tenant, payloads)
    wait_until(
        lambda: sum(r["finished"] is not None for r in p.runs()) == 12,
        timeout=40,
        what="every job to finish",
    )
    runs = p.runs()
    assert len(runs) == 12 and {r["attempt"] for r in runs} == {1}
    for tenant in ("t1", "t2"):
        mine = [r for r in runs if r["key"].startswith(f"{tenant}-")]
        assert most_running_at_once(mine) <= 2
    assert most_running_at_once(runs) >= 3  # the two tenants did run side by side
    assert driver.dead_letters() == []  # held back often, never dead-lettered for it
    assert driver.throttle_counts()["per_tenant"] > 0


def most_running_at_once(runs: Sequence[dict[str, Any]]) -> int:
    events = sorted(
        itertools.chain(((r["started"], 1) for r in runs), ((r["finished"], -1) for r in runs)),
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_a_worker_killed_holding_a_slot_frees_it_within_its_lease(
    procs: tuple[Procs, Any], tmp_path: Path
) -> None:
    p, driver = procs
    victim = p.start("victim", "--concurrency", "2")
    jobs = JobService(driver)
    hold = tmp_path / "release"  # the jobs run until this file exists
    held = [{"key": f"held-{i}", "tenant": "t", "until": str(hold), "sleep": 60} for i in range(2)]
    jobs.enqueue_many(per_tenant, held)
    wait_until(lambda: len(p.runs()) == 2, what="the victim to hold both slots")
    p.start("survivor", "--concurrency", "2")  # idle: the victim holds the jobs
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = time.time()
    hold.touch()  # their runs again (after the lease) end at once
    jobs.enqueue(per_tenant, {"key": "after", "tenant": "t"})
    wait_until(
        lambda: any(r["key"] == "after" and r["finished"] for r in p.runs()),
        timeout=20,
        what="the job after the kill to run",
    )
    [after] = [r for r in p.runs() if r["key"] == "after"]
    # The lease is 1 s: the slots are free by then (plus a claim and a retry delay).
    assert after["started"] - killed_at < 1.0 + 1.5
    assert after["attempt"] == 1
    p.stop()
    # The survivor took it at once, and it waited for the dead worker's slots: held back.
    assert "throttled=" in p.log("survivor")


# -- schema version 6 ------------------------------------------------------------------------


def test_a_version_5_sqlite_file_is_upgraded_and_its_jobs_can_be_limited(tmp_path: Path) -> None:
    from glasswork.jobs.drivers.sqlite import schema

    path = tmp_path / "v5.db"
    conn = sqlite3.connect(path)
    for step in schema.MIGRATIONS[:5]:
        if callable(step):
            step(conn)
        else:
            conn.executescript(step)
    now = time.time()
    body = JobMessage.create("per_tenant", {}, concurrency_key="a").encode()
    conn.execute(
        "INSERT INTO glasswork_jobs (queue, job_name, job_id, body, visible_at, enqueued_at) "
        "VALUES ('default', 'per_tenant', 'old', ?, ?, ?)",
        (body, now, now),
    )
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()
    driver = SQLiteQueueDriver(path)
    try:
        version = driver.file.conn().execute("PRAGMA user_version").fetchone()[0]
        assert version == schema.SCHEMA_VERSION
        [old] = _claim(driver, 1)
        assert driver.acquire(old, "per_tenant", "a", JobLimits(RateLimit(1, 60), 1)) is None
        _enqueue(driver, "per_tenant", 1, key="a")
        [new] = _claim(driver, 1)
        assert driver.acquire(new, "per_tenant", "a", JobLimits(None, 1)) is not None
    finally:
        driver.close()


@pytest.mark.postgres
def test_a_version_5_postgres_schema_is_upgraded_and_its_jobs_can_be_limited() -> None:
    from pgtest import connect

    with fresh_schema("gwl5") as schema:
        with PostgresQueueDriver(dsn(), schema=schema) as driver:
            _enqueue(driver, "per_tenant", 1, key="a")
        with connect(autocommit=True) as conn:
            conn.execute(f'DROP FUNCTION "{schema}".glasswork_acquire')
            conn.execute(f'DROP TABLE "{schema}".glasswork_rate_starts')
            conn.execute(f'ALTER TABLE "{schema}".glasswork_jobs DROP COLUMN slot_key')
            conn.execute(f'DELETE FROM "{schema}".glasswork_schema_versions WHERE version > 5')
        with PostgresQueueDriver(dsn(), schema=schema) as driver:
            [old] = _claim(driver, 1)
            assert driver.acquire(old, "per_tenant", "a", JobLimits(RateLimit(1, 60), 1)) is None
            _enqueue(driver, "per_tenant", 1, key="a")
            [new] = _claim(driver, 1)
            assert driver.acquire(new, "per_tenant", "a", JobLimits(None, 1)) is not None
        with connect() as conn:
            versions = conn.execute(f'SELECT version FROM "{schema}".glasswork_schema_versions')
            assert [r[0] for r in versions] == list(range(1, SCHEMA_VERSION + 1))


# -- schema version 7 ------------------------------------------------------------------------


def test_a_version_6_sqlite_file_is_upgraded_and_counts_its_throttles(tmp_path: Path) -> None:
    from glasswork.jobs.drivers.sqlite import schema

    path = tmp_path / "v6.db"
    SQLiteQueueDriver(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE glasswork_throttles")
    conn.execute("PRAGMA user_version = 6")
    conn.commit()
    conn.close()
    driver = SQLiteQueueDriver(path)
    try:
        version = driver.file.conn().execute("PRAGMA user_version").fetchone()[0]
        assert version == schema.SCHEMA_VERSION
        _enqueue(driver, "paced", 2)
        claims = driver.limited_claims({"paced": JobLimits(RateLimit(1, 60), None)})
        assert claims.claim(None, 10, 0.0, 10).limited == 1
        assert driver.throttle_counts() == {"paced": 1}
    finally:
        driver.close()


@pytest.mark.postgres
def test_a_version_6_postgres_schema_is_upgraded_and_claims_with_limits() -> None:
    from pgtest import connect

    with fresh_schema("gwl6") as schema:
        with PostgresQueueDriver(dsn(), schema=schema) as driver:
            _enqueue(driver, "paced", 2)
        with connect(autocommit=True) as conn:
            conn.execute(f'DROP FUNCTION "{schema}".glasswork_claim_limited')
            conn.execute(f'DROP TABLE "{schema}".glasswork_throttles')
            conn.execute(f'DELETE FROM "{schema}".glasswork_schema_versions WHERE version > 6')
        with PostgresQueueDriver(dsn(), schema=schema) as driver:
            claims = driver.limited_claims({"paced": JobLimits(RateLimit(1, 60), None)})
            assert claims.claim(None, 10, 0.0, 10).limited == 1
            assert driver.throttle_counts() == {"paced": 1}


def test_the_sqs_driver_without_a_limits_table_is_refused_naming_the_job_and_the_setting(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from glasswork.jobs.drivers.sqs import SQSQueueDriver

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    driver = SQSQueueDriver(
        queues={"default": f"{moto_endpoint}/123456789012/jobs"},
        endpoint_url=moto_endpoint,
        region="us-east-1",
    )
    module = define_module(name="m", jobs=[paced])
    missing = r"job 'paced' .* the sqs driver has no limits_table .*SQSQueueDriver\(limits_table="
    with pytest.raises(ConfigurationError, match=missing):
        Worker(module=module, driver=driver)
    with pytest.raises(ConfigurationError, match=missing):
        bootstrap_worker(module=module, driver=driver)
