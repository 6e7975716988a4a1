"""End to end on a real (moto) SQS: JobService.enqueue -> SQS -> receive -> the SQS Lambda
event -> bootstrap_worker's handler -> ack, retries with backoff, and the DLQ."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    BatchRetryError,
    JobContext,
    JobService,
    PermanentJobError,
    TransientJobError,
    bootstrap_worker,
    define_job,
)
from glasswork.jobs.drivers import QueueStats, ReceivedMessage
from glasswork.jobs.drivers.sqs import SQSQueueDriver
from glasswork.jobs.testing import sqs_record

from .conftest import REGION, Aws


class Greeting(BaseModel):
    user_id: str


class Mailer:
    """A service the jobs use; records what they did."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []


def welcome(payload: Greeting, ctx: JobContext) -> None:
    ctx.services.mailer.sent.append((payload.user_id, ctx.attempt))


def flaky(payload: Greeting, ctx: JobContext) -> None:
    ctx.services.mailer.sent.append((payload.user_id, ctx.attempt))
    raise TransientJobError("mail server busy")


def doomed(payload: Greeting, ctx: JobContext) -> None:
    raise PermanentJobError(f"user {payload.user_id} does not exist")


send_welcome = define_job(name="send-welcome", schema=Greeting, handler=welcome)
# backoff 0: the retry is visible again at once, which also proves the worker's nack reached
# SQS (the queue's own visibility timeout is 30 s, longer than any wait here).
send_flaky = define_job(
    name="send-flaky",
    schema=Greeting,
    handler=flaky,
    retry={"max_attempts": 3, "backoff": 0, "jitter": False},
)
send_doomed = define_job(name="send-doomed", schema=Greeting, handler=doomed)


def lambda_event(driver: SQSQueueDriver, received: list[ReceivedMessage]) -> dict[str, Any]:
    """The event Lambda's SQS integration would deliver for these messages."""
    return {
        "Records": [
            sqs_record(
                r.body,
                message_id=r.message_id,
                receipt_handle=r.receipt,
                receive_count=r.attempt,
                queue=driver.queue_url(r.queue).rsplit("/", 1)[-1],
                region=REGION,
            )
            for r in received
        ]
    }


def run_worker_once(driver: SQSQueueDriver, handler: Any) -> tuple[int, dict[str, Any]]:
    """Receive a batch, hand it to the Lambda handler, ack what it did not report failed
    (as Lambda's event source mapping does; when the handler raises, Lambda deletes
    nothing). Returns (batch size, handler response, as the ids Lambda returns)."""
    received = driver.receive(max_messages=10, wait_seconds=2)
    if not received:
        return 0, {"batchItemFailures": []}
    try:
        response = handler(lambda_event(driver, received), None)
    except BatchRetryError:
        return len(received), {
            "batchItemFailures": [{"itemIdentifier": r.message_id} for r in received]
        }
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    driver.ack_many([r for r in received if r.message_id not in failed])
    return len(received), response


def setup(aws: Aws, job: Any, hooks: Any = None) -> tuple[SQSQueueDriver, Any, str, str]:
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq, max_receive_count=10, visibility_timeout=30)
    driver = SQSQueueDriver(region=REGION, queues={"default": url}, endpoint_url=aws.endpoint)
    module = define_module(name="worker", providers=[Mailer], jobs=[job])
    handler = bootstrap_worker(module=module, driver=driver, hooks=hooks)
    return driver, handler, url, dlq


def test_enqueue_to_sqs_runs_in_the_lambda_handler_and_is_acked(aws: Aws) -> None:
    driver, handler, _url, dlq = setup(aws, send_welcome)
    service = JobService(driver)
    service.enqueue(send_welcome, {"user_id": "u1"})
    service.enqueue_many(send_welcome, [{"user_id": "u2"}, {"user_id": "u3"}])

    count, response = run_worker_once(driver, handler)

    assert count == 3
    assert response == {"batchItemFailures": []}
    assert sorted(handler.services.mailer.sent) == [("u1", 1), ("u2", 1), ("u3", 1)]
    assert driver.stats()["default"] == QueueStats("default", ready=0, delayed=0, in_flight=0)
    assert aws.drain(dlq) == []


def test_transient_failures_retry_until_max_attempts_then_land_in_the_dlq(aws: Aws) -> None:
    dead: list[str] = []
    driver, handler, _url, dlq = setup(
        aws, send_flaky, hooks={"on_job_dead_letter": lambda job, ctx, err: dead.append(job.job_id)}
    )
    result = JobService(driver).enqueue(send_flaky, {"user_id": "u1"})

    responses = [run_worker_once(driver, handler) for _ in range(3)]

    # Attempts 1 and 2 are reported for retry; attempt 3 is dead-lettered and acked.
    assert [count for count, _ in responses] == [1, 1, 1]
    assert [len(r["batchItemFailures"]) for _, r in responses] == [1, 1, 0]
    assert handler.services.mailer.sent == [("u1", 1), ("u1", 2), ("u1", 3)]
    assert dead == [result.job_id]
    assert driver.stats()["default"] == QueueStats("default", 0, 0, 0, dead=1)  # dead: DLQ depth

    [message] = aws.drain(dlq, wait=1)
    assert json.loads(message["Body"])["jobId"] == result.job_id
    reason = message["MessageAttributes"]["GlassworkReason"]["StringValue"]
    assert reason == "failed 3 of 3 attempts: TransientJobError: mail server busy"
    # The worker moved it itself (receive count 3), well before the redrive policy's 10.
    assert int(message["Attributes"]["ApproximateReceiveCount"]) == 1


def test_retry_backoff_holds_the_message_back(aws: Aws) -> None:
    slow_retry = define_job(
        name="send-flaky",
        schema=Greeting,
        handler=flaky,
        retry={"max_attempts": 3, "backoff": 600, "jitter": False},
    )
    driver, handler, _url, _dlq = setup(aws, slow_retry)
    JobService(driver).enqueue(slow_retry, {"user_id": "u1"})

    _, response = run_worker_once(driver, handler)
    assert len(response["batchItemFailures"]) == 1

    # The visibility was set to the 600 s backoff: nothing to receive, one in flight.
    assert driver.receive(wait_seconds=0) == []
    assert driver.stats()["default"].in_flight == 1


def test_permanent_failure_goes_to_the_dlq_at_once(aws: Aws) -> None:
    driver, handler, _url, dlq = setup(aws, send_doomed)
    JobService(driver).enqueue(send_doomed, {"user_id": "ghost"})

    _, response = run_worker_once(driver, handler)

    assert response == {"batchItemFailures": []}
    [message] = aws.drain(dlq, wait=1)
    assert message["MessageAttributes"]["GlassworkReason"]["StringValue"] == (
        "PermanentJobError: user ghost does not exist"
    )
    assert driver.stats()["default"] == QueueStats("default", ready=0, delayed=0, in_flight=0)


def test_a_malformed_body_reaches_the_dlq_of_the_queue_named_in_the_arn(aws: Aws) -> None:
    driver, handler, url, dlq = setup(aws, send_welcome)
    aws.sqs.send_message(QueueUrl=url, MessageBody="this is not a job")

    _, response = run_worker_once(driver, handler)

    assert response == {"batchItemFailures": []}
    [message] = aws.drain(dlq, wait=1)
    assert message["Body"] == "this is not a job"
    assert message["MessageAttributes"]["GlassworkSourceQueue"]["StringValue"] == "default"
