"""The traceback kept with every dead letter: which failures keep one and how much, and that
SQLite, PostgreSQL and the mock driver keep it through both workers and read it back (SQS:
tests/integration/test_lambda_moto.py and test_sqs_operations.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.cli import main
from glasswork.jobs import (
    JobMessage,
    JobService,
    MockQueueDriver,
    PermanentJobError,
    TransientJobError,
    bootstrap_worker,
    define_job,
)
from glasswork.jobs.drivers.contract import QueueDriver
from glasswork.jobs.drivers.postgres import PostgresQueueDriver, schema
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.drivers.sqlite import schema as sqlite_schema
from glasswork.jobs.errors import MAX_TRACEBACK_CHARS, failure_traceback
from glasswork.jobs.execution import DeadLetter, Executor, JobHooks, JobRegistry
from glasswork.jobs.testing import sqs_event
from glasswork.jobs.worker import Worker
from glasswork.services import Services
from pgtest import connect, dsn, fresh_schema


def _look_up(user_id: Any) -> None:
    """The user's code, failing a few frames down from the handler."""
    raise LookupError(f"no user {user_id}")


def crash(payload: Any) -> None:
    _look_up(payload)


def give_up(payload: Any) -> None:
    raise PermanentJobError(f"user {payload} was deleted")


def give_up_from(payload: Any) -> None:
    try:
        _look_up(payload)
    except LookupError as exc:
        raise PermanentJobError("the user lookup failed") from exc


def busy(payload: Any) -> None:
    raise TransientJobError("upstream busy")


def busy_while_handling(payload: Any) -> None:
    try:
        _look_up(payload)
    except LookupError:
        if payload == "quiet":
            raise TransientJobError("upstream busy") from None
        raise TransientJobError("upstream busy")  # noqa: B904 (the point of the test)


def executor_for(job: Any) -> Executor:
    module = define_module(name="m", jobs=[job])
    return Executor(JobRegistry.for_module(module), Services.for_module(module), JobHooks())


def dead_letter_of(handler: Callable[[Any], None], payload: Any = 7) -> DeadLetter:
    job = define_job(name="j", handler=handler, retry={"max_attempts": 1})
    outcome = executor_for(job).execute_sync(JobMessage.create("j", payload).encode())
    assert isinstance(outcome, DeadLetter)
    return outcome


# -- which failures keep one --------------------------------------------------------------


def test_an_unexpected_error_keeps_its_whole_traceback() -> None:
    trace = dead_letter_of(crash).traceback
    assert trace is not None
    assert trace.startswith("Traceback (most recent call last):")
    assert __file__ in trace and "in crash" in trace and "in _look_up" in trace
    assert trace.endswith("LookupError: no user 7\n")


def test_a_deliberate_job_error_keeps_none_and_a_chained_one_keeps_the_chain() -> None:
    assert dead_letter_of(give_up).traceback is None
    assert dead_letter_of(busy).traceback is None  # its retries used up
    chained = dead_letter_of(give_up_from).traceback
    assert chained is not None
    assert "LookupError: no user 7" in chained and "in _look_up" in chained
    assert "The above exception was the direct cause of the following exception" in chained
    assert chained.endswith("PermanentJobError: the user lookup failed\n")
    # Raised while handling another error: that error is shown, unless `from None` hid it.
    assert "LookupError" in (dead_letter_of(busy_while_handling).traceback or "")
    assert dead_letter_of(busy_while_handling, "quiet").traceback is None


def test_bad_messages_keep_no_traceback() -> None:
    executor = executor_for(define_job(name="typed", handler=crash, schema=int))
    for body in (
        JobMessage.create("typed", "not a number").encode(),  # invalid payload
        JobMessage.create("unknown", 1).encode(),  # unknown job
        "not json",  # malformed body
    ):
        outcome = executor.execute_sync(body)
        assert isinstance(outcome, DeadLetter) and outcome.traceback is None


