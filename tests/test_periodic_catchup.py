"""Periodic jobs that never miss silently: fires missed while no worker ran are run as
``catchup`` says (none, the latest, all up to a bound), ``overlap=False`` skips a fire while
the previous run is unfinished, across workers; every missed or skipped fire is logged and
counted. On SQLite and PostgreSQL (the drivers that record periodic fires)."""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.jobs import EMFMetrics, JobMessage, MockQueueDriver, define_periodic_job
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError
from glasswork.jobs.metrics import PrometheusMetrics
from glasswork.jobs.schedules import PeriodicPolicy, catch_up, parse_schedule
from glasswork.jobs.worker import Worker
from pgtest import POSTGRESQL, dsn, fresh_schema

Make = Callable[[], Any]
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def minutes(*offsets: int) -> tuple[datetime, ...]:
    return tuple(NOON + timedelta(minutes=m) for m in offsets)


# -- which fires were missed (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "run", "dropped", "dropped_span"),
    [
        (PeriodicPolicy("none"), (), 5, minutes(1, 5)),
        (PeriodicPolicy("latest"), minutes(5), 4, minutes(1, 4)),
        (PeriodicPolicy("all", 3), minutes(3, 4, 5), 2, minutes(1, 2)),
        (PeriodicPolicy("all"), minutes(1, 2, 3, 4, 5), 0, (None, None)),
    ],
)
def test_catchup_runs_none_the_latest_or_the_most_recent_missed_fires_up_to_its_limit(
    policy: PeriodicPolicy, run: tuple[datetime, ...], dropped: int, dropped_span: tuple[Any, Any]
) -> None:
    rate = parse_schedule("rate(1 minute)")
    # Last fired at noon; the worker starts again at 12:05:30: 12:01 to 12:05 were missed.
    plan = catch_up(rate, policy, NOON, NOON + timedelta(minutes=5, seconds=30))
    assert plan.run == run
    assert (plan.dropped, plan.dropped_first, plan.dropped_last) == (dropped, *dropped_span)
    assert plan.resume == NOON + timedelta(minutes=6)


def test_a_fire_due_less_than_a_second_ago_is_fired_as_usual_not_missed() -> None:
    rate = parse_schedule("rate(1 minute)")
    now = NOON + timedelta(minutes=5, milliseconds=400)
    plan = catch_up(rate, PeriodicPolicy("latest"), NOON, now)
    assert plan.resume == NOON + timedelta(minutes=5)  # the usual loop fires it at once
    assert plan.run == minutes(4)
    assert (plan.dropped, plan.dropped_first, plan.dropped_last) == (3, *minutes(1, 3))


@pytest.mark.parametrize("last", [None, NOON + timedelta(minutes=5)])
def test_nothing_is_missed_by_a_job_that_never_fired_or_fired_last_at_the_latest_time(
    last: datetime | None,
) -> None:
    rate = parse_schedule("rate(1 minute)")
    plan = catch_up(rate, PeriodicPolicy("all"), last, NOON + timedelta(minutes=5, seconds=30))
    assert (plan.run, plan.dropped, plan.resume) == ((), 0, NOON + timedelta(minutes=6))


def test_cron_fires_are_caught_up_like_rate_fires() -> None:
    cron = parse_schedule("cron(0/15 * * * ? *)")
    plan = catch_up(cron, PeriodicPolicy("all", 2), NOON, NOON + timedelta(hours=1, minutes=1))
    assert plan.run == minutes(45, 60)
    assert (plan.dropped, plan.dropped_first, plan.dropped_last) == (2, *minutes(15, 30))
    assert plan.resume == NOON + timedelta(hours=1, minutes=15)


def test_a_long_outage_of_a_one_second_rate_is_counted_exactly_without_walking_it() -> None:
    rate = parse_schedule("rate(1 second)")
    began = time.perf_counter()
    plan = catch_up(rate, PeriodicPolicy("latest"), NOON - timedelta(days=365), NOON)
    assert time.perf_counter() - began < 0.5
    assert plan.resume == NOON  # due now: fired as usual
    assert plan.run == (NOON - timedelta(seconds=1),)
    assert plan.dropped == 365 * 86400 - 2


def test_previous_fire_is_strictly_before_a_moment() -> None:
    for expression in ("rate(5 minutes)", "*/5 * * * *"):
        schedule = parse_schedule(expression)
        assert schedule.previous_before(NOON) == NOON - timedelta(minutes=5)
        assert schedule.previous_before(NOON + timedelta(microseconds=1)) == NOON


