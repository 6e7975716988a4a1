"""The PostgreSQL driver's outcome history and job lookup (what the dashboard reads), against
the real server, each test in a schema of its own: counts recorded by a real worker and by
concurrent writers, the upgrade of a version-1 schema (by the driver, and by ``glasswork
migrate``). (What it shares with SQLite: test_sql_drivers.py; the contract:
test_testing_contract.py.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from dashboard_support import seed_driver
from glasswork.cli import main
from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.postgres import SCHEMA_VERSION, PostgresQueueDriver
from glasswork.jobs.drivers.records import OutcomeCount
from glasswork.jobs.errors import ConfigurationError
from pgtest import connect, dsn, fresh_schema, url

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


@pytest.fixture
def driver(schema: str) -> Iterator[PostgresQueueDriver]:
    with PostgresQueueDriver(dsn(), schema=schema, visibility_timeout=30) as d:
        yield d


def minute(offset: int = 0) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now + timedelta(minutes=offset)


def totals(counts: list[OutcomeCount]) -> dict[str, int]:
    found: dict[str, int] = {}
    for c in counts:
        found[c.outcome] = found.get(c.outcome, 0) + c.count
    return found


@pytest.mark.slow
def test_workers_recording_the_same_keys_at_once_lose_nothing(schema: str) -> None:
    keys = [("q", f"job-{n}", kind) for n in range(20) for kind in ("done", "retry")]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def record(reverse: bool) -> None:
        driver = PostgresQueueDriver(dsn(), schema=schema)
        start.wait()
        try:
            for _ in range(10):
                order = keys[::-1] if reverse else keys  # opposite lock orders, if unsorted
                driver.record_outcomes([OutcomeCount(minute(), q, n, k, 1) for q, n, k in order])
        except BaseException as exc:
            errors.append(exc)
        finally:
            driver.close()

    threads = [threading.Thread(target=record, args=(i % 2 == 1,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with PostgresQueueDriver(dsn(), schema=schema) as driver:
        history = driver.outcome_history(minute(-1))
    assert len(history) == len(keys) and {c.count for c in history} == {40}


@pytest.mark.slow
def test_a_real_worker_records_its_outcomes(driver: PostgresQueueDriver) -> None:
    seeded = seed_driver(driver)
    # 6 receipts (3 retried once, 1 twice... as in the SQLite seed), 3 charges (2 declined),
    # 1 resize: what the worker's outcome log flushed into the table.
    history = driver.outcome_history(minute(-5))
    assert totals(history) == {"done": 8, "retry": 6, "dead_letter": 2}
    assert {(c.queue, c.job_name) for c in history if c.outcome == "dead_letter"} == {
        ("payments", "charge-card")
    }
    [dead] = driver.find_job(seeded.declined_job_id)
    assert dead.state == "dead" and dead.dead_letter is not None
    assert "card declined" in dead.dead_letter.reason


def test_records_outcomes_false_leaves_the_log_out(driver: PostgresQueueDriver) -> None:
    from fixtures_app.shop import ShopModule
    from glasswork.jobs import Worker
    from glasswork.jobs.metrics.outcome_log import OutcomeLog

    driver.records_outcomes = False
    worker = Worker(module=ShopModule, driver=driver, install_signal_handlers=False)
    assert not any(isinstance(sink, OutcomeLog) for sink in worker.metrics)


# -- upgrading a version-1 schema -------------------------------------------------------------


def make_version_1(schema: str) -> str:
    """A schema as glasswork with schema version 1 left it (no outcome table), holding a job
    and a dead letter; returns the job's id."""
    message = JobMessage.create("kept", {"n": 1}, queue="q")
    with PostgresQueueDriver(dsn(), schema=schema) as driver:
        driver.enqueue(message)
        driver.dead_letter("{}", "old failure", queue="q")
    with connect(autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{schema}".glasswork_outcomes')
        conn.execute(f'ALTER TABLE "{schema}".glasswork_dead_letters DROP COLUMN traceback')
        # Version 4's objects (dead-letter search indexes, worker heartbeats).
        conn.execute(f'DROP TABLE "{schema}".glasswork_workers')
        conn.execute(f'DROP INDEX "{schema}".glasswork_dead_letters_job')
        conn.execute(f'DROP INDEX "{schema}".glasswork_dead_letters_failed')
        conn.execute(f'DELETE FROM "{schema}".glasswork_schema_versions WHERE version > 1')
    return message.job_id


def test_a_version_1_schema_is_upgraded_by_the_driver_and_keeps_its_jobs(schema: str) -> None:
    job_id = make_version_1(schema)
    with pytest.raises(
        ConfigurationError, match=f"schema version 1, this glasswork needs {SCHEMA_VERSION}"
    ):
        PostgresQueueDriver(dsn(), schema=schema, migrate=False)
    with PostgresQueueDriver(dsn(), schema=schema) as driver:
        assert driver.stats()["q"].ready == 1 and driver.stats()["q"].dead == 1
        assert [f.state for f in driver.find_job(job_id)] == ["ready"]
        driver.record_outcomes([OutcomeCount(minute(), "q", "kept", "done", 1)])
        assert len(driver.outcome_history(minute(-1))) == 1
    with connect() as conn:
        versions = conn.execute(f'SELECT version FROM "{schema}".glasswork_schema_versions')
        assert [r[0] for r in versions] == list(range(1, SCHEMA_VERSION + 1))


@pytest.mark.slow
def test_glasswork_migrate_shows_then_applies_the_outcomes_migration(
    schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = make_version_1(schema)
    target = url(schema, migrate="false")
    assert main(["migrate", "--driver", target]) == 0
    script = capsys.readouterr().out
    assert "-- Glasswork queue schema version 2" in script
    assert f'CREATE TABLE "{schema}".glasswork_outcomes' in script
    # Only what is missing: the jobs table is not created again (version 5 adds columns).
    assert f'CREATE TABLE "{schema}".glasswork_jobs' not in script and "version 1" not in script
    assert main(["migrate", "--driver", target, "--apply"]) == 0
    applied = ", ".join(str(v) for v in range(2, SCHEMA_VERSION + 1))
    assert f"applied schema version(s) {applied} to schema {schema!r}" in capsys.readouterr().out
    with PostgresQueueDriver(dsn(), schema=schema, migrate=False) as driver:
        assert [f.state for f in driver.find_job(job_id)] == ["ready"]
        driver.record_outcomes([OutcomeCount(minute(), "q", "kept", "done", 1)])
    assert main(["migrate", "--driver", target, "--apply"]) == 0
    assert f"up to date (version {SCHEMA_VERSION})" in capsys.readouterr().out
