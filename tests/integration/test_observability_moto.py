"""Tracing through SQS, and idempotency on SQS with the DynamoDB store, against moto."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.jobs import (
    BatchRetryError,
    JobInProgressError,
    JobService,
    bootstrap_worker,
    define_job,
)
from glasswork.jobs.drivers.sqs import SQSQueueDriver
from glasswork.jobs.idempotency import (
    DynamoDBIdempotencyStore,
    Idempotency,
    create_idempotency_table,
)
from glasswork.jobs.worker import Worker

from .conftest import REGION, Aws
from .test_sqs_end_to_end import lambda_event, run_worker_once

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from idempotency_support import (  # noqa: E402
    check_claim_complete_release,
    check_jobs_whose_names_and_keys_run_together_never_share_a_key,
    check_lapsed_records_count_as_absent,
)
from otel_support import assert_child_of, attrs, only, span_exporter  # noqa: E402


def sqs_driver(aws: Aws, url: str) -> SQSQueueDriver:
    return SQSQueueDriver(region=REGION, queues={"default": url}, endpoint_url=aws.endpoint)


# -- tracing ------------------------------------------------------------------------------


def test_a_job_sent_through_sqs_runs_in_the_trace_of_its_enqueue(aws: Aws) -> None:
    exporter = span_exporter()
    url = aws.create_queue("traced")
    driver = sqs_driver(aws, url)
    ping = define_job(name="ping", handler=lambda payload, ctx: None)
    module = define_module("app", jobs=[ping])
    result = JobService(driver).enqueue(ping, {"n": 1})

    # Any consumer sees the context as message attributes, and Glasswork in the envelope.
    [raw] = aws.sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    send = only(exporter, "send default")
    assert attrs(send)["messaging.system"] == "aws_sqs"
    assert attrs(send)["messaging.message.id"] == raw["MessageId"] == result.message_id
    traceparent = raw["MessageAttributes"]["traceparent"]["StringValue"]
    assert traceparent.startswith(f"00-{send.context.trace_id:032x}-{send.context.span_id:016x}-")
    assert f'"traceparent":"{traceparent}"' in raw["Body"]
    aws.sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=raw["ReceiptHandle"], VisibilityTimeout=0
    )

    # The Lambda worker, fed the SQS event...
    assert run_worker_once(driver, bootstrap_worker(module=module, driver=driver))[0] == 1
    assert_child_of(only(exporter, "process ping"), send)

    # ...and the long-running worker receiving from SQS itself.
    exporter.clear()
    JobService(driver).enqueue(ping, {"n": 2})
    worker = Worker(module=module, driver=driver, install_signal_handlers=False)
    assert worker.run_until_empty(timeout=20).done == 1
    run = only(exporter, "process ping")
    assert_child_of(run, only(exporter, "send default"))
    assert attrs(run)["messaging.system"] == "aws_sqs"


# -- the DynamoDB store -------------------------------------------------------------------


@pytest.fixture
def table(aws: Aws) -> str:
    create_idempotency_table("idempotency", client=aws.dynamodb)
    return "idempotency"


def test_create_idempotency_table_is_idempotent_and_turns_on_ttl(aws: Aws, table: str) -> None:
    arn = create_idempotency_table(table, client=aws.dynamodb)
    assert arn.endswith(f":table/{table}")
    ttl = aws.dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ttl")
    key = aws.dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    assert key == [{"AttributeName": "id", "KeyType": "HASH"}]


def test_dynamodb_store_claims_completes_and_releases_by_token(aws: Aws, table: str) -> None:
    store = DynamoDBIdempotencyStore(table, client=aws.dynamodb)
    check_claim_complete_release(store)
    item = aws.dynamodb.get_item(TableName=table, Key={"id": {"S": "job#1"}})["Item"]
    assert item["status"] == {"S": "completed"}
    assert int(item["ttl"]["N"]) >= float(item["expires_at"]["N"])  # DynamoDB deletes it after


def test_dynamodb_store_treats_lapsed_records_as_absent(aws: Aws, table: str) -> None:
    check_lapsed_records_count_as_absent(DynamoDBIdempotencyStore(table, client=aws.dynamodb))


def test_dynamodb_store_keeps_the_keys_of_two_jobs_apart(aws: Aws, table: str) -> None:
    store = DynamoDBIdempotencyStore(table, client=aws.dynamodb)
    check_jobs_whose_names_and_keys_run_together_never_share_a_key(store)


# Not here: the race of many concurrent claims (tests/test_idempotency.py runs it on the
# memory and SQLite stores). moto's threaded server does not serialize conditional writes to
# one item (in a probe, 1 race in 200 let two PutItems with the same condition both
# succeed), which DynamoDB itself does; against moto that check would fail on moto.


# -- idempotent jobs on SQS ---------------------------------------------------------------


class Ledger:
    """What the job did, across threads: one entry per handler run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.runs: list[int] = []
        self.started = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, payload: Any, ctx: Any) -> None:
        with self.lock:
            self.runs.append(ctx.attempt)
        self.started.set()
        time.sleep(self.seconds)


