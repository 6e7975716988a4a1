"""`glasswork worker` on SQS (a real moto server): leases renewed with
ChangeMessageVisibilityBatch, so a job longer than the queue's visibility timeout runs once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from glasswork.jobs import JobService
from glasswork.jobs.drivers.records import ReceivedMessage
from glasswork.jobs.drivers.sqs import SQSQueueDriver
from glasswork.jobs.drivers.sqs.consuming import MAX_VISIBILITY_SECONDS

from .conftest import REGION, Aws
from .test_sqs_driver_moto import RequestCounter
from .test_worker_processes import APP, COMMAND, TESTS, record, stop_within, wait_until


def make_driver(aws: Aws, url: str) -> SQSQueueDriver:
    return SQSQueueDriver(region=REGION, queues={"default": url}, endpoint_url=aws.endpoint)


def runs(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY started")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


@pytest.mark.subprocess
def test_a_job_longer_than_the_visibility_timeout_runs_once_with_two_workers(
    aws: Aws, tmp_path: Path
) -> None:
    url = aws.create_queue("jobs", visibility_timeout=2)
    runs_db = tmp_path / "runs.db"
    driver_url = f"sqs://?region={REGION}&queue.default={url}&endpoint_url={aws.endpoint}"
    workers = []
    for name in ("a", "b"):
        log = (tmp_path / f"{name}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [*COMMAND, "worker", APP, "--driver", driver_url],
                cwd=TESTS,
                env={**os.environ, "GLASSWORK_TEST_RUNS": str(runs_db)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    for name in ("a", "b"):
        wait_until(lambda n=name: "worker started" in (tmp_path / f"{n}.log").read_text())
    try:
        JobService(make_driver(aws, url)).enqueue(record, {"key": "long", "sleep": 5})
        [run] = wait_until(
            lambda: [r for r in runs(runs_db) if r["finished"]], timeout=30, what="the job"
        )
        time.sleep(2.5)  # past another visibility timeout: a second delivery would show now
        assert len(runs(runs_db)) == 1
        assert run["attempt"] == 1
        assert run["finished"] - run["started"] >= 5
    finally:
        for worker in workers:
            stop_within(worker, 10)
    logs = "".join((tmp_path / f"{n}.log").read_text() for n in ("a", "b"))
    assert "lost their lease" not in logs


def test_extend_leases_keeps_messages_hidden_and_reports_those_no_longer_held(
    aws: Aws,
) -> None:
    url = aws.create_queue("jobs", visibility_timeout=1)
    driver = make_driver(aws, url)
    assert driver.visibility_timeout == 1.0  # read from the queue
    service = JobService(driver)
    for i in range(12):
        service.enqueue(record, {"key": str(i)})
    received: list[ReceivedMessage] = []
    while len(received) < 12:
        received += driver.receive(max_messages=10, wait_seconds=1)
    requests = RequestCounter(driver.client)

    assert driver.extend_leases(received, 30) == 12
    assert requests.count("ChangeMessageVisibilityBatch") == 2  # 10 a request
    time.sleep(1.5)  # past the queue's own 1 s
    assert driver.receive(wait_seconds=0) == []  # still hidden: extended

    driver.ack_many(received[:1])
    assert driver.extend_leases(received[:2], 30) == 1  # the acked one is not held
    # SQS allows 12 hours in all from the first receive: past it, a message is not held.
    assert driver.extend_leases(received[2:4], MAX_VISIBILITY_SECONDS + 100) == 0
