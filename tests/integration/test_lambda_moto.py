"""The Lambda worker against real SQS (and Lambda) APIs on a moto server.

Messages are sent to a moto queue, received with boto3 and turned into the event Lambda's SQS
integration would deliver (``sqs_event_from_messages``); the handler runs with a fake Lambda
context inside a "Lambda" environment (``AWS_LAMBDA_FUNCTION_NAME`` set, every AWS endpoint
pointing at moto); afterwards the queues are read back with boto3. ``settle`` does what the
event source mapping does with the handler's answer: it deletes the records not reported,
and nothing when the handler raised.

Event source mappings are created disabled: an enabled mapping makes moto invoke the function
on every send, which needs Docker. The worker reads the mapping's settings either way.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    BatchRetryError,
    DeadLetterUnavailableError,
    JobContext,
    JobMessage,
    PermanentJobError,
    bootstrap_worker,
    define_job,
    define_periodic_job,
)
from glasswork.jobs.drivers.sqs import SQSQueueDriver
from glasswork.jobs.testing import FakeLambdaContext, sqs_event_from_messages
from moto_support import moto_server

from .conftest import REGION, Aws

ACCOUNT = "123456789012"  # moto's account


class Order(BaseModel):
    n: int


def process(payload: Order, ctx: JobContext) -> None:
    ctx.services.ledger.append(payload.n)
    if payload.n < 0:
        raise PermanentJobError(f"order {payload.n} does not exist")
    if payload.n == 0:
        raise RuntimeError("downstream busy")


def ledger() -> list[int]:
    return []


process_order = define_job(
    name="process-order", schema=Order, handler=process, retry={"max_attempts": 2}
)


@pytest.fixture
def in_lambda(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """The environment Lambda gives a function, with every AWS endpoint at moto."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "worker")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    return aws


def make_worker(**options: Any) -> Any:
    module = define_module(name="w", providers=[ledger], jobs=[process_order])
    return bootstrap_worker(module=module, **options)


def context() -> FakeLambdaContext:
    return FakeLambdaContext(remaining_ms=60_000, account=ACCOUNT)


def send(aws: Aws, url: str, *numbers: int, **params: Any) -> list[str]:
    bodies = [JobMessage.create("process-order", {"n": n}).encode() for n in numbers]
    for body in bodies:
        aws.sqs.send_message(QueueUrl=url, MessageBody=body, **params)
    return bodies


def receive(aws: Aws, url: str, expected: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while len(messages) < expected:
        batch = aws.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        assert batch, f"expected {expected} messages, got {len(messages)}"
        messages.extend(batch)
    return messages


def run(handler: Any, aws: Aws, url: str, messages: list[dict[str, Any]]) -> Any:
    """Hand the messages to the handler as Lambda would, then settle them as the event
    source mapping does. Returns the response, or the exception the handler raised."""
    event = sqs_event_from_messages(messages, aws.queue_arn(url))
    try:
        response = handler(event, context())
    except BatchRetryError as exc:
        return exc
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return response


def visible_again(aws: Aws, url: str, messages: list[dict[str, Any]]) -> None:
    """Let the visibility timeout of ``messages`` run out now."""
    for m in messages:
        aws.sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )


def order(message: dict[str, Any]) -> int:
    return int(json.loads(message["Body"])["payload"]["n"])


def left_on(aws: Aws, url: str, messages: list[dict[str, Any]]) -> list[int]:
    """The orders of ``messages`` still on the queue (their visibility made to run out)."""
    left = []
    for m in messages:
        try:
            visible_again(aws, url, [m])
        except aws.sqs.exceptions.ReceiptHandleIsInvalid:
            continue  # deleted
        left.append(m)
    return sorted(order(m) for m in aws.drain(url)) if left else []


# -- the dead-letter path without a driver ------------------------------------------------