# -- the options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"catchup": "some"}, "catchup must be 'none', 'latest' or 'all', got 'some'"),
        ({"catchup": "latest", "catchup_limit": 5}, "catchup_limit bounds catchup='all'"),
        ({"catchup": "all", "catchup_limit": 0}, "catchup_limit must be at least 1"),
        ({"catchup": "all", "catchup_limit": True}, "catchup_limit must be a whole number"),
        ({"catchup": "all", "catchup_limit": 2.5}, "catchup_limit must be a whole number"),
        ({"overlap": "no"}, "overlap must be True or False"),
        ({"catchup": "all", "overlap": False}, "use catchup='latest' with overlap=False"),
    ],
)
def test_bad_catchup_or_overlap_is_refused_when_defined_naming_the_job(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=rf"periodic job 'tick': .*{re.escape(message)}"):
        define_periodic_job(name="tick", handler=noop, schedule="rate(1 minute)", **options)


def test_the_lambda_handler_says_it_does_not_enforce_overlap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from glasswork.jobs import bootstrap_worker

    apart = define_periodic_job(
        name="apart", schedule="rate(1 minute)", handler=lambda: None, overlap=False
    )
    free = define_periodic_job(name="free", schedule="rate(1 minute)", handler=lambda: None)
    with caplog.at_level(logging.WARNING):
        bootstrap_worker(module=define_module("app", jobs=[apart, free]))
    warned = [r.getMessage() for r in caplog.records if "overlap=False" in r.getMessage()]
    assert len(warned) == 1 and "'apart'" in warned[0] and "reserved concurrency" in warned[0]


def test_periodic_jobs_default_to_no_catchup_and_overlap_allowed() -> None:
    job = define_periodic_job(name="tick", handler=noop, schedule="rate(1 minute)")
    assert job.periodic_policy == PeriodicPolicy("none", 100, True)
    every = define_periodic_job(name="t", handler=noop, catchup="all")
    assert every.periodic_policy == PeriodicPolicy("all", 100, True)


def test_the_docs_example_of_catchup_and_overlap_defines_its_jobs() -> None:
    text = (Path(__file__).parents[1] / "docs" / "worker.md").read_text()
    section = text.split("### Missed fires and overlapping runs")[1]
    example = section.split("```python")[1].split("```")[0].replace("handler=...", "handler=noop")
    defined: dict[str, Any] = {"define_periodic_job": define_periodic_job, "noop": noop}
    exec(example, defined)
    assert defined["report"].periodic_policy == PeriodicPolicy("all", 24, True)
    assert defined["sync"].periodic_policy == PeriodicPolicy("latest", 100, False)


@pytest.mark.parametrize("options", [{"catchup": "latest"}, {"overlap": False}])
def test_a_driver_that_records_no_fires_refuses_catchup_and_no_overlap_at_start(
    options: dict[str, Any],
) -> None:
    job = define_periodic_job(name="tick", handler=noop, schedule="rate(1 minute)", **options)
    with pytest.raises(ConfigurationError, match="needs a driver that records periodic fires"):
        Worker(module=module_of(job), driver=MockQueueDriver(), periodic=True)
    Worker(module=module_of(job), driver=MockQueueDriver())  # not firing: nothing to honour


# -- the driver's record of fires -------------------------------------------------------------


@pytest.fixture(params=["sqlite", POSTGRESQL])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """``make()``: one more driver on this test's queue (a SQLite file or a PostgreSQL
    schema), as another worker process would open it; all closed at the end."""
    opened: list[Any] = []

    def open_sqlite() -> Any:
        opened.append(SQLiteQueueDriver(tmp_path / "jobs.db", visibility_timeout=10))
        return opened[-1]

    if request.param == "sqlite":
        yield open_sqlite
    else:
        with fresh_schema() as schema:

            def open_postgres() -> Any:
                opened.append(PostgresQueueDriver(dsn(), schema=schema, visibility_timeout=10))
                return opened[-1]

            yield open_postgres
    for driver in opened:
        driver.close()


def test_the_last_fire_is_recorded_and_a_fire_enqueues_in_its_claim(make: Make) -> None:
    driver, other = make(), make()
    assert driver.last_periodic_fire("tick") is None
    first = JobMessage.create("tick", None)
    assert driver.fire_periodic("tick", NOON, first) == "fired"
    assert driver.last_periodic_fire("tick") == NOON
    assert other.fire_periodic("tick", NOON, JobMessage.create("tick", None)) == "taken"
    later = NOON + timedelta(minutes=1)
    # The first fire's job is still stored: without overlap the next fire is skipped.
    assert other.fire_periodic("tick", later, JobMessage.create("tick", None), overlap=False) == (
        "skipped"
    )
    assert driver.last_periodic_fire("tick") == later
    [received] = driver.receive()
    assert JobMessage.from_json(received.body).job_id == first.job_id  # only the first fire's
    driver.ack(received)
    third = JobMessage.create("tick", None)
    assert driver.fire_periodic("tick", later + timedelta(minutes=1), third, overlap=False) == (
        "fired"
    )
    assert [JobMessage.from_json(r.body).job_id for r in driver.receive()] == [third.job_id]


