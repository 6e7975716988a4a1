"""Job status through the Lambda handler, on the SQS driver with a status table (moto
server): a job enqueued with JobService, received from SQS and handed to the handler as
Lambda's SQS integration would, is followed from start to end (result, retry, dead letter,
cancellation before and during its run, a redelivery after its end), and EventBridge runs
too; without a status table the handler makes no DynamoDB request at all."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from glasswork import define_module
from glasswork.jobs import (
    BatchRetryError,
    JobContext,
    JobFailedError,
    JobService,
    bootstrap_worker,
    define_job,
    define_periodic_job,
)
from glasswork.jobs.drivers.sqs import SQSQueueDriver, create_status_table
from glasswork.jobs.testing import FakeLambdaContext, sqs_event_from_messages

from .conftest import REGION, Aws
from .test_sqs_driver_moto import RequestCounter

ACCOUNT = "123456789012"  # moto's account
STATUS = "job-status"


def calls() -> list[Any]:
    return []


def send_report(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.services.calls.append(payload["n"])
    if payload["n"] == 0 and ctx.attempt == 1:
        raise RuntimeError("downstream busy")
    if payload["n"] < 0:
        raise ValueError(f"no report {payload['n']}")
    ctx.progress(1.0, "all sent")
    return {"sent": payload["n"]}


report = define_job(name="report", handler=send_report, retry={"max_attempts": 2})
doomed = define_job(name="doomed", handler=send_report, retry={"max_attempts": 1})
forgotten = define_job(name="forgotten", handler=send_report, result_ttl=0)


def wait_to_be_cancelled(payload: dict[str, Any], ctx: JobContext) -> str:
    """Runs until asked to stop (reporting progress on the way), 20 s at most."""
    ctx.progress(0.25, "waiting")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ctx.raise_if_cancelled()
        time.sleep(0.01)
    return "never cancelled"


async def sleep_long(payload: dict[str, Any], ctx: JobContext) -> str:
    ctx.services.calls.append("started")
    await asyncio.sleep(20)
    return "never cancelled"


stoppable = define_job(name="stoppable", handler=wait_to_be_cancelled)
sleeper = define_job(name="sleeper", handler=sleep_long)


def nightly(payload: Any, ctx: JobContext) -> dict[str, Any]:
    ctx.services.calls.append("nightly")
    return {"cleaned": 3}


JOBS = [
    report,
    doomed,
    forgotten,
    stoppable,
    sleeper,
    define_periodic_job(name="nightly", handler=nightly),
]


@pytest.fixture
def queue(aws: Aws) -> str:
    create_status_table(STATUS, client=aws.dynamodb)
    return aws.create_queue("jobs", dead_letter=aws.create_queue("jobs-dlq"))


def make_driver(aws: Aws, url: str, status_table: str | None = STATUS) -> SQSQueueDriver:
    return SQSQueueDriver(
        region=REGION,
        queues={"default": url, "periodic": url},
        endpoint_url=aws.endpoint,
        status_table=status_table,
    )


@pytest.fixture
def driver(aws: Aws, queue: str) -> SQSQueueDriver:
    return make_driver(aws, queue)


def make_handler(driver: SQSQueueDriver, **options: Any) -> Any:
    module = define_module(name="w", providers=[calls], jobs=JOBS)
    return bootstrap_worker(module=module, driver=driver, check_setup=False, **options)


def context() -> FakeLambdaContext:
    return FakeLambdaContext(remaining_ms=60_000, account=ACCOUNT)


def receive(aws: Aws, url: str, expected: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(messages) < expected:
        assert time.monotonic() < deadline, f"expected {expected} messages, got {len(messages)}"
        messages += aws.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
    return messages


def run(handler: Any, aws: Aws, url: str, messages: list[dict[str, Any]]) -> Any:
    """Hand ``messages`` to the handler as Lambda does, then delete the records it did not
    report, as the event source mapping does. Returns its response, or what it raised."""
    try:
        response = handler(sqs_event_from_messages(messages, aws.queue_arn(url)), context())
    except BatchRetryError as exc:
        return exc
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return response


def visible_again(aws: Aws, url: str, messages: list[dict[str, Any]]) -> None:
    for m in messages:
        aws.sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )


def in_background(fn: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- a run from start to end --------------------------------------------------------------


def test_a_job_run_by_lambda_is_done_with_its_result_and_progress_and_wait_returns_it(
    aws: Aws, driver: SQSQueueDriver, queue: str
) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(report, {"n": 3})
    assert jobs.status(handle.job_id).state == "pending"  # type: ignore[union-attr]
    handler = make_handler(driver)

    assert run(handler, aws, queue, receive(aws, queue, 1)) == {"batchItemFailures": []}

    status = jobs.status(handle.job_id)
    assert status is not None
    assert (status.state, status.result, status.attempts, status.error) == (
        "done",
        {"sent": 3},
        1,
        None,
    )
    assert (status.progress, status.progress_note) == (1.0, "all sent")
    assert handle.wait(timeout=5) == {"sent": 3}
    assert jobs.wait(handle.job_id, timeout=5) == {"sent": 3}


def test_a_batch_costs_one_parallel_start_and_one_batch_write_of_its_ends(
    aws: Aws, driver: SQSQueueDriver, queue: str
) -> None:
    jobs = JobService(driver)
    handles = jobs.enqueue_many(report, [{"n": n} for n in range(1, 11)])
    messages = receive(aws, queue, 10)
    handler = make_handler(driver)
    dynamodb, sqs = RequestCounter(driver.dynamodb), RequestCounter(driver.client)

    assert run(handler, aws, queue, messages) == {"batchItemFailures": []}

    assert sorted(dynamodb.calls) == ["BatchWriteItem"] + ["UpdateItem"] * 10
    assert sqs.calls == []  # Lambda deletes the records
    assert {jobs.status(h.job_id).state for h in handles} == {"done"}  # type: ignore[union-attr]


def test_a_job_kept_zero_seconds_leaves_no_status_behind(
    aws: Aws, driver: SQSQueueDriver, queue: str
) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(forgotten, {"n": 1})
    assert run(make_handler(driver), aws, queue, receive(aws, queue, 1)) == {
        "batchItemFailures": []
    }
    assert jobs.status(handle.job_id) is None


def test_a_run_to_retry_is_reported_and_recorded_retrying_with_its_error(
    aws: Aws, driver: SQSQueueDriver, queue: str
) -> None:
    jobs = JobService(driver)
    busy, fine = jobs.enqueue(report, {"n": 0}), jobs.enqueue(report, {"n": 1})
    handler = make_handler(driver)
    messages = receive(aws, queue, 2)

    response = run(handler, aws, queue, messages)

    busy_message = next(m for m in messages if busy.job_id in m["Body"])
    assert response == {"batchItemFailures": [{"itemIdentifier": busy_message["MessageId"]}]}
    status = jobs.status(busy.job_id)
    assert status is not None
    assert (status.state, status.error, status.attempts) == (
        "retrying",
        "RuntimeError: downstream busy",
        1,
    )
    assert status.traceback is not None and "downstream busy" in status.traceback
    assert jobs.status(fine.job_id).state == "done"  # type: ignore[union-attr]

    visible_again(aws, queue, [busy_message])
    assert run(handler, aws, queue, receive(aws, queue, 1)) == {"batchItemFailures": []}
    again = jobs.status(busy.job_id)
    assert again is not None and (again.state, again.attempts, again.result) == (
        "done",
        2,
        {"sent": 0},
    )


def test_a_dead_lettered_job_is_dead_with_its_traceback_and_wait_raises(
    aws: Aws, driver: SQSQueueDriver, queue: str
) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(doomed, {"n": -4})

    assert run(make_handler(driver), aws, queue, receive(aws, queue, 1)) == {
        "batchItemFailures": []
    }

    status = jobs.status(handle.job_id)
    assert status is not None and status.state == "dead"
    assert status.error is not None and "ValueError: no report -4" in status.error
    assert status.traceback is not None and "in send_report" in status.traceback
    with pytest.raises(JobFailedError) as failed:
        handle.wait(timeout=5)
    assert failed.value.state == "dead"
    assert len(aws.drain(_dlq(aws), wait=1)) == 1


def _dlq(aws: Aws) -> str:
    return str(aws.sqs.get_queue_url(QueueName="jobs-dlq")["QueueUrl"])


# -- runs that must not happen ---------------------------------------------------------------


def test_a_job_cancelled_before_its_delivery_is_not_run_and_lambda_deletes_it(
    aws: Aws, driver: SQSQueueDriver, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = JobService(driver)
    cancelled, other = jobs.enqueue(report, {"n": 1}), jobs.enqueue(report, {"n": 2})
    assert jobs.cancel(cancelled.job_id) is True
    handler = make_handler(driver)

    with caplog.at_level(logging.INFO, logger="glasswork.jobs"):
        assert run(handler, aws, queue, receive(aws, queue, 2)) == {"batchItemFailures": []}

    assert handler.services.calls == [2]
    assert jobs.status(cancelled.job_id).state == "cancelled"  # type: ignore[union-attr]
    assert jobs.status(other.job_id).state == "done"  # type: ignore[union-attr]
    assert "1 record(s) not run: cancelled, or ended before" in caplog.text
    assert aws.drain(queue) == []  # reported as a success: Lambda deleted it


def test_a_redelivery_of_a_finished_job_is_not_run_again(
    aws: Aws, driver: SQSQueueDriver, queue: str
) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(report, {"n": 5})
    handler = make_handler(driver)
    first = receive(aws, queue, 1)
    event = sqs_event_from_messages(first, aws.queue_arn(queue))
    assert handler(event, context()) == {"batchItemFailures": []}
    # Lambda never deleted it (it died first, say): SQS delivers the record again.
    visible_again(aws, queue, first)
    again = receive(aws, queue, 1)
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"

    assert run(handler, aws, queue, again) == {"batchItemFailures": []}

    assert handler.services.calls == [5]
    status = jobs.status(handle.job_id)
    assert status is not None and (status.state, status.attempts) == ("done", 1)
    assert aws.drain(queue) == []


def test_a_batch_whose_starts_cannot_be_recorded_runs_nothing_and_comes_back(
    aws: Aws, driver: SQSQueueDriver, queue: str
) -> None:
    JobService(driver).enqueue_many(report, [{"n": 1}, {"n": 2}])
    down = make_driver(aws, queue, status_table="no-such-table")  # DynamoDB says no
    handler = make_handler(down)
    messages = receive(aws, queue, 2)

    raised = run(handler, aws, queue, messages)

    assert isinstance(raised, BatchRetryError)
    assert "none ran" in str(raised)
    assert sorted(raised.retried) == sorted(m["MessageId"] for m in messages)
    assert handler.services.calls == []
    visible_again(aws, queue, messages)
    assert len(aws.drain(queue, wait=1, expected=2)) == 2  # still on the queue


# -- cancelling a running job ---------------------------------------------------------------


def test_a_running_sync_job_sees_its_cancellation_and_ends_cancelled(
    aws: Aws, driver: SQSQueueDriver, queue: str
) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(stoppable, {})
    handler = make_handler(driver)

    def cancel_when_running() -> None:
        wait_for(lambda: jobs.status(handle.job_id).state == "running", "the run")  # type: ignore[union-attr]
        # The progress reported is handed on while the job runs (about once a second).
        wait_for(
            lambda: jobs.status(handle.job_id).progress == 0.25,  # type: ignore[union-attr]
            "the progress",
        )
        assert jobs.cancel(handle.job_id, "not needed") is True

    canceller = in_background(cancel_when_running)
    started = time.monotonic()
    assert run(handler, aws, queue, receive(aws, queue, 1)) == {"batchItemFailures": []}
    canceller.join(5)

    assert time.monotonic() - started < 15  # stopped, not run to its end
    status = jobs.status(handle.job_id)
    assert status is not None and status.state == "cancelled"
    assert (status.progress, status.progress_note) == (0.25, "waiting")
    with pytest.raises(JobFailedError) as failed:
        handle.wait(timeout=5)
    assert failed.value.state == "cancelled"
    assert aws.drain(queue) == []  # never retried


def test_a_running_async_job_has_its_task_cancelled_and_ends_cancelled(
    aws: Aws, driver: SQSQueueDriver, queue: str
) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(sleeper, {})
    cancelled: list[str] = []
    handler = make_handler(
        driver, hooks={"on_job_cancelled": lambda job, ctx, err: cancelled.append(job.job_id)}
    )

    def cancel_when_running() -> None:
        wait_for(lambda: handler.services.calls == ["started"], "the run")
        assert jobs.cancel(handle.job_id) is True

    canceller = in_background(cancel_when_running)
    started = time.monotonic()
    assert run(handler, aws, queue, receive(aws, queue, 1)) == {"batchItemFailures": []}
    canceller.join(5)

    assert time.monotonic() - started < 15
    assert jobs.status(handle.job_id).state == "cancelled"  # type: ignore[union-attr]
    assert cancelled == [handle.job_id]


# -- EventBridge ------------------------------------------------------------------------------


def test_a_periodic_run_is_recorded_and_a_second_delivery_of_its_event_is_not_run(
    driver: SQSQueueDriver,
) -> None:
    handler = make_handler(driver)
    event = {"id": "event-1", "detail": {"jobName": "nightly"}}

    assert handler(event, context()) == {"jobName": "nightly", "jobId": "event-1", "status": "done"}
    assert handler(event, context()) == {
        "jobName": "nightly",
        "jobId": "event-1",
        "status": "skipped",
    }

    assert handler.services.calls == ["nightly"]
    status = JobService(driver).status("event-1")
    assert status is not None
    assert (status.state, status.result, status.queue, status.attempts) == (
        "done",
        {"cleaned": 3},
        "periodic",
        1,
    )


# -- without a status table -------------------------------------------------------------------


def test_without_a_status_table_the_handler_makes_no_dynamodb_request(aws: Aws, queue: str) -> None:
    driver = make_driver(aws, queue, status_table=None)
    jobs = JobService(driver)
    jobs.enqueue_many(report, [{"n": 0}, {"n": 1}])
    jobs.enqueue(doomed, {"n": -1})
    handler = make_handler(driver)
    assert handler.statuses is None and handler.runner.watch is None
    dynamodb = RequestCounter(driver.dynamodb)

    response = run(handler, aws, queue, receive(aws, queue, 3))
    assert handler({"id": "event-2", "jobName": "nightly"}, context())["status"] == "done"

    assert len(response["batchItemFailures"]) == 1  # the retry (the dead one is dead-lettered)
    assert sorted(handler.services.calls, key=str) == [-1, 0, 1, "nightly"]
    assert dynamodb.calls == []


def test_a_fifo_record_held_back_behind_a_retry_gets_no_status_write(aws: Aws) -> None:
    create_status_table(STATUS, client=aws.dynamodb)
    url = aws.create_queue("jobs.fifo")
    driver = make_driver(aws, url)
    jobs = JobService(driver)
    busy, held = jobs.enqueue(report, {"n": 0}), jobs.enqueue(report, {"n": 1})
    messages = receive(aws, url, 2)
    handler = make_handler(driver)
    dynamodb = RequestCounter(driver.dynamodb)

    raised = run(handler, aws, url, messages)

    assert isinstance(raised, BatchRetryError)  # both reported: the batch comes back
    assert handler.services.calls == [0]  # the second waits behind the first, in order
    # Both starts recorded before the batch ran, then only the retry.
    assert sorted(dynamodb.calls) == ["UpdateItem"] * 3
    assert jobs.status(busy.job_id).state == "retrying"  # type: ignore[union-attr]
    waiting = jobs.status(held.job_id)
    assert waiting is not None and (waiting.state, waiting.error) == ("running", None)