def test_without_a_driver_a_permanent_failure_reaches_the_redrive_policys_dlq(in_lambda):
    aws = in_lambda
    dlq = aws.create_queue("orders-dlq")
    url = aws.create_queue("orders", dead_letter=dlq, max_receive_count=10)
    doomed, _ = send(aws, url, -7, 1)
    dead: list[str] = []
    handler = make_worker(
        hooks={"on_job_dead_letter": lambda job, ctx, err: dead.append(job.job_id)}
    )

    response = run(handler, aws, url, receive(aws, url, 2))

    assert response == {"batchItemFailures": []}
    [message] = aws.drain(dlq, wait=1)
    assert message["Body"] == doomed
    attributes = message["MessageAttributes"]
    assert attributes["GlassworkReason"]["StringValue"] == (
        "PermanentJobError: order -7 does not exist"
    )
    assert attributes["GlassworkSourceQueue"]["StringValue"] == "orders"
    assert dead == [json.loads(doomed)["jobId"]]


def test_without_a_driver_retries_used_up_reach_the_dlq_with_the_reason(in_lambda):
    aws = in_lambda
    dlq = aws.create_queue("orders-dlq")
    url = aws.create_queue("orders", dead_letter=dlq, max_receive_count=10)
    [busy] = send(aws, url, 0)
    handler = make_worker()

    first = receive(aws, url, 1)
    assert isinstance(run(handler, aws, url, first), BatchRetryError)  # attempt 1 of 2
    visible_again(aws, url, first)
    second = receive(aws, url, 1)
    assert second[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert run(handler, aws, url, second) == {"batchItemFailures": []}

    [message] = aws.drain(dlq, wait=1)
    assert message["Body"] == busy
    assert message["MessageAttributes"]["GlassworkReason"]["StringValue"] == (
        "failed 2 of 2 attempts: RuntimeError: downstream busy"
    )
    assert handler.services.ledger == [0, 0]


def test_without_a_dlq_a_failed_message_is_reported_and_stays_on_its_queue(in_lambda, caplog):
    aws = in_lambda
    url = aws.create_queue("orders")  # no redrive policy
    send(aws, url, -1, 2)
    handler = make_worker()
    messages = receive(aws, url, 2)

    with caplog.at_level(logging.ERROR, logger="glasswork.jobs"):
        response = run(handler, aws, url, messages)

    doomed_id = next(m["MessageId"] for m in messages if order(m) == -1)
    assert response == {"batchItemFailures": [{"itemIdentifier": doomed_id}]}
    assert "queue orders has no redrive policy" in caplog.text
    assert left_on(aws, url, messages) == [-1]


def test_a_dlq_send_that_fails_keeps_the_message_on_its_queue(in_lambda, caplog):
    aws = in_lambda
    dlq = aws.create_queue("orders-dlq")
    url = aws.create_queue("orders", dead_letter=dlq)
    aws.sqs.delete_queue(QueueUrl=dlq)  # the policy now names a queue that is gone
    send(aws, url, -1, 5)
    messages = receive(aws, url, 2)

    with caplog.at_level(logging.ERROR, logger="glasswork.jobs"):
        response = run(make_worker(), aws, url, messages)

    assert len(response["batchItemFailures"]) == 1
    assert "the send to" in caplog.text and "orders-dlq failed" in caplog.text
    assert left_on(aws, url, messages) == [-1]


def test_the_redrive_policy_is_looked_up_once(in_lambda, monkeypatch):
    aws = in_lambda
    dlq = aws.create_queue("orders-dlq")
    url = aws.create_queue("orders", dead_letter=dlq)
    calls: list[str] = []
    # The worker's clients come from boto3's default session: count its requests.
    session = boto3.session.Session(region_name=REGION)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    session.events.register(
        "before-send.sqs.GetQueueAttributes", lambda **kwargs: calls.append("get")
    )
    handler = make_worker()
    looked_up: list[list[str]] = []
    for _ in range(2):
        send(aws, url, -1, -2, 3)
        run(handler, aws, url, receive(aws, url, 3))
        looked_up.append(list(calls))

    assert len(aws.drain(dlq, wait=1, expected=4)) == 4
    # The first batch reads the queue's redrive policy and the DLQ's size limit (the reason
    # attribute must fit in it); the second reads nothing again.
    assert looked_up[0] == ["get", "get"]
    assert looked_up[1] == looked_up[0]


def test_a_fifo_queue_dead_letters_to_its_fifo_dlq_in_the_jobs_group(in_lambda):
    aws = in_lambda
    dlq = aws.create_queue("orders-dlq.fifo")
    url = aws.create_queue("orders.fifo", dead_letter=dlq)
    doomed, _ = send(aws, url, -3, 4, MessageGroupId="customer-1", MessageDeduplicationId="x")
    handler = make_worker()

    assert run(handler, aws, url, receive(aws, url, 1)) == {"batchItemFailures": []}

    [message] = aws.drain(dlq, wait=1)
    assert message["Body"] == doomed
    assert message["Attributes"]["MessageGroupId"] == "process-order"


def test_with_the_sqs_driver_a_periodic_dead_letter_that_cannot_be_sent_raises(in_lambda):
    aws = in_lambda
    url = aws.create_queue("orders")

    def nightly(payload: Any, ctx: JobContext) -> None:
        raise PermanentJobError("config missing")

    driver = SQSQueueDriver(region=REGION, queues={"default": url}, endpoint_url=aws.endpoint)
    module = define_module(name="w", jobs=[define_periodic_job(name="nightly", handler=nightly)])
    handler = bootstrap_worker(module=module, driver=driver)
    with pytest.raises(DeadLetterUnavailableError, match="unknown queue 'periodic'"):
        handler({"jobName": "nightly"}, context())


# -- the setup checks ----------------------------------------------------------------------


def test_max_attempts_at_or_above_max_receive_count_is_warned_about_once(in_lambda, caplog):
    aws = in_lambda
    dlq = aws.create_queue("orders-dlq")
    url = aws.create_queue("orders", dead_letter=dlq, max_receive_count=2)
    handler = make_worker()

    with caplog.at_level(logging.WARNING, logger="glasswork.jobs"):
        for _ in range(2):
            send(aws, url, 1)
            run(handler, aws, url, receive(aws, url, 1))

    warnings = [r.getMessage() for r in caplog.records if "maxReceiveCount" in r.getMessage()]
    assert len(warnings) == 1
    assert "job 'process-order' has retry.max_attempts=2" in warnings[0]
    assert "queue orders has maxReceiveCount=2" in warnings[0]
    assert "e.g. 7" in warnings[0]


def test_a_max_receive_count_above_max_attempts_is_not_warned_about(in_lambda, caplog):
    aws = in_lambda
    dlq = aws.create_queue("orders-dlq")
    url = aws.create_queue("orders", dead_letter=dlq, max_receive_count=3)
    send(aws, url, 1)
    with caplog.at_level(logging.WARNING, logger="glasswork.jobs"):
        run(make_worker(), aws, url, receive(aws, url, 1))
    assert "maxReceiveCount" not in caplog.text


def create_function_and_mapping(aws: Aws, queue_url: str, response_types: list[str]) -> None:
    iam = boto3.client("iam", region_name=REGION, endpoint_url=aws.endpoint)
    role = iam.create_role(RoleName="worker", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("worker.py", "def handler(event, context):\n    return {}\n")
    lam = boto3.client("lambda", region_name=REGION, endpoint_url=aws.endpoint)
    lam.create_function(
        FunctionName="worker",
        Runtime="python3.12",
        Role=role,
        Handler="worker.handler",
        Code={"ZipFile": code.getvalue()},
    )
    lam.create_event_source_mapping(
        EventSourceArn=aws.queue_arn(queue_url),
        FunctionName="worker",
        BatchSize=10,
        Enabled=False,
        FunctionResponseTypes=response_types,
    )


def test_a_mapping_without_report_batch_item_failures_is_an_error_and_retries_raise(
    in_lambda, caplog
):
    aws = in_lambda
    dlq = aws.create_queue("orders-dlq")
    url = aws.create_queue("orders", dead_letter=dlq)
    create_function_and_mapping(aws, url, [])
    send(aws, url, 0, 5, 6)
    handler = make_worker()
    messages = receive(aws, url, 3)

    with caplog.at_level(logging.ERROR, logger="glasswork.jobs"):
        outcome = run(handler, aws, url, messages)

    assert isinstance(outcome, BatchRetryError)
    assert "lacks ReportBatchItemFailures" in str(outcome)
    assert "lacks FunctionResponseTypes: [ReportBatchItemFailures]" in caplog.text
    assert "bootstrap_worker(report_batch_item_failures=False)" in caplog.text
    # The finished records were deleted before raising: only the retry is left.
    assert left_on(aws, url, messages) == [0]
    assert sorted(handler.services.ledger) == [0, 5, 6]


def test_a_mapping_with_report_batch_item_failures_gets_a_partial_response(in_lambda, caplog):
    aws = in_lambda
    url = aws.create_queue("orders", dead_letter=aws.create_queue("orders-dlq"))
    create_function_and_mapping(aws, url, ["ReportBatchItemFailures"])
    send(aws, url, 0, 5)
    messages = receive(aws, url, 2)

    with caplog.at_level(logging.INFO, logger="glasswork.jobs"):
        response = run(make_worker(), aws, url, messages)

    busy_id = next(m["MessageId"] for m in messages if order(m) == 0)
    assert response == {"batchItemFailures": [{"itemIdentifier": busy_id}]}
    assert "ReportBatchItemFailures" not in caplog.text


def test_check_setup_false_leaves_the_mapping_alone(in_lambda, caplog):
    aws = in_lambda
    url = aws.create_queue("orders", dead_letter=aws.create_queue("orders-dlq"))
    create_function_and_mapping(aws, url, [])
    send(aws, url, 0, 5)

    with caplog.at_level(logging.INFO, logger="glasswork.jobs"):
        response = run(make_worker(check_setup=False), aws, url, receive(aws, url, 2))

    assert len(response["batchItemFailures"]) == 1  # trusted, as asked
    assert "ReportBatchItemFailures" not in caplog.text


def test_report_batch_item_failures_false_deletes_finished_records_then_raises(in_lambda):
    aws = in_lambda
    url = aws.create_queue("orders", dead_letter=aws.create_queue("orders-dlq"))
    send(aws, url, 0, 5, 6)
    messages = receive(aws, url, 3)

    outcome = run(make_worker(report_batch_item_failures=False), aws, url, messages)

    assert isinstance(outcome, BatchRetryError)
    assert left_on(aws, url, messages) == [0]


@pytest.fixture(scope="module")
def refusing_aws() -> Iterator[str]:
    """A second moto server that checks credentials (ours are unknown to it): every call
    is refused with HTTP 403, as it would be for a role without the permission."""
    with moto_server(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0", "PATH": "/usr/bin:/bin"}) as url:
        yield url


@pytest.mark.subprocess
def test_a_mapping_check_that_is_not_permitted_names_the_permission_once(
    in_lambda, refusing_aws, monkeypatch, caplog
):
    aws = in_lambda
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", refusing_aws)
    url = aws.create_queue("orders", dead_letter=aws.create_queue("orders-dlq"))
    handler = make_worker()

    with caplog.at_level(logging.INFO, logger="glasswork.jobs"):
        for _ in range(2):
            send(aws, url, 0, 5)
            response = run(handler, aws, url, receive(aws, url, 2))
            assert len(response["batchItemFailures"]) == 1  # partial responses still used

    told = [r for r in caplog.records if "lambda:ListEventSourceMappings" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.INFO


@pytest.mark.subprocess
def test_a_dlq_that_cannot_be_looked_up_keeps_the_message_on_its_queue(
    in_lambda, refusing_aws, monkeypatch, caplog
):
    aws = in_lambda
    url = aws.create_queue("orders", dead_letter=aws.create_queue("orders-dlq"))
    send(aws, url, -1, 5)
    messages = receive(aws, url, 2)
    # The worker's own SQS calls (the redrive policy) are refused; Lambda's are not.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", refusing_aws)

    with caplog.at_level(logging.ERROR, logger="glasswork.jobs"):
        response = run(make_worker(check_setup=False), aws, url, messages)

    doomed_id = next(m["MessageId"] for m in messages if order(m) == -1)
    assert response == {"batchItemFailures": [{"itemIdentifier": doomed_id}]}
    assert "the worker's role needs sqs:GetQueueAttributes" in caplog.text
    assert left_on(aws, url, messages) == [-1]


def test_without_boto3_a_dead_letter_is_reported_not_dropped(in_lambda, monkeypatch, caplog):
    aws = in_lambda
    url = aws.create_queue("orders", dead_letter=aws.create_queue("orders-dlq"))
    send(aws, url, -1, 5)
    messages = receive(aws, url, 2)
    handler = make_worker()
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now raises ImportError

    with caplog.at_level(logging.ERROR, logger="glasswork.jobs"):
        response = run(handler, aws, url, messages)

    assert len(response["batchItemFailures"]) == 1
    assert "boto3 is not installed" in caplog.text