# -- workers stopped, then started again -------------------------------------------------------


def noop() -> None:
    pass


def module_of(*jobs: Any) -> Any:
    return define_module(name="test", jobs=list(jobs))


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Fleet:
    """Workers running in threads, stopped (and checked to have stopped) at the end."""

    def __init__(self) -> None:
        self.running: list[tuple[Worker, threading.Thread]] = []

    def start(self, worker: Worker) -> Worker:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        self.running.append((worker, thread))
        return worker

    def stop(self) -> None:
        for worker, _ in self.running:
            worker.stop()
        for _, thread in self.running:
            thread.join(15)
            assert not thread.is_alive()
        self.running.clear()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    workers = Fleet()
    yield workers
    workers.stop()


def hourly_fires_missed(driver: Any, name: str, hours: int) -> None:
    """Leave the record a worker stopped ``hours`` hourly fires ago leaves: its last fire,
    at least a few seconds clear of the current hour's, so that fire counts as missed."""
    hourly = parse_schedule("rate(1 hour)")
    wait_until(
        lambda: datetime.now(UTC) - hourly.previous_before(datetime.now(UTC)) > timedelta(seconds=2)
    )
    current = hourly.previous_before(datetime.now(UTC))
    assert driver.claim_periodic(name, current - timedelta(hours=hours))


def fire_counts(prometheus: PrometheusMetrics, job: str) -> dict[str, float]:
    found = {}
    for outcome in ("fired", "caught_up", "missed", "skipped"):
        value = prometheus.registry.get_sample_value(
            "glasswork_periodic_fires_total", {"job": job, "queue": "default", "outcome": outcome}
        )
        found[outcome] = value or 0.0
    return found


