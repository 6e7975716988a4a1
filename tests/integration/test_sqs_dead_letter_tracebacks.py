"""The traceback of a failure kept with its dead letter on SQS (a moto server): the
``GlassworkTraceback`` message attribute, trimmed to what the DLQ's message size leaves, sent
by the Lambda handler (with the SQS driver, and without a driver through the queue's redrive
policy) and by the long-running worker, and read back by DLQ peeks."""

from __future__ import annotations

from typing import Any

import pytest

from glasswork import define_module
from glasswork.jobs import JobMessage, JobService, bootstrap_worker, define_job
from glasswork.jobs.drivers.sqs.dead_letters import dead_letter_attributes
from glasswork.jobs.drivers.sqs.driver import TRACEBACK_ATTRIBUTE, SQSQueueDriver
from glasswork.jobs.testing import sqs_event
from glasswork.jobs.worker import Worker

from .conftest import REGION, Aws
from .test_lambda_moto import make_worker, order, receive, run, send, visible_again

TRACE = (
    "Traceback (most recent call last):\n"
    '  File "/app/jobs.py", line 12, in charge\n'
    "    gateway.charge(order)\n"
    "RuntimeError: card declined\n"
)


def _charge(payload: Any) -> None:
    raise RuntimeError(f"card declined for order {payload}")


charge = define_job(name="charge", handler=_charge, retry={"max_attempts": 1})
MODULE = define_module(name="shop", jobs=[charge])


@pytest.fixture
def queues(aws: Aws) -> tuple[SQSQueueDriver, str]:
    """The driver of queue ``default`` (with a DLQ); and the DLQ's URL."""
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq)
    driver = SQSQueueDriver(region=REGION, queues={"default": url}, endpoint_url=aws.endpoint)
    return driver, dlq


def test_attributes_keep_the_end_of_the_traceback_in_the_room_left() -> None:
    body = "x" * 1000
    reason = "RuntimeError: card declined"
    roomy = dead_letter_attributes(body, reason, "default", 262_144, TRACE)
    assert roomy[TRACEBACK_ATTRIBUTE]["StringValue"] == TRACE
    tight = dead_letter_attributes(body, reason, "default", 1000 + 150 + len(reason), TRACE)
    size = len(body) + sum(
        len(name) + len("String") + len(a["StringValue"].encode()) for name, a in tight.items()
    )
    assert size <= 1000 + 150 + len(reason)
    assert tight["GlassworkReason"]["StringValue"] == reason  # the reason goes first
    kept = tight[TRACEBACK_ATTRIBUTE]["StringValue"]
    assert kept.startswith("[... cut to fit the message size ...]\n")
    assert kept.endswith("RuntimeError: card declined\n") and len(kept) < len(TRACE)
    # No room at all: no traceback attribute, the message is still sent.
    assert TRACEBACK_ATTRIBUTE not in dead_letter_attributes(body, reason, "default", 1060, TRACE)
    assert TRACEBACK_ATTRIBUTE not in dead_letter_attributes(body, reason, "default", 262_144)


def test_a_dlq_peek_reads_the_traceback_back(queues: tuple[SQSQueueDriver, str]) -> None:
    driver, _ = queues
    body = JobMessage.create("charge", 1).encode()
    driver.dead_letter(body, "RuntimeError: card declined", queue="default", traceback=TRACE)
    driver.dead_letter(body, "PermanentJobError: gone", queue="default")
    records = sorted(driver.dead_letters(), key=lambda r: r.reason)
    assert [(r.reason, r.traceback) for r in records] == [
        ("PermanentJobError: gone", None),
        ("RuntimeError: card declined", TRACE),
    ]


def test_the_lambda_handler_with_the_sqs_driver_keeps_the_traceback(
    queues: tuple[SQSQueueDriver, str],
) -> None:
    driver, _ = queues
    handler = bootstrap_worker(module=MODULE, driver=driver)
    assert handler(sqs_event([JobMessage.create("charge", 7)]), None) == {"batchItemFailures": []}
    [record] = driver.dead_letters()
    assert record.traceback is not None
    assert "in _charge" in record.traceback
    assert record.traceback.endswith("RuntimeError: card declined for order 7\n")


def test_the_long_running_worker_keeps_the_traceback(queues: tuple[SQSQueueDriver, str]) -> None:
    driver, _ = queues
    JobService(driver).enqueue(charge, 8)
    summary = Worker(module=MODULE, driver=driver).run_until_empty(timeout=30)
    assert summary.dead_lettered == 1
    [record] = driver.dead_letters()
    assert record.traceback is not None and "in _charge" in record.traceback


@pytest.fixture
def in_lambda(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "worker")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    return aws


def test_without_a_driver_the_redrive_policys_dlq_gets_the_traceback(in_lambda: Aws) -> None:
    aws = in_lambda
    dlq = aws.create_queue("orders-dlq")
    url = aws.create_queue("orders", dead_letter=dlq, max_receive_count=10)
    send(aws, url, 0, -1)  # 0: a RuntimeError, retried once; -1: a deliberate PermanentJobError
    handler = make_worker()
    first = receive(aws, url, 2)
    assert run(handler, aws, url, first) != {"batchItemFailures": []}
    visible_again(aws, url, [m for m in first if order(m) == 0])
    assert run(handler, aws, url, receive(aws, url, 1)) == {"batchItemFailures": []}
    dead = {
        m["MessageAttributes"]["GlassworkReason"]["StringValue"]: m["MessageAttributes"]
        for m in aws.drain(dlq, wait=1, expected=2)
    }
    busy = dead["failed 2 of 2 attempts: RuntimeError: downstream busy"]
    trace = busy[TRACEBACK_ATTRIBUTE]["StringValue"]
    assert "in process" in trace and trace.endswith("RuntimeError: downstream busy\n")
    assert TRACEBACK_ATTRIBUTE not in dead["PermanentJobError: order -1 does not exist"]