def test_a_long_traceback_is_cut_to_its_end() -> None:
    def deep(payload: Any) -> None:
        try:
            raise ValueError("x" * 20_000)  # a cause with a huge message
        except ValueError as exc:
            raise RuntimeError("the real failure") from exc

    trace = dead_letter_of(deep).traceback
    assert trace is not None
    assert len(trace) <= MAX_TRACEBACK_CHARS
    assert trace.startswith("[... ") and "characters cut ...]\n" in trace
    assert trace.endswith("RuntimeError: the real failure\n")


# -- kept by every driver, through both workers -------------------------------------------


@contextmanager
def sqlite_driver_in(tmp_path: Path) -> Iterator[SQLiteQueueDriver]:
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    yield driver
    driver.close()


@contextmanager
def postgres_driver_in(tmp_path: Path) -> Iterator[PostgresQueueDriver]:
    with fresh_schema() as name, PostgresQueueDriver(dsn(), schema=name) as driver:
        yield driver


@contextmanager
def mock_driver_in(tmp_path: Path) -> Iterator[MockQueueDriver]:
    yield MockQueueDriver()


DRIVERS = {"sqlite": sqlite_driver_in, "postgres": postgres_driver_in, "mock": mock_driver_in}


def kept_tracebacks(driver: Any, job_id: str) -> list[str | None]:
    """The tracebacks of ``job_id``'s dead letters, as the driver reads them back."""
    if isinstance(driver, MockQueueDriver):
        return [d.traceback for d in driver.dead_letters]
    listed = [r.traceback for r in driver.dead_letters() if r.job_id == job_id]
    found = [f.dead_letter.traceback for f in driver.find_job(job_id) if f.dead_letter]
    assert listed == found
    return listed


def run_on(worker: str, driver: QueueDriver, module: Any, message: JobMessage) -> None:
    if worker == "lambda":
        bootstrap_worker(module=module, driver=driver)(sqs_event([message]), None)
    else:
        driver.enqueue(message)
        summary = Worker(module=module, driver=driver).run_until_empty(timeout=30)
        assert summary.dead_lettered == 1


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["lambda", "worker"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.postgres) if n == "postgres" else n for n in DRIVERS]
)
def test_every_driver_keeps_the_traceback_through_both_workers(
    tmp_path: Path, name: str, worker: str
) -> None:
    jobs = [
        define_job(name="crash", handler=crash, retry={"max_attempts": 1}),
        define_job(name="give-up", handler=give_up),
    ]
    module = define_module(name="m", jobs=jobs)
    with DRIVERS[name](tmp_path) as driver:
        crashed = JobMessage.create("crash", 7)
        run_on(worker, driver, module, crashed)
        [trace] = kept_tracebacks(driver, crashed.job_id)
        assert trace is not None and "in _look_up" in trace
        assert trace.endswith("LookupError: no user 7\n")
        if isinstance(driver, MockQueueDriver):
            driver.dead_letters.clear()
        deliberate = JobMessage.create("give-up", 8)
        run_on(worker, driver, module, deliberate)
        assert kept_tracebacks(driver, deliberate.job_id) == [None]


class _Before(SQLiteQueueDriver):
    """A driver written before dead letters had tracebacks."""

    def dead_letter(self, body: str, reason: str, *, queue: str | None = None) -> bool:
        return super().dead_letter(body, reason, queue=queue)


@pytest.mark.parametrize("worker", ["lambda", "worker"])
def test_a_driver_whose_dead_letter_takes_no_traceback_still_keeps_dead_letters(
    tmp_path: Path, worker: str
) -> None:
    module = define_module(
        name="m", jobs=[define_job(name="crash", handler=crash, retry={"max_attempts": 1})]
    )
    driver = _Before(tmp_path / "jobs.db")
    message = JobMessage.create("crash", 7)
    run_on(worker, driver, module, message)
    assert [(r.job_id, r.traceback) for r in driver.dead_letters()] == [(message.job_id, None)]
    assert driver.pending_count() == 0
    driver.close()


# -- schema upgrades keep older dead letters ----------------------------------------------