def warnings_of(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


@pytest.mark.parametrize(
    ("options", "runs", "missed"),
    [
        ({}, 0, 5),
        ({"catchup": "latest"}, 1, 4),
        ({"catchup": "all", "catchup_limit": 3}, 3, 2),
        ({"catchup": "all"}, 5, 0),
    ],
)
def test_a_worker_started_after_missed_fires_runs_what_catchup_says_and_reports_the_rest(
    make: Make,
    fleet: Fleet,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
    runs: int,
    missed: int,
) -> None:
    ran: list[float] = []
    job = define_periodic_job(
        name="report", handler=lambda: ran.append(time.time()), schedule="rate(1 hour)", **options
    )
    driver = make()
    hourly_fires_missed(driver, "report", hours=5)
    prometheus = PrometheusMetrics()
    lines: list[str] = []
    worker = Worker(
        module=module_of(job),
        driver=driver,
        periodic=True,
        wait_seconds=0.1,
        metrics=[prometheus, EMFMetrics(write=lines.append)],
    )
    caplog.set_level(logging.INFO)
    fleet.start(worker)
    # Catching up is done once the record reaches the current hour (the last missed fire).
    current = parse_schedule("rate(1 hour)").previous_before(datetime.now(UTC))
    wait_until(lambda: driver.last_periodic_fire("report") == current)
    wait_until(lambda: len(ran) >= runs and driver.pending_count() == 0)
    fleet.stop()
    assert len(ran) == runs
    assert worker.summary.fired == runs
    counts = fire_counts(prometheus, "report")
    assert (counts["caught_up"], counts["missed"], counts["fired"]) == (runs, missed, 0)
    [emf] = [json.loads(line) for line in lines if '"report"' in line]
    assert (emf["PeriodicCaughtUp"], emf["PeriodicMissed"]) == (runs, missed)
    not_run = warnings_of(caplog, "): not run")
    caught_up = warnings_of(caplog, "periodic job report: running")
    assert len(not_run) == (1 if missed else 0)
    assert len(caught_up) == (1 if runs else 0)
    if missed:
        assert f"periodic job report missed {missed} fire" in not_run[0].getMessage()
        last_dropped = current - timedelta(hours=runs)
        assert last_dropped.isoformat() in not_run[0].getMessage()


def test_workers_started_together_catch_up_each_fire_once_and_report_misses_once(
    make: Make, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[float] = []
    job = define_periodic_job(
        name="report",
        handler=lambda: ran.append(time.time()),
        schedule="rate(1 hour)",
        catchup="all",
        catchup_limit=3,
    )
    driver = make()
    hourly_fires_missed(driver, "report", hours=6)
    sinks = [PrometheusMetrics() for _ in range(3)]
    workers = [
        Worker(module=module_of(job), driver=make(), periodic=True, wait_seconds=0.1, metrics=[s])
        for s in sinks
    ]
    caplog.set_level(logging.INFO)
    for worker in workers:
        fleet.start(worker)
    wait_until(lambda: len(ran) >= 3 and driver.pending_count() == 0)
    fleet.stop()
    assert len(ran) == 3
    assert sum(w.summary.fired for w in workers) == 3
    totals = [fire_counts(s, "report") for s in sinks]
    assert sum(t["caught_up"] for t in totals) == 3
    assert sum(t["missed"] for t in totals) == 3  # counted by one worker only
    assert len(warnings_of(caplog, "missed 3 fires while no worker ran")) == 1


def fire_times(records: list[logging.LogRecord]) -> tuple[set[datetime], set[datetime]]:
    """The fire times the worker logs say were fired, and those said to be missed."""
    fired: set[datetime] = set()
    missed: set[datetime] = set()
    for record in records:
        message = record.getMessage()
        if message.startswith("fired periodic job tick"):
            fired.add(datetime.fromisoformat(record.args[1]))  # type: ignore[index]
        elif message.startswith("periodic job tick: running"):
            listed = record.args[3]  # type: ignore[index]
            fired.update(datetime.fromisoformat(t) for t in listed.split(", "))
        elif message.startswith("periodic job tick missed"):
            span = record.args[3].split(" to ")  # type: ignore[index]
            first, last = datetime.fromisoformat(span[0]), datetime.fromisoformat(span[-1])
            while first <= last:
                missed.add(first)
                first += timedelta(seconds=1)
    return fired, missed


@pytest.mark.parametrize("catchup", ["none", "all"])
def test_every_fire_across_a_worker_restart_is_run_or_reported_missed_never_both(
    make: Make, fleet: Fleet, caplog: pytest.LogCaptureFixture, catchup: str
) -> None:
    job = define_periodic_job(name="tick", handler=noop, schedule="rate(1 second)", catchup=catchup)
    driver = make()
    caplog.set_level(logging.INFO)
    first = fleet.start(
        Worker(module=module_of(job), driver=driver, periodic=True, wait_seconds=0.1)
    )
    wait_until(lambda: first.summary.fired >= 2)
    fleet.stop()
    stopped_at = driver.last_periodic_fire("tick")
    # Down for at least three fires.
    wait_until(lambda: datetime.now(UTC) > stopped_at + timedelta(seconds=4.2))
    second = fleet.start(
        Worker(module=module_of(job), driver=make(), periodic=True, wait_seconds=0.1)
    )
    wait_until(lambda: second.summary.fired >= 2)
    fleet.stop()
    fired, missed = fire_times(caplog.records)
    assert not fired & missed
    every = sorted(fired | missed)
    expected = [every[0] + timedelta(seconds=i) for i in range(len(every))]
    assert every == expected  # no fire unaccounted for
    gap = {t for t in every if stopped_at < t < stopped_at + timedelta(seconds=4)}
    assert len(gap) == 3
    if catchup == "all":
        assert not missed
    else:
        assert gap <= missed


# -- overlap=False ---------------------------------------------------------------------------


def test_no_overlap_holds_across_two_workers_for_a_job_longer_than_its_interval(
    make: Make, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def slow() -> None:
        began = time.monotonic()
        time.sleep(2.5)  # the job's own work: longer than the schedule's interval
        with lock:
            spans.append((began, time.monotonic()))

    job = define_periodic_job(name="slow", handler=slow, schedule="rate(1 second)", overlap=False)
    sinks = [PrometheusMetrics(), PrometheusMetrics()]
    caplog.set_level(logging.INFO)
    for sink in sinks:
        fleet.start(
            Worker(
                module=module_of(job),
                driver=make(),
                periodic=True,
                wait_seconds=0.1,
                concurrency=4,
                metrics=[sink],
            )
        )
    wait_until(lambda: len(spans) >= 3, timeout=30)
    fleet.stop()
    ordered = sorted(spans)
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert start >= end, f"runs overlapped: {ordered}"
    skipped = sum(fire_counts(s, "slow")["skipped"] for s in sinks)
    # Each run spans two or three fires that come while it is unfinished.
    assert skipped >= 2 * (len(spans) - 1)
    logged = warnings_of(caplog, "skipped periodic job slow due at")
    assert len(logged) == skipped
    assert "its previous run has not finished (overlap=False)" in logged[0].getMessage()


def test_with_overlap_allowed_the_same_slow_job_does_overlap(tmp_path: Path, fleet: Fleet) -> None:
    """The setup of the test above does make runs overlap when nothing prevents it."""
    running = []
    both = threading.Event()

    def slow() -> None:
        running.append(1)
        if len(running) >= 2:
            both.set()
        both.wait(10)
        running.pop()

    job = define_periodic_job(name="slow", handler=slow, schedule="rate(1 second)")
    for _ in range(2):
        fleet.start(
            Worker(
                module=module_of(job),
                driver=SQLiteQueueDriver(tmp_path / "jobs.db"),
                periodic=True,
                wait_seconds=0.1,
                concurrency=4,
            )
        )
    wait_until(both.is_set)
