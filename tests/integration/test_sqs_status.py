"""Job status on SQS: the DynamoDB status table (``SQSQueueDriver(status_table=...)``)
against a real (moto) server: what enqueue writes, a run from start to end, retries, dead
letters, cancellation by tombstone, history, and what the driver costs without the table."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from glasswork.jobs import ConfigurationError, JobMessage, JobService, define_job, driver_from_url
from glasswork.jobs.drivers.contract import capabilities_of
from glasswork.jobs.drivers.records import FinalStatus, ReceivedMessage
from glasswork.jobs.drivers.sqs import SQSQueueDriver, create_status_table
from glasswork.jobs.drivers.sqs.job_items import TEXT_LIMIT
from glasswork.jobs.drivers.sqs.scheduler import create_scheduler_handler, create_scheduler_table
from glasswork.jobs.errors import StatusUnavailableError

from .conftest import REGION, Aws
from .test_sqs_driver_moto import RequestCounter

STATUS = "job-status"
SCHEDULED = "scheduled-jobs"
ping = define_job(name="ping", handler=lambda payload, ctx: None)
report = define_job(name="report", queue="reports", handler=lambda payload, ctx: None)


@pytest.fixture
def url(aws: Aws) -> str:
    create_status_table(STATUS, client=aws.dynamodb)
    create_scheduler_table(SCHEDULED, client=aws.dynamodb)
    return aws.create_queue("jobs")


def make_driver(aws: Aws, queues: dict[str, str], **options: Any) -> SQSQueueDriver:
    options.setdefault("status_table", STATUS)
    return SQSQueueDriver(
        region=REGION,
        queues=queues,
        endpoint_url=aws.endpoint,
        scheduler_table=SCHEDULED,
        **options,
    )


@pytest.fixture
def driver(aws: Aws, url: str) -> SQSQueueDriver:
    return make_driver(aws, {"default": url, "reports": aws.create_queue("reports")})


def receive_one(driver: SQSQueueDriver, queue: str = "default") -> ReceivedMessage:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        received = driver.receive([queue], max_messages=1, wait_seconds=1)
        if received:
            return received[0]
    raise AssertionError("no message arrived within 10 s")


def expires_at(aws: Aws, job_id: str) -> float:
    item = aws.dynamodb.get_item(TableName=STATUS, Key={"job_id": {"S": job_id}})["Item"]
    return float(item["expires_at"]["N"])


# -- the table ------------------------------------------------------------------------------


def test_create_status_table_is_on_demand_with_ttl_and_the_history_index(aws: Aws) -> None:
    arn = create_status_table(STATUS, client=aws.dynamodb)
    assert create_status_table(STATUS, client=aws.dynamodb) == arn  # safe to call again
    table = aws.dynamodb.describe_table(TableName=STATUS)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "history"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["shard", "updated"]
    assert "result" not in index["Projection"]["NonKeyAttributes"]
    ttl = aws.dynamodb.describe_time_to_live(TableName=STATUS)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


# -- enqueue --------------------------------------------------------------------------------


def test_enqueue_writes_pending_and_a_delayed_job_is_scheduled_until_due(
    driver: SQSQueueDriver,
) -> None:
    jobs = JobService(driver)
    before = datetime.now(UTC) - timedelta(seconds=1)
    now = jobs.enqueue(ping, {"n": 1})
    soon = jobs.enqueue_in(ping, {"n": 2}, "5m")  # SQS's own delay
    far = jobs.enqueue_in(ping, {"n": 3}, "2h")  # the scheduler table
    many = jobs.enqueue_many(ping, [{"n": i} for i in range(3)])
    later = jobs.enqueue_many(report, [{"n": i} for i in range(3)], delay="1h")

    status = driver.job_status(now.job_id)
    assert status is not None
    assert (status.state, status.job_name, status.queue, status.attempts) == (
        "pending",
        "ping",
        "default",
        0,
    )
    assert status.enqueued_at is not None and status.enqueued_at >= before
    assert status.updated_at is not None and status.updated_at >= before
    assert [driver.job_status(r.job_id).state for r in (soon, far)] == ["scheduled"] * 2  # type: ignore[union-attr]
    assert {driver.job_status(r.job_id).state for r in many} == {"pending"}  # type: ignore[union-attr]
    assert {driver.job_status(r.job_id).queue for r in later} == {"reports"}  # type: ignore[union-attr]
    assert {driver.job_status(r.job_id).state for r in later} == {"scheduled"}  # type: ignore[union-attr]
    assert driver.job_status("no-such-job") is None


def test_a_scheduled_job_reads_as_pending_once_due(driver: SQSQueueDriver) -> None:
    result = JobService(driver).enqueue_in(ping, {}, 1.2)
    assert driver.job_status(result.job_id).state == "scheduled"  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while driver.job_status(result.job_id).state == "scheduled":  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "still scheduled past its due time"
        time.sleep(0.1)
    assert driver.job_status(result.job_id).state == "pending"  # type: ignore[union-attr]


def test_a_status_that_cannot_be_written_sends_nothing(aws: Aws, url: str) -> None:
    driver = make_driver(aws, {"default": url}, status_table="no-such-table")
    with pytest.raises(Exception, match="status table 'no-such-table', so nothing was sent"):
        JobService(driver).enqueue(ping, {})
    with pytest.raises(Exception, match="so nothing was sent"):
        JobService(driver).enqueue_many(ping, [{}, {}])
    assert aws.drain(url) == []


def test_a_send_that_fails_deletes_the_status_it_wrote(aws: Aws, url: str) -> None:
    driver = make_driver(aws, {"default": url + "-gone"})
    message = JobMessage.create("ping", {})
    with pytest.raises(Exception, match="SQS did not take"):
        driver.enqueue(message)
    assert driver.job_status(message.job_id) is None


# -- a run ------------------------------------------------------------------------------------


def test_a_run_records_running_then_done_with_the_result_and_deletes_the_message(
    aws: Aws, driver: SQSQueueDriver, url: str
) -> None:
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    assert driver.record_start(received) is True
    running = driver.job_status(job.job_id)
    assert running is not None and (running.state, running.attempts) == ("running", 1)

    driver.record_progress(job.job_id, 0.5, "half way")
    halfway = driver.job_status(job.job_id)
    assert halfway is not None and (halfway.progress, halfway.progress_note) == (0.5, "half way")

    started = time.time()
    final = FinalStatus("done", result={"sent": 3, "to": ["a", "b"]}, progress=1.0, keep_for=3600)
    driver.finish_many([(received, final)])
    done = driver.job_status(job.job_id)
    assert done is not None
    assert (done.state, done.result, done.attempts, done.progress) == (
        "done",
        {"sent": 3, "to": ["a", "b"]},
        1,
        1.0,
    )
    assert done.finished and done.error is None
    assert started + 3600 <= expires_at(aws, job.job_id) <= time.time() + 3601  # the TTL
    assert (
        aws.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
        == "0"
    )  # deleted, not held


def test_a_redelivery_of_a_job_whose_end_was_recorded_does_not_start(
    driver: SQSQueueDriver,
) -> None:
    """The end is written before the message is deleted: dying in between, the message
    comes again, and record_start refuses it."""
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    assert driver.record_start(received)
    driver.statuses._write(  # the status write alone, as if the delete never happened
        [
            {
                "PutRequest": {
                    "Item": driver.statuses.requests.ended_item(  # type: ignore[union-attr]
                        *_ended(received), time.time()
                    )
                }
            }
        ]
    )
    driver.nack(received)
    again = receive_one(driver)
    assert again.attempt == 2
    assert driver.record_start(again) is False
    status = driver.job_status(job.job_id)
    assert status is not None and (status.state, status.attempts) == ("done", 1)


def _ended(received: ReceivedMessage) -> tuple[Any, ...]:
    from glasswork.jobs.drivers.sqs.job_items import Delivered

    job = Delivered.of(received)
    assert job is not None
    return job, received.message_id, 1, FinalStatus("done", result=1)


def test_a_retry_keeps_the_error_and_the_end_of_the_traceback(driver: SQSQueueDriver) -> None:
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    driver.record_start(received)
    traceback = "Traceback (most recent call last):\n" + "  frame\n" * 4000 + "ValueError: boom"
    driver.record_retry(received, "ValueError: boom", traceback)
    status = driver.job_status(job.job_id)
    assert status is not None and (status.state, status.error) == ("retrying", "ValueError: boom")
    assert status.traceback is not None and status.traceback.endswith("ValueError: boom")
    assert len(status.traceback.encode()) <= TEXT_LIMIT + 3

    driver.nack(received)
    again = receive_one(driver)
    assert driver.record_start(again) is True
    assert driver.job_status(job.job_id).attempts == 2  # type: ignore[union-attr]


def test_a_dead_job_is_only_recorded_and_a_redriven_one_runs_again(
    aws: Aws, driver: SQSQueueDriver
) -> None:
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    driver.record_start(received)
    driver.ack(received)  # the worker's dead-lettering consumed it
    counter = RequestCounter(driver.client)
    driver.finish(received, FinalStatus("dead", error="PermanentJobError: no", traceback="tb"))
    assert counter.calls == []  # no second delete
    dead = driver.job_status(job.job_id)
    assert dead is not None and (dead.state, dead.error, dead.traceback) == (
        "dead",
        "PermanentJobError: no",
        "tb",
    )
    assert driver.record_start(received) is False  # the same message, delivered again
    redriven = JobMessage.from_json(received.body)
    driver.client.send_message(QueueUrl=driver.queue_url("default"), MessageBody=redriven.encode())
    assert driver.record_start(receive_one(driver)) is True  # another message: a redrive
    assert driver.job_status(job.job_id).attempts == 2  # type: ignore[union-attr]


def test_record_ends_records_without_deleting_even_from_fresh_delivery_objects(
    aws: Aws, driver: SQSQueueDriver, url: str
) -> None:
    """The Lambda path: Lambda deletes a batch's finished records itself, and the worker
    may build a new ReceivedMessage for the same record when it settles."""
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    assert driver.record_start_many([received]) == [True]
    fresh = ReceivedMessage(
        received.body, received.receipt, received.attempt, received.queue, received.message_id
    )
    sqs, dynamodb = RequestCounter(driver.client), RequestCounter(driver.dynamodb)
    assert driver.record_ends([(fresh, FinalStatus("done", result=[1, 2]))]) is True
    assert (sqs.calls, dynamodb.calls) == ([], ["BatchWriteItem"])
    status = driver.job_status(job.job_id)
    assert status is not None and (status.state, status.result, status.attempts) == (
        "done",
        [1, 2],
        1,
    )
    assert (
        aws.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
        == "1"
    )  # still Lambda's to delete


def test_a_job_kept_zero_seconds_leaves_no_status(driver: SQSQueueDriver) -> None:
    jobs = JobService(driver)
    first, second = jobs.enqueue(ping, {}), jobs.enqueue(ping, {})
    received = [receive_one(driver), receive_one(driver)]
    for r in received:
        driver.record_start(r)
    driver.finish_many(
        [(r, FinalStatus("done", result=1, keep_for=0)) for r in received],
    )
    assert driver.job_status(first.job_id) is None
    assert driver.job_status(second.job_id) is None
    assert driver.receive(wait_seconds=0) == []


def test_a_result_too_large_for_an_item_is_not_kept_and_the_error_says_why(
    driver: SQSQueueDriver,
) -> None:
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    driver.record_start(received)
    driver.finish(received, FinalStatus("done", result="x" * 400_000))
    status = driver.job_status(job.job_id)
    assert status is not None and (status.state, status.result) == ("done", None)
    assert status.error is not None and "result could not be stored" in status.error


def test_finish_without_a_recorded_start_here_keeps_the_attempt_count(
    aws: Aws, driver: SQSQueueDriver
) -> None:
    """Another process recorded the start: the end is an update, not a whole item."""
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    other = make_driver(aws, driver.queues)  # another process, say
    assert other.record_start(received)
    counter = RequestCounter(driver.dynamodb)
    driver.finish(received, FinalStatus("failed", error="discarded"))
    assert counter.calls == ["UpdateItem"]
    status = driver.job_status(job.job_id)
    assert status is not None and (status.state, status.attempts, status.error) == (
        "failed",
        1,
        "discarded",
    )


# -- cancel -----------------------------------------------------------------------------------


def test_a_cancelled_waiting_job_never_starts(driver: SQSQueueDriver) -> None:
    job = JobService(driver).enqueue(ping, {})
    assert driver.cancel(job.job_id, "not needed") is True
    status = driver.job_status(job.job_id)
    assert status is not None and (status.state, status.error) == ("cancelled", "not needed")
    assert driver.cancel(job.job_id) is False  # ended
    received = receive_one(driver)  # the message is still there: a tombstone meets it
    assert driver.record_start(received) is False
    assert driver.job_status(job.job_id).state == "cancelled"  # type: ignore[union-attr]


def test_a_cancelled_retrying_job_never_starts_again(driver: SQSQueueDriver) -> None:
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    driver.record_start(received)
    driver.record_retry(received, "boom", None)
    driver.nack(received)
    assert driver.cancel(job.job_id) is True
    assert driver.record_start(receive_one(driver)) is False


def test_a_running_job_is_asked_to_stop(driver: SQSQueueDriver) -> None:
    jobs = JobService(driver)
    job, other = jobs.enqueue(ping, {}), jobs.enqueue(ping, {})
    received = [receive_one(driver), receive_one(driver)]
    for r in received:
        driver.record_start(r)
    assert driver.cancel_requested([job.job_id, other.job_id]) == set()
    assert driver.cancel(job.job_id) is True
    assert driver.job_status(job.job_id).state == "running"  # type: ignore[union-attr]
    assert driver.cancel_requested([job.job_id, other.job_id, "unknown"]) == {job.job_id}
    ids = [f"id-{i}" for i in range(150)] + [job.job_id]  # over one BatchGetItem
    assert driver.cancel_requested(ids) == {job.job_id}


def test_a_run_asked_to_stop_that_fails_ends_cancelled_not_retrying(
    driver: SQSQueueDriver,
) -> None:
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    driver.record_start(received)
    driver.cancel(job.job_id)
    driver.record_retry(received, "TimeoutError", None)
    status = driver.job_status(job.job_id)
    assert status is not None and status.state == "cancelled"
    assert status.error is not None and "TimeoutError" in status.error
    driver.nack(received)
    assert driver.record_start(receive_one(driver)) is False


def test_cancel_is_false_for_an_unknown_or_ended_job(driver: SQSQueueDriver) -> None:
    assert driver.cancel("no-such-job") is False
    job = JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    driver.record_start(received)
    driver.finish(received, FinalStatus("done"))
    assert driver.cancel(job.job_id) is False
    assert driver.job_status(job.job_id).state == "done"  # type: ignore[union-attr]


def test_the_scheduler_sending_a_cancelled_job_on_keeps_its_tombstone(
    aws: Aws, driver: SQSQueueDriver
) -> None:
    job = JobService(driver).enqueue_in(ping, {}, "2h")
    assert driver.cancel(job.job_id) is True
    handler = create_scheduler_handler(
        table_name=SCHEDULED,
        region=REGION,
        driver=driver,
        endpoint_url=aws.endpoint,
        clock=lambda: time.time() + 7200,
    )
    assert handler({}, None)["dispatched"] == 1
    assert driver.job_status(job.job_id).state == "cancelled"  # type: ignore[union-attr]
    assert driver.record_start(receive_one(driver)) is False


def test_a_job_the_scheduler_sends_on_keeps_its_status(aws: Aws, driver: SQSQueueDriver) -> None:
    job = JobService(driver).enqueue_in(ping, {}, "2h")
    handler = create_scheduler_handler(
        table_name=SCHEDULED,
        region=REGION,
        driver=driver,
        endpoint_url=aws.endpoint,
        clock=lambda: time.time() + 7200,
        lookahead=0,
    )
    handler({}, None)
    received = receive_one(driver)
    assert driver.record_start(received) is True
    driver.finish(received, FinalStatus("done", result="ok"))
    # Sent twice (a scheduler that died before deleting its item): the end stays recorded.
    driver.enqueue(JobMessage.from_json(received.body))
    assert driver.job_status(job.job_id).state == "done"  # type: ignore[union-attr]
    assert driver.record_start(receive_one(driver)) is False


def test_a_job_id_enqueued_anew_after_its_end_starts_afresh(driver: SQSQueueDriver) -> None:
    message = JobMessage.create("ping", {})
    driver.enqueue(message)
    received = receive_one(driver)
    driver.record_start(received)
    driver.finish(received, FinalStatus("done"))
    driver.enqueue(JobMessage.create("ping", {"again": True}, job_id=message.job_id))
    assert driver.job_status(message.job_id).state == "pending"  # type: ignore[union-attr]
    assert driver.record_start(receive_one(driver)) is True


# -- history ----------------------------------------------------------------------------------


def test_history_is_newest_first_filtered_and_paged(driver: SQSQueueDriver) -> None:
    jobs = JobService(driver)
    pings = [jobs.enqueue(ping, {"n": i}).job_id for i in range(6)]
    reports = [jobs.enqueue(report, {"n": i}).job_id for i in range(3)]
    received = receive_one(driver, "reports")
    driver.record_start(received)
    driver.finish(received, FinalStatus("dead", error="no"))
    dead = received.body
    enqueued = [*pings, *reports]

    everything = driver.job_history(limit=100)
    assert {s.job_id for s in everything} == set(enqueued)
    times = [s.updated_at for s in everything]
    assert times == sorted(times, reverse=True)  # type: ignore[type-var]
    assert everything[0].state == "dead" and everything[0].job_id in dead

    assert {s.job_id for s in driver.job_history(job_name="ping")} == set(pings)
    assert {s.job_id for s in driver.job_history(queue="reports")} == set(reports)
    assert [s.state for s in driver.job_history(state="dead")] == ["dead"]
    assert len(driver.job_history(state="pending")) == 8
    assert driver.job_history(state="done") == []
    assert driver.job_history(state="pending", job_name="report", limit=1)[0].job_name == "report"

    pages, before = [], None
    while True:
        page = driver.job_history(limit=4, before=before)
        if not page:
            break
        pages.append([s.job_id for s in page])
        before = page[-1].job_id
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [job_id for p in pages for job_id in p] == [s.job_id for s in everything]
    with pytest.raises(ValueError, match="unknown job state 'lost'"):
        driver.job_history(state="lost")


# -- configuration ----------------------------------------------------------------------------


def test_the_status_table_from_the_url(aws: Aws, url: str) -> None:
    driver = driver_from_url(
        f"sqs://{REGION}?queue.default={url}&status_table={STATUS}&endpoint_url={aws.endpoint}"
    )
    assert isinstance(driver, SQSQueueDriver) and driver.status_table == STATUS
    assert "status_table='job-status'" in repr(driver)
    job = JobService(driver).enqueue(ping, {})
    assert driver.job_status(job.job_id).state == "pending"  # type: ignore[union-attr]


def test_without_a_status_table_asking_says_how_to_enable_it_and_running_costs_nothing(
    aws: Aws, url: str
) -> None:
    driver = make_driver(aws, {"default": url}, status_table=None)
    assert capabilities_of(driver).status is driver
    for ask in (
        lambda: driver.job_status("x"),
        lambda: driver.job_history(),
        lambda: driver.cancel("x"),
    ):
        with pytest.raises(
            StatusUnavailableError,
            match=r"pass SQSQueueDriver\(status_table=<table>\).*create_status_table",
        ):
            ask()
    from_url = driver_from_url(f"sqs://{REGION}?queue.default={url}&endpoint_url={aws.endpoint}")
    with pytest.raises(
        StatusUnavailableError, match=r"add \?status_table=<table> to the sqs:// URL"
    ):
        from_url.job_status("x")  # type: ignore[attr-defined]

    JobService(driver).enqueue(ping, {})
    received = receive_one(driver)
    dynamodb, sqs = RequestCounter(driver.dynamodb), RequestCounter(driver.client)
    assert driver.record_start(received) is True
    driver.record_progress("x", 0.5, None)
    driver.record_retry(received, "boom", None)
    assert driver.cancel_requested(["x"]) == set()
    assert capabilities_of(driver).status_batches is None  # the Lambda handler skips them
    driver.finish_many([(received, FinalStatus("done", result=1))])
    assert dynamodb.calls == []
    assert sqs.calls == ["DeleteMessageBatch"]  # finishing is acknowledging


def test_the_driver_refuses_a_priority_and_names_the_alternative(
    aws: Aws, driver: SQSQueueDriver
) -> None:
    urgent = JobMessage.create("ping", {}, priority=5)
    for send in (
        lambda: driver.enqueue(urgent),
        lambda: driver.enqueue_in(urgent, 60),
        lambda: driver.enqueue_many([JobMessage.create("ping", {}), urgent]),
    ):
        with pytest.raises(ConfigurationError, match="separate queue with its own concurrency"):
            send()
    assert driver.job_status(urgent.job_id) is None
    assert not capabilities_of(driver).priorities
    assert aws.drain(driver.queue_url("default")) == []


def test_async_enqueues_write_the_status_too(aws: Aws, driver: SQSQueueDriver) -> None:
    pytest.importorskip("aiobotocore")
    from glasswork.jobs import AsyncJobService

    async def main() -> list[str]:
        async with AsyncJobService(driver) as jobs:
            one = await jobs.enqueue(ping, {})
            later = await jobs.enqueue_in(ping, {}, "10m")
            many = await jobs.enqueue_many(ping, [{}, {}])
        enqueuer = driver.async_enqueuer()
        assert enqueuer is not None
        with pytest.raises(ConfigurationError, match="separate queue"):
            await enqueuer.enqueue(JobMessage.create("ping", {}, priority=1))
        await enqueuer.aclose()
        return [one.job_id, later.job_id, *(r.job_id for r in many)]

    ids = asyncio.run(main())
    assert [driver.job_status(i).state for i in ids] == [  # type: ignore[union-attr]
        "pending",
        "scheduled",
        "pending",
        "pending",
    ]


# -- what it costs ----------------------------------------------------------------------------


def run_batch(driver: SQSQueueDriver, count: int) -> dict[str, int]:
    """Enqueue ``count`` jobs one by one and ``count`` in a batch, run them as a Lambda batch
    would (start all, finish all), and count the AWS requests of each step."""
    jobs = JobService(driver)
    driver.message_limit("default")  # read once per queue: not a cost per job
    sqs, dynamodb = RequestCounter(driver.client), RequestCounter(driver.dynamodb)
    for i in range(count):
        jobs.enqueue(ping, {"n": i})
    jobs.enqueue_many(ping, [{"n": i} for i in range(count)])
    enqueued = [*sqs.calls, *dynamodb.calls]
    sqs.calls.clear(), dynamodb.calls.clear()
    received: list[ReceivedMessage] = []
    deadline = time.monotonic() + 10
    while len(received) < 2 * count and time.monotonic() < deadline:
        received += driver.receive(max_messages=10, wait_seconds=1)
    sqs.calls.clear()
    caps = capabilities_of(driver)
    if caps.status_batches is not None:
        assert all(caps.status_batches.record_start_many(received))
    driver.finish_many([(r, FinalStatus("done", result={"ok": True})) for r in received])
    ran = [*sqs.calls, *dynamodb.calls]
    return {f"enqueue:{op}": enqueued.count(op) for op in set(enqueued)} | {
        f"run:{op}": ran.count(op) for op in set(ran)
    }


def test_requests_per_job_with_and_without_the_status_table(aws: Aws, url: str) -> None:
    """What docs/sqs.md says a job costs: 10 single enqueues, a batch of 10, and a run of
    the 20 as two Lambda batches of 10."""
    without = run_batch(make_driver(aws, {"default": url}, status_table=None), 10)
    assert without == {
        "enqueue:SendMessage": 10,
        "enqueue:SendMessageBatch": 1,
        "run:DeleteMessageBatch": 2,
    }
    with_table = run_batch(make_driver(aws, {"default": url}), 10)
    assert with_table == {
        "enqueue:SendMessage": 10,
        "enqueue:PutItem": 10,  # conditional
        "enqueue:SendMessageBatch": 1,
        "enqueue:TransactWriteItems": 1,  # 10 conditional puts
        "run:UpdateItem": 20,  # record_start, side by side
        "run:BatchWriteItem": 1,  # the 20 ends, 25 a request
        "run:DeleteMessageBatch": 2,
    }


def test_record_start_many_refuses_only_the_cancelled(driver: SQSQueueDriver) -> None:
    jobs = JobService(driver)
    ids = [jobs.enqueue(ping, {"n": i}).job_id for i in range(5)]
    driver.cancel(ids[2])
    received: list[ReceivedMessage] = []
    while len(received) < 5:
        received += driver.receive(max_messages=10, wait_seconds=1)
    started = dict(
        zip(
            [JobMessage.from_json(r.body).job_id for r in received],
            driver.record_start_many(received),
            strict=True,
        )
    )
    assert started == {job_id: job_id != ids[2] for job_id in ids}


# -- the long-running worker on SQS ----------------------------------------------------------


def test_the_long_running_worker_records_results_failures_and_skips_a_cancelled_job(
    driver: SQSQueueDriver,
) -> None:
    from glasswork import define_module
    from glasswork.jobs.errors import JobFailedError
    from glasswork.jobs.worker import Worker

    ran: list[str] = []

    def add(payload: dict[str, int]) -> int:
        ran.append("add")
        return payload["a"] + payload["b"]

    def refuse(payload: dict[str, int]) -> None:
        ran.append("refuse")
        raise ValueError("refused for good")

    added = define_job(name="add", handler=add)
    refused = define_job(name="refuse", handler=refuse, retry={"max_attempts": 1})
    jobs = JobService(driver)
    sum_job = jobs.enqueue(added, {"a": 2, "b": 3})
    failing = jobs.enqueue(refused, {"a": 0, "b": 0})
    cancelled = jobs.enqueue(added, {"a": 40, "b": 2})
    assert cancelled.cancel()  # a tombstone: its message stays on the queue
    summary = Worker(
        module=define_module("app", jobs=[added, refused]), driver=driver
    ).run_until_empty(timeout=30)
    assert sum_job.wait(timeout=5) == 5
    with pytest.raises(JobFailedError) as failed:
        failing.wait(timeout=5)
    assert failed.value.state == "dead" and "refused for good" in (failed.value.error or "")
    assert failed.value.traceback is not None and "ValueError" in failed.value.traceback
    with pytest.raises(JobFailedError) as stopped:
        cancelled.wait(timeout=5)
    assert stopped.value.state == "cancelled"
    assert sorted(ran) == ["add", "refuse"]  # the cancelled one never ran
    assert summary.dead_lettered == 1
