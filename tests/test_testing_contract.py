"""The shipped driver contract suite (glasswork.jobs.testing.contract) run on our four
drivers, as a driver author runs it on theirs: SQLite (a file), PostgreSQL (the real server,
a schema per test), the mock, and SQS on the moto server (with DLQs, the scheduler table and
a unique-key table and a status table)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glasswork.jobs import MockQueueDriver
from glasswork.jobs.drivers.contract import QueueDriver
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.testing.contract import *  # noqa: F403
from glasswork.jobs.testing.contract import QUEUES, ContractOptions, DriverFactory
from pgtest import dsn, fresh_schema

SQS = pytest.param("sqs", marks=pytest.mark.aws)


#: The suite on PostgreSQL and SQS is left out of the quick loop (pytest -m "not slow"): SQLite
#: and the mock run it there.
POSTGRES = pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])


@pytest.fixture(params=["sqlite", POSTGRES, "mock", SQS])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def driver_factory(kind: str, request: pytest.FixtureRequest) -> Iterator[DriverFactory]:
    opened: list[Any] = []
    if kind == "sqlite":
        path = request.getfixturevalue("tmp_path") / "jobs.db"

        def make(*, lease_seconds: float | None = None) -> QueueDriver:
            opened.append(SQLiteQueueDriver(path, visibility_timeout=lease_seconds or 30))
            return opened[-1]

        yield make
    elif kind == "postgresql":
        with fresh_schema() as schema:

            def make(*, lease_seconds: float | None = None) -> QueueDriver:
                driver = PostgresQueueDriver(
                    dsn(), schema=schema, visibility_timeout=lease_seconds or 30
                )
                opened.append(driver)
                return driver

            yield make
    elif kind == "mock":
        # One in-memory store: the mock's state is the driver, so every call shares it.
        mock = MockQueueDriver()
        yield lambda *, lease_seconds=None: mock
    else:
        yield sqs_factory(request)
    for driver in opened:
        driver.close()


def sqs_factory(request: pytest.FixtureRequest) -> DriverFactory:
    """SQS drivers on fresh moto queues (each with a DLQ), the scheduler table for long
    delays, a unique-key table, a status table and a limits table (so the StatusStore and
    FlowLimits tests run)."""
    boto3 = pytest.importorskip("boto3")
    from glasswork.jobs.drivers.sqs import SQSQueueDriver, create_limits_table
    from glasswork.jobs.drivers.sqs.scheduler import create_scheduler_table
    from glasswork.jobs.drivers.sqs.status import create_status_table
    from moto_support import reset_moto

    endpoint = request.getfixturevalue("moto_endpoint")
    monkeypatch = request.getfixturevalue("monkeypatch")
    reset_moto(endpoint)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    urls = {q: sqs.create_queue(QueueName=f"jobs-{q}")["QueueUrl"] for q in QUEUES}
    dlqs = {q: sqs.create_queue(QueueName=f"jobs-{q}-dlq")["QueueUrl"] for q in QUEUES}
    create_scheduler_table("jobs-table", region="us-east-1", endpoint_url=endpoint)
    create_status_table("jobs-status", region="us-east-1", endpoint_url=endpoint)
    create_limits_table("jobs-limits", region="us-east-1", endpoint_url=endpoint)

    def make(*, lease_seconds: float | None = None) -> QueueDriver:
        if lease_seconds is not None:  # SQS keeps leases per queue, in whole seconds
            for url in urls.values():
                timeout = str(max(1, math.ceil(lease_seconds)))
                sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": timeout})
        return SQSQueueDriver(
            queues=urls,
            dead_letter_queues=dlqs,
            region="us-east-1",
            endpoint_url=endpoint,
            scheduler_table="jobs-table",
            unique_table="jobs-table",
            status_table="jobs-status",
            limits_table="jobs-limits",
        )

    return make


@pytest.fixture
def contract_options(kind: str) -> ContractOptions:
    if kind == "sqs":
        return ContractOptions(
            known_gaps={
                "test_a_stale_receipt_settles_nothing": (
                    "SQS deletes a message given any receipt handle it was received with, "
                    "and refuses a stale one's visibility change (moto as AWS)"
                ),
                "test_a_stale_delivery_finished_done_does_not_end_the_running_job": (
                    "SQS deletes a message given any receipt handle it was received with, and "
                    "the status table writes ends unconditionally (BatchWriteItem takes no "
                    "conditions): a stale delivery's finish ends its job (that run did finish) "
                    "while the new delivery runs"
                ),
                "test_a_key_is_free_once_its_job_is_acked": (
                    "SQS frees a unique key in the worker's run step (its RunSteps) once the "
                    "job finishes, not on ack"
                ),
            }
        )
    return ContractOptions()


def test_each_driver_runs_the_suite_on_a_store_of_its_own(
    driver_factory: DriverFactory, tmp_path: Path
) -> None:
    """The factories above give the suite what it asks for: a second driver sees the
    first's jobs, and the store starts empty."""
    from glasswork.jobs import JobMessage

    first, second = driver_factory(), driver_factory()
    message = JobMessage.create("probe", None)
    first.enqueue(message)
    [got] = second.receive(None, 10, 5.0)
    assert got.body == message.encode()


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_example_in_the_driver_docs_runs_the_suite(tmp_path: Path) -> None:
    """docs/drivers.md "Testing your driver": its test module, run by pytest as a driver
    author would, passes (the SQLite driver standing in for theirs)."""
    docs = (Path(__file__).parents[1] / "docs" / "drivers.md").read_text()
    section = docs[docs.index("## Testing your driver") :]
    [example] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[:1]
    (tmp_path / "test_my_driver.py").write_text(example)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= 40, summary
    assert "failed" not in summary and "error" not in summary, summary