class Outcomes:
    """A metrics sink noting each run's outcome and error type."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def record(self, run: Any, outcome: Any, seconds: float) -> None:
        error = getattr(outcome, "error", None)
        self.seen.append((outcome.kind, type(error).__name__ if error else None))

    def flush(self) -> None:
        pass


def charge_job(aws: Aws, table: str, ledger: Ledger) -> Any:
    store = DynamoDBIdempotencyStore(table, region=REGION, endpoint_url=aws.endpoint)
    return define_job(
        name="charge",
        handler=ledger,
        timeout=10,
        retry={"backoff": 1, "jitter": False, "max_attempts": 5},
        idempotent=Idempotency(store=store),
    )


def test_an_sqs_message_delivered_again_while_it_runs_runs_once(aws: Aws, table: str) -> None:
    url = aws.create_queue("charges", visibility_timeout=1)
    ledger = Ledger(seconds=2.0)  # longer than the visibility timeout
    job = charge_job(aws, table, ledger)
    module = define_module("payments", jobs=[job])
    driver = sqs_driver(aws, url)
    JobService(driver).enqueue(job, {"cents": 500})
    outcomes = Outcomes()

    def container() -> Any:  # each Lambda container bootstraps its own handler
        return bootstrap_worker(module=module, driver=driver, metrics=outcomes)

    [first] = driver.receive(wait_seconds=2)
    first_response: dict[str, Any] = {}
    running = threading.Thread(
        target=lambda: first_response.update(container()(lambda_event(driver, [first]), None))
    )
    running.start()
    assert ledger.started.wait(5)
    # The visibility timeout runs out mid-run: SQS hands the same message out again.
    [again] = driver.receive(wait_seconds=3)
    assert (again.message_id, again.attempt) == (first.message_id, 2)
    with pytest.raises(BatchRetryError) as retried:  # its only record: the batch goes back
        container()(lambda_event(driver, [again]), None)
    assert retried.value.retried == [again.message_id]
    running.join(10)
    assert first_response == {"batchItemFailures": []}
    driver.ack(first)  # the event source mapping deletes what succeeded

    # Whatever SQS still holds (the retried delivery) is acknowledged without running.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _pending(aws, url):
        run_worker_once(driver, container())
    assert not _pending(aws, url)
    assert ledger.runs == [1]
    assert ("retry", JobInProgressError.__name__) in outcomes.seen
    assert outcomes.seen.count(("done", None)) == 1


def test_two_workers_receiving_duplicates_at_once_run_it_once(aws: Aws, table: str) -> None:
    url = aws.create_queue("charges")
    ledger = Ledger(seconds=1.0)
    job = charge_job(aws, table, ledger)
    module = define_module("payments", jobs=[job])
    driver = sqs_driver(aws, url)
    message = JobService(driver).build_message(job, {"cents": 500})
    driver.enqueue(message)
    driver.enqueue(message)  # SQS at least once: the same job twice on the queue
    outcomes = Outcomes()

    def worker() -> Worker:
        return Worker(
            module=module,
            driver=sqs_driver(aws, url),
            concurrency=1,
            metrics=outcomes,
            install_signal_handlers=False,
        )

    workers = [worker(), worker()]
    threads = [threading.Thread(target=w.run_until_empty, kwargs={"timeout": 20}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # Both ran a copy at once: one ran the job, the other found it in progress.
    assert outcomes.seen[:2] == [("retry", JobInProgressError.__name__), ("done", None)]

    # The retried copy comes back after its backoff and is acknowledged without running.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _pending(aws, url):
        worker().run_until_empty(timeout=20)
    assert not _pending(aws, url)
    assert ledger.runs == [1]
    assert outcomes.seen.count(("duplicate", None)) == 1


def _pending(aws: Aws, url: str) -> int:
    attributes = aws.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_prometheus_reads_queue_depth_from_sqs(aws: Aws) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from glasswork.jobs.metrics import PrometheusMetrics

    driver = sqs_driver(aws, aws.create_queue("depth"))
    ping = define_job(name="ping", handler=lambda payload, ctx: None)
    JobService(driver).enqueue_many(ping, [1, 2, 3])
    JobService(driver).enqueue_in(ping, 4, "5m")
    metrics = PrometheusMetrics(stats_interval=0)
    metrics.watch(driver)
    text = generate_latest(metrics.registry).decode()
    depth = {
        s.labels["state"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "glasswork_queue_messages" and s.labels["queue"] == "default"
    }
    assert depth == {"ready": 3, "delayed": 1, "in_flight": 0, "dead": 0}  # no DLQ: none dead