def test_an_sqlite_file_from_before_tracebacks_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    before = sqlite_schema.MIGRATIONS.index(sqlite_schema._TRACEBACKS)
    old = SQLiteQueueDriver(path)
    old.dead_letter("{}", "old failure", queue="q")
    old.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE glasswork_dead_letters DROP COLUMN traceback")
    conn.execute(f"PRAGMA user_version = {before}")
    conn.commit()
    conn.close()
    driver = SQLiteQueueDriver(path)
    driver.dead_letter("{}", "new failure", queue="q", traceback="Traceback ...\n")
    assert [(r.reason, r.traceback) for r in driver.dead_letters()] == [
        ("old failure", None),
        ("new failure", "Traceback ...\n"),
    ]
    driver.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_postgresql_schema_from_before_tracebacks_is_upgraded() -> None:
    [version] = [v for v, sql in schema._MIGRATIONS.items() if "ADD COLUMN traceback" in sql]
    with fresh_schema() as name:
        with PostgresQueueDriver(dsn(), schema=name) as old:
            old.dead_letter("{}", "old failure", queue="q")
        with connect(autocommit=True) as conn:
            # As version 2 left it: without the traceback column and what came after it.
            conn.execute(f'ALTER TABLE "{name}".glasswork_dead_letters DROP COLUMN traceback')
            conn.execute(f'DROP TABLE "{name}".glasswork_workers')
            conn.execute(f'DROP INDEX "{name}".glasswork_dead_letters_job')
            conn.execute(f'DROP INDEX "{name}".glasswork_dead_letters_failed')
            conn.execute(
                f'DELETE FROM "{name}".glasswork_schema_versions WHERE version >= %s', (version,)
            )
        with PostgresQueueDriver(dsn(), schema=name) as driver:
            driver.dead_letter("{}", "new failure", queue="q", traceback="Traceback ...\n")
            assert [(r.reason, r.traceback) for r in driver.dead_letters()] == [
                ("old failure", None),
                ("new failure", "Traceback ...\n"),
            ]


@pytest.mark.postgres
def test_postgresql_keeps_a_failure_whose_message_holds_a_nul() -> None:
    # PostgreSQL text cannot hold NUL: the dead letter must be kept all the same (and the
    # job not retried forever because its dead letter keeps failing).
    job = define_job(
        name="nul", handler=lambda payload: _look_up(payload), retry={"max_attempts": 1}
    )
    with fresh_schema() as name, PostgresQueueDriver(dsn(), schema=name) as driver:
        JobService(driver).enqueue(job, "a\x00b")
        summary = Worker(module=define_module(name="m", jobs=[job]), driver=driver).run_until_empty(
            timeout=30
        )
        assert summary.dead_lettered == 1
        [record] = driver.dead_letters()
        assert record.reason.endswith("LookupError: no user a\\x00b")
        assert record.traceback is not None and "no user a\\x00b" in record.traceback


# -- the command line ---------------------------------------------------------------------


def test_dlq_list_shows_where_it_was_raised_and_json_has_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        _look_up(7)
    except LookupError as exc:
        error = exc
    trace = failure_traceback(error)
    frame = error.__traceback__
    assert frame is not None
    while frame.tb_next is not None:
        frame = frame.tb_next
    line = frame.tb_lineno  # the raise in _look_up
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    message = JobMessage.create("crash", 7)
    driver.dead_letter(message.encode(), "LookupError: no user 7", queue="default", traceback=trace)
    driver.dead_letter("{}", "PermanentJobError: gone", queue="default")
    driver.close()

    assert main(["dlq", "list", "--driver", url]) == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split()[6:] == ["RAISED", "AT", "REASON"]
    assert first.split()[5:] == [
        f"test_dead_letter_tracebacks.py:{line}",
        "LookupError:",
        "no",
        "user",
        "7",
    ]
    assert second.split()[5] == "-"
    assert main(["dlq", "list", "--json", "--driver", url]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["traceback"] for r in records] == [trace, None]
