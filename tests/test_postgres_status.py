"""A job's life on the PostgreSQL driver: the StatusStore rules (tests/status_support.py),
and what only PostgreSQL does: its schema upgrade, finishing in one statement (nothing
written with nothing to keep), claims through the indexes, expired ends purged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from glasswork.jobs.drivers.postgres import SCHEMA_VERSION, PostgresQueueDriver
from glasswork.jobs.drivers.records import FinalStatus
from pgtest import connect, dsn, fresh_schema
from status_support import StatusRules, claim_one, msg

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


@pytest.fixture
def open_driver(schema: str) -> Iterator[Any]:
    opened: list[PostgresQueueDriver] = []

    def open_one(**settings: Any) -> PostgresQueueDriver:
        opened.append(PostgresQueueDriver(dsn(), schema=schema, poll_interval=0.1, **settings))
        return opened[-1]

    yield open_one
    for driver in opened:
        driver.close()


class TestPostgresStatus(StatusRules):
    pass


def results_rows(schema: str) -> list[tuple[Any, ...]]:
    with connect() as conn:
        return conn.execute(
            f'SELECT job_id, state FROM "{schema}".glasswork_job_results ORDER BY job_id'
        ).fetchall()


def test_finishing_with_nothing_to_keep_writes_no_end(open_driver: Any, schema: str) -> None:
    driver = open_driver()
    driver.enqueue_many([msg(), msg()])
    received = driver.receive(max_messages=2)
    driver.finish_many([(r, FinalStatus("done", result=1, keep_for=0)) for r in received])
    assert driver.pending_count() == 0 and results_rows(schema) == []


def test_a_lost_statement_repeated_after_reconnecting_keeps_one_end(
    open_driver: Any, schema: str
) -> None:
    driver = open_driver()
    message = msg()
    driver.enqueue(message)
    received = claim_one(driver)
    driver.finish(received, FinalStatus("done", result="first"))
    driver.finish(received, FinalStatus("done", result="again"))  # as a retry would
    assert results_rows(schema) == [(message.job_id, "done")]
    assert driver.job_status(message.job_id).result == "first"


def test_expired_ends_are_purged_by_later_finishes(open_driver: Any, schema: str) -> None:
    driver = open_driver()
    old = msg()
    driver.enqueue(old)
    driver.finish(claim_one(driver), FinalStatus("done", keep_for=0.001))
    driver._next_purge = 0.0
    driver.enqueue(msg())
    driver.finish(claim_one(driver), FinalStatus("done"))
    assert old.job_id not in [job_id for job_id, _ in results_rows(schema)]
    assert len(results_rows(schema)) == 1


def make_version_4(schema: str) -> str:
    """A schema as glasswork with schema version 4 left it, holding a waiting job."""
    message = msg("kept", {"n": 1})
    with PostgresQueueDriver(dsn(), schema=schema) as driver:
        driver.enqueue(message)
    with connect(autocommit=True) as conn:
        conn.execute(f'DROP FUNCTION "{schema}".glasswork_debounce')  # version 7
        conn.execute(f'DROP TABLE "{schema}".glasswork_fair_queues')
        conn.execute(f'ALTER TABLE "{schema}".glasswork_jobs DROP COLUMN fairness_key')
        conn.execute(f'DROP TABLE "{schema}".glasswork_throttles')
        conn.execute(f'DROP FUNCTION "{schema}".glasswork_acquire')  # version 6
        conn.execute(f'DROP TABLE "{schema}".glasswork_rate_starts')
        conn.execute(f'ALTER TABLE "{schema}".glasswork_jobs DROP COLUMN slot_key')
        conn.execute(f'DROP TABLE "{schema}".glasswork_job_results')
        conn.execute(f'DROP INDEX "{schema}".glasswork_dead_letters_job_id')
        conn.execute(f'DROP INDEX "{schema}".glasswork_jobs_running')
        for column in (
            "priority",
            "cancel_requested",
            "updated_at",
            "last_error",
            "last_traceback",
            "progress",
            "progress_note",
        ):
            conn.execute(f'ALTER TABLE "{schema}".glasswork_jobs DROP COLUMN {column}')
        conn.execute(f'DELETE FROM "{schema}".glasswork_schema_versions WHERE version > 4')
    return message.job_id


def test_a_version_4_schema_is_upgraded_and_keeps_its_jobs(open_driver: Any, schema: str) -> None:
    job_id = make_version_4(schema)
    assert SCHEMA_VERSION == 8
    driver = open_driver()
    assert driver.job_status(job_id).state == "pending"
    driver.enqueue(msg(priority=2))
    first, second = claim_one(driver), claim_one(driver)
    assert job_id in second.body and job_id not in first.body
    driver.finish(second, FinalStatus("done", result="ok"))
    assert driver.job_status(job_id).result == "ok"
    with connect() as conn:
        versions = conn.execute(f'SELECT version FROM "{schema}".glasswork_schema_versions')
        assert [r[0] for r in versions] == list(range(1, SCHEMA_VERSION + 1))


def plan(schema: str, statement: str, params: dict[str, Any]) -> str:
    with connect() as conn:
        conn.execute("SET enable_seqscan = off")  # as on a large table
        rows = conn.execute(f"EXPLAIN {statement}", params).fetchall()
        conn.rollback()
    return "\n".join(r[0] for r in rows)


def test_claims_and_lookups_use_the_indexes(open_driver: Any, schema: str) -> None:
    driver = open_driver()
    claim = plan(
        schema,
        driver.sql.claim_listed,
        {"queues": ["default"], "limit": 10, "lease": 30, "rotation": 0},
    )
    assert "glasswork_jobs_priority" in claim and "glasswork_jobs_due" in claim, claim
    sorts = [line for line in claim.splitlines() if "Sort Key" in line]
    assert not any("priority" in k or "visible_at" in k for k in sorts), claim  # index order
    asked = plan(schema, driver.status_sql.cancel_requested, {"ids": ["x"]})
    progress = plan(
        schema, driver.status_sql.record_progress, {"progress": 0.5, "note": None, "job_id": "x"}
    )
    assert "glasswork_jobs_running" in asked and "glasswork_jobs_running" in progress
    status = plan(schema, driver.status_sql.status, {"job_id": "x"})
    assert "glasswork_job_results_pkey" in status, status
