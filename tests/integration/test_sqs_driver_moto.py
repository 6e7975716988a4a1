"""SQSQueueDriver against a real (moto) SQS/DynamoDB server over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from glasswork.jobs import ConfigurationError, EnqueueError, JobMessage, JobService, define_job
from glasswork.jobs.drivers import QueueStats, ReceivedMessage
from glasswork.jobs.drivers.sqs.driver import EnqueueBatchError, SQSQueueDriver
from glasswork.jobs.drivers.sqs.scheduler import ScheduledJobsTable, create_scheduler_table

from .conftest import REGION, Aws

ping = define_job(name="ping", handler=lambda payload, ctx: None)
email = define_job(name="send-email", queue="emails", handler=lambda payload, ctx: None)
welcome = define_job(
    name="welcome",
    handler=lambda payload, ctx: None,
    unique={"key": lambda p: p["user"]},
)
per_user = define_job(
    name="per-user",
    handler=lambda payload, ctx: None,
    group_id=lambda p: f"user-{p['user']}",
)


def make_driver(aws: Aws, queues: dict[str, str], **options: Any) -> SQSQueueDriver:
    return SQSQueueDriver(region=REGION, queues=queues, endpoint_url=aws.endpoint, **options)


class RequestCounter:
    """Counts the HTTP requests a boto3 client sends, per operation (observes, never alters)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        client.meta.events.register("before-send", self._seen)

    def _seen(self, request: Any, **kwargs: Any) -> None:
        self.calls.append(kwargs["event_name"].split(".")[-1])

    def count(self, operation: str) -> int:
        return self.calls.count(operation)


# -- standard queues --------------------------------------------------------------------


def test_enqueue_sends_the_envelope_and_receive_returns_it(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    result = JobService(driver).enqueue(ping, {"n": 1})

    [received] = driver.receive(wait_seconds=1)
    message = JobMessage.from_json(received.body)
    assert (message.job_name, message.payload, message.job_id) == ("ping", {"n": 1}, result.job_id)
    assert received.attempt == 1
    assert received.queue == "default"
    assert received.message_id == result.message_id
    assert result.scheduled_at is None


def test_job_queue_picks_the_queue_url(aws: Aws) -> None:
    default, emails = aws.create_queue("jobs"), aws.create_queue("emails")
    driver = make_driver(aws, {"default": default, "emails": emails})
    JobService(driver).enqueue(email, {"to": "a@example.com"})

    assert aws.drain(default) == []
    [message] = aws.drain(emails, wait=1, expected=1)
    assert json.loads(message["Body"])["jobName"] == "send-email"


def test_unknown_queue_is_a_configuration_error_naming_the_configured_queues(aws: Aws) -> None:
    driver = make_driver(aws, {"default": aws.create_queue("jobs")})
    with pytest.raises(ConfigurationError, match=r"unknown queue 'emails'.*'default'"):
        JobService(driver).enqueue(email, {})


def test_a_refused_send_is_an_enqueue_error_naming_job_and_queue(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    aws.sqs.delete_queue(QueueUrl=url)
    driver = make_driver(aws, {"default": url})
    with pytest.raises(EnqueueError, match=r"job 'ping' .* queue 'default'.*NonExistentQueue"):
        JobService(driver).enqueue(ping, {})


def test_queue_urls_are_checked_at_construction() -> None:
    with pytest.raises(ConfigurationError, match=r"queues\['default'\] must be an SQS queue URL"):
        SQSQueueDriver(region=REGION, queues={"default": "jobs"})
    with pytest.raises(ConfigurationError, match="needs queues"):
        SQSQueueDriver(region=REGION, queues={})


def test_delay_up_to_15_minutes_uses_sqs_delay_seconds(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})  # no scheduler table: SQS alone must do it
    service = JobService(driver)

    long = service.enqueue_in(ping, {"n": "15m"}, "15m")
    assert long.scheduled_at is not None
    assert driver.stats()["default"] == QueueStats("default", ready=0, delayed=1, in_flight=0)

    started = time.monotonic()
    short = service.enqueue_in(ping, {"n": "1s"}, 1)
    assert driver.receive(wait_seconds=0) == []
    [received] = driver.receive(wait_seconds=5)
    assert time.monotonic() - started >= 0.9
    assert JobMessage.from_json(received.body).job_id == short.job_id


def test_delay_over_15_minutes_without_a_table_names_the_scheduler_table_setting(
    aws: Aws,
) -> None:
    driver = make_driver(aws, {"default": aws.create_queue("jobs")})
    with pytest.raises(ConfigurationError, match="scheduler_table"):
        JobService(driver).enqueue_in(ping, {}, "16m")
    with pytest.raises(ConfigurationError, match="scheduler_table"):
        JobService(driver).enqueue_at(ping, {}, datetime.now(UTC) + timedelta(hours=2))


def test_delay_over_15_minutes_goes_to_the_scheduler_table_not_sqs(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    create_scheduler_table("scheduled-jobs", client=aws.dynamodb)
    driver = make_driver(aws, {"default": url}, scheduler_table="scheduled-jobs")
    service = JobService(driver)

    before = datetime.now(UTC)
    in_result = service.enqueue_in(ping, {"n": 1}, "16m")
    at = datetime.now(UTC) + timedelta(days=3)
    at_result = service.enqueue_at(ping, {"n": 2}, at)

    assert driver.stats()["default"] == QueueStats("default", ready=0, delayed=0, in_flight=0)
    table = ScheduledJobsTable("scheduled-jobs", client=aws.dynamodb)
    assert table.count() == 2
    assert in_result.scheduled_at is not None
    assert timedelta(minutes=16) <= in_result.scheduled_at - before < timedelta(minutes=17)
    assert at_result.scheduled_at is not None
    assert abs((at_result.scheduled_at - at).total_seconds()) < 0.01
    assert in_result.message_id.startswith("scheduled:")


def test_a_missing_scheduler_table_is_an_enqueue_error_naming_it(aws: Aws) -> None:
    driver = make_driver(aws, {"default": aws.create_queue("jobs")}, scheduler_table="nope")
    with pytest.raises(EnqueueError, match=r"job 'ping'.*scheduler table 'nope'"):
        JobService(driver).enqueue_in(ping, {}, "1h")
    with pytest.raises(EnqueueBatchError) as caught:
        JobService(driver).enqueue_many(ping, [{}, {}], delay="1h")
    assert [f.code for f in caught.value.failed] == ["ResourceNotFoundException"] * 2


def test_enqueue_at_in_the_past_sends_now(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    JobService(driver).enqueue_at(ping, {}, datetime.now(UTC) - timedelta(hours=1))
    assert len(driver.receive(wait_seconds=1)) == 1


# -- FIFO queues ------------------------------------------------------------------------


def test_fifo_uses_job_name_group_and_unique_key_deduplication(aws: Aws) -> None:
    url = aws.create_queue("jobs.fifo")
    driver = make_driver(aws, {"default": url})
    service = JobService(driver)

    first = service.enqueue(welcome, {"user": "u1"})
    service.enqueue(welcome, {"user": "u1"})  # same unique key: SQS drops it (5-min window)
    other = service.enqueue(ping, {})

    messages = aws.drain(url, wait=1)
    assert [json.loads(m["Body"])["jobId"] for m in messages] == [first.job_id, other.job_id]
    assert [m["Attributes"]["MessageGroupId"] for m in messages] == ["welcome", "ping"]
    assert [m["Attributes"]["MessageDeduplicationId"] for m in messages] == [
        "welcome:u1",
        other.job_id,
    ]


def test_fifo_message_group_is_overridable_per_job(aws: Aws) -> None:
    url = aws.create_queue("jobs.fifo")
    driver = make_driver(aws, {"default": url})
    JobService(driver).enqueue(per_user, {"user": "42"})
    JobService(driver).enqueue(per_user, {"user": "has spaces and é"})

    groups = [m["Attributes"]["MessageGroupId"] for m in aws.drain(url, wait=1)]
    assert groups[0] == "user-42"
    assert len(groups[1]) == 64  # not a valid group id as-is: hashed, still stable


def test_fifo_delays_go_through_the_scheduler_table(aws: Aws) -> None:
    url = aws.create_queue("jobs.fifo")
    with pytest.raises(ConfigurationError, match=r"FIFO.*scheduler_table"):
        JobService(make_driver(aws, {"default": url})).enqueue_in(ping, {}, "30s")

    create_scheduler_table("scheduled-jobs", client=aws.dynamodb)
    driver = make_driver(aws, {"default": url}, scheduler_table="scheduled-jobs")
    JobService(driver).enqueue_in(ping, {}, "30s")
    assert ScheduledJobsTable("scheduled-jobs", client=aws.dynamodb).count() == 1
    assert aws.drain(url) == []


# -- batches ----------------------------------------------------------------------------


def test_batch_enqueue_of_25_jobs_takes_3_requests(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    requests = RequestCounter(driver.client)

    results = JobService(driver).enqueue_many(ping, [{"n": i} for i in range(25)])

    # The queue's MaximumMessageSize is read once, on first use.
    assert requests.calls == ["GetQueueAttributes"] + ["SendMessageBatch"] * 3
    assert len(results) == 25
    assert len({r.message_id for r in results}) == 25
    received = aws.drain(url, wait=1, expected=25)
    assert sorted(json.loads(m["Body"])["payload"]["n"] for m in received) == list(range(25))


def test_batch_requests_stay_under_the_queues_size_limit(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    aws.sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": "262144"})
    driver = make_driver(aws, {"default": url})
    requests = RequestCounter(driver.client)

    JobService(driver).enqueue_many(ping, [{"text": "x" * 100_000} for _ in range(5)])

    # 5 bodies of ~100 KB: at most two fit in one 256 KiB request.
    assert requests.calls == ["GetQueueAttributes"] + ["SendMessageBatch"] * 3
    assert len(aws.drain(url, wait=1, expected=5)) == 5

    big = aws.create_queue("big")  # a new queue's limit: 1 MiB
    driver = make_driver(aws, {"default": big})
    requests = RequestCounter(driver.client)
    JobService(driver).enqueue_many(ping, [{"text": "x" * 100_000} for _ in range(5)])
    assert requests.calls == ["GetQueueAttributes", "SendMessageBatch"]


def test_batch_with_an_unknown_queue_sends_nothing(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    service = JobService(driver)
    messages = [service.build_message(ping, {}), JobMessage.create("email", {}, queue="emails")]
    with pytest.raises(ConfigurationError, match="unknown queue 'emails'"):
        driver.enqueue_many(messages)
    assert aws.drain(url) == []


def test_batch_enqueue_on_fifo_and_with_delay(aws: Aws) -> None:
    fifo, standard = aws.create_queue("jobs.fifo"), aws.create_queue("jobs")
    JobService(make_driver(aws, {"default": fifo})).enqueue_many(ping, [{"n": i} for i in range(3)])
    assert [json.loads(m["Body"])["payload"]["n"] for m in aws.drain(fifo, wait=1)] == [0, 1, 2]

    driver = make_driver(aws, {"default": standard})
    JobService(driver).enqueue_many(ping, [{}, {}], delay="10m")
    assert driver.stats()["default"].delayed == 2


class FlakyBatchDriver(SQSQueueDriver):
    """Makes SQS reject one entry per batch (an out-of-range DelaySeconds), on the first
    ``bad_attempts`` tries of that entry."""

    def __init__(self, *args: Any, bad_entry: str, bad_attempts: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        entry_of = self.sender.batch_entry

        def flaky_entry(
            entry_id: str, message: JobMessage, delay_seconds: float, attempt: int
        ) -> dict[str, Any]:
            entry = entry_of(entry_id, message, delay_seconds, attempt)
            if entry_id == bad_entry and attempt < bad_attempts:
                entry["DelaySeconds"] = 1000  # SQS refuses this entry alone
            return entry

        self.sender.batch_entry = flaky_entry  # type: ignore[method-assign]


def test_batch_retries_entries_sqs_rejected(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = FlakyBatchDriver(
        region=REGION,
        queues={"default": url},
        endpoint_url=aws.endpoint,
        bad_entry="3",
        bad_attempts=1,
    )
    requests = RequestCounter(driver.client)

    results = JobService(driver).enqueue_many(ping, [{"n": i} for i in range(5)])

    assert len(results) == 5
    # One retry of one entry (after reading the queue's MaximumMessageSize once).
    assert requests.calls == ["GetQueueAttributes", "SendMessageBatch", "SendMessageBatch"]
    assert len(aws.drain(url, wait=1, expected=5)) == 5


def test_batch_raises_with_what_failed_after_retries(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = FlakyBatchDriver(
        region=REGION,
        queues={"default": url},
        endpoint_url=aws.endpoint,
        bad_entry="13",
        bad_attempts=99,
        batch_retries=2,
    )
    messages = [JobService(driver).build_message(ping, {"n": i}) for i in range(15)]

    with pytest.raises(EnqueueBatchError) as caught:
        driver.enqueue_many(messages)

    error = caught.value
    assert [(f.job_id, f.queue, f.code) for f in error.failed] == [
        (messages[13].job_id, "default", "InvalidParameterValue")
    ]
    assert len(error.sent) == 14
    assert "1 of 15 jobs were not sent after 3 attempt(s)" in str(error)
    assert messages[13].job_id in str(error)
    assert len(aws.drain(url, wait=1, expected=14)) == 14


# -- consuming --------------------------------------------------------------------------


def test_nack_redelivers_after_the_delay_with_a_higher_attempt(aws: Aws) -> None:
    url = aws.create_queue("jobs", visibility_timeout=30)
    driver = make_driver(aws, {"default": url})
    JobService(driver).enqueue(ping, {})

    [first] = driver.receive(wait_seconds=1)
    driver.nack(first, 0)
    [second] = driver.receive(wait_seconds=1)
    assert (first.attempt, second.attempt) == (1, 2)

    driver.nack(second, 600)
    assert driver.receive(wait_seconds=0) == []
    assert driver.stats()["default"].in_flight == 1


def test_nack_and_ack_work_from_the_lambda_queue_arn(aws: Aws) -> None:
    url = aws.create_queue("jobs-physical-name", visibility_timeout=30)
    driver = make_driver(aws, {"default": url})
    JobService(driver).enqueue(ping, {})
    [received] = driver.receive(wait_seconds=1)

    arn = aws.queue_arn(url)
    as_lambda_sees_it = ReceivedMessage(
        body=received.body,
        receipt=received.receipt,
        attempt=1,
        queue=arn.rsplit(":", 1)[-1],
        message_id=received.message_id,
        attributes={"eventSourceARN": arn},
    )
    driver.nack(as_lambda_sees_it, 0)
    [again] = driver.receive(wait_seconds=1)
    driver.ack(
        ReceivedMessage(
            again.body,
            again.receipt,
            2,
            "ignored",
            again.message_id,
            {
                "eventSourceARN": arn,
            },
        )
    )
    assert driver.stats()["default"] == QueueStats("default", ready=0, delayed=0, in_flight=0)


def test_ack_many_deletes_in_batches(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    JobService(driver).enqueue_many(ping, [{} for _ in range(12)])
    received = driver.receive(max_messages=10, wait_seconds=1)
    received += driver.receive(max_messages=10, wait_seconds=1)
    assert len(received) == 12
    requests = RequestCounter(driver.client)

    driver.ack_many(received)

    assert requests.calls == ["DeleteMessageBatch", "DeleteMessageBatch"]
    assert driver.stats()["default"] == QueueStats("default", ready=0, delayed=0, in_flight=0)


def test_receive_takes_from_every_configured_queue(aws: Aws) -> None:
    default, emails = aws.create_queue("jobs"), aws.create_queue("emails")
    driver = make_driver(aws, {"default": default, "emails": emails})
    JobService(driver).enqueue(ping, {})
    JobService(driver).enqueue(email, {})

    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        got += driver.receive(wait_seconds=1)
    assert sorted(r.queue for r in got) == ["default", "emails"]
    assert driver.receive(["emails"], wait_seconds=0) == []


# -- dead letters -----------------------------------------------------------------------


def test_dead_letter_finds_the_dlq_from_the_redrive_policy_once(aws: Aws) -> None:
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq)
    driver = make_driver(aws, {"default": url})
    requests = RequestCounter(driver.client)

    assert driver.dead_letter('{"not": "a job"}', "PermanentJobError: nope", queue="default")
    assert driver.dead_letter("second", "again", queue="jobs")  # the physical name works too

    # Once each: the queue's redrive policy, the DLQ's MaximumMessageSize.
    assert requests.count("GetQueueAttributes") == 2
    first, second = aws.drain(dlq, wait=1, expected=2)
    assert first["Body"] == '{"not": "a job"}'
    assert first["MessageAttributes"]["GlassworkReason"]["StringValue"] == (
        "PermanentJobError: nope"
    )
    assert first["MessageAttributes"]["GlassworkSourceQueue"]["StringValue"] == "default"
    assert second["Body"] == "second"


def test_dead_letter_uses_the_configured_dlq(aws: Aws) -> None:
    dlq = aws.create_queue("explicit-dlq")
    driver = make_driver(
        aws, {"default": aws.create_queue("jobs")}, dead_letter_queues={"default": dlq}
    )
    assert driver.dead_letter("body", "reason", queue="default")
    assert [m["Body"] for m in aws.drain(dlq, wait=1)] == ["body"]


def test_dead_letter_without_any_dlq_returns_false(aws: Aws) -> None:
    driver = make_driver(aws, {"default": aws.create_queue("jobs")})
    assert driver.dead_letter("body", "reason", queue="default") is False


def test_dead_letter_for_an_unknown_queue_raises_so_the_message_stays_queued(aws: Aws) -> None:
    driver = make_driver(aws, {"default": aws.create_queue("jobs")})
    with pytest.raises(ConfigurationError, match="unknown queue 'elsewhere'"):
        driver.dead_letter("body", "reason", queue="elsewhere")


def test_dead_letter_to_a_fifo_dlq(aws: Aws) -> None:
    dlq = aws.create_queue("jobs-dlq.fifo")
    url = aws.create_queue("jobs.fifo", dead_letter=dlq)
    driver = make_driver(aws, {"default": url})
    body = JobService(driver).build_message(per_user, {"user": "7"}).encode()

    assert driver.dead_letter(body, "reason", queue="default")
    [message] = aws.drain(dlq, wait=1)
    assert message["Attributes"]["MessageGroupId"] == "user-7"


def test_dead_letter_queues_must_name_configured_queues(aws: Aws) -> None:
    with pytest.raises(ConfigurationError, match="'emails', which is not in queues"):
        make_driver(
            aws,
            {"default": aws.create_queue("jobs")},
            dead_letter_queues={"emails": aws.create_queue("dlq")},
        )


@pytest.mark.subprocess
def test_importing_glasswork_jobs_does_not_import_boto3() -> None:
    code = (
        "import sys, glasswork.jobs\n"
        "assert 'boto3' not in sys.modules, 'boto3 imported'\n"
        "glasswork.jobs.SQSQueueDriver\n"
        "assert 'boto3' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_driver_has_a_readable_repr() -> None:
    sqs = SQSQueueDriver(
        region="eu-west-1",
        queues={"default": "https://sqs.eu-west-1.amazonaws.com/1/jobs", "emails": "https://x/e"},
    )
    assert repr(sqs) == "SQSQueueDriver(region='eu-west-1', queues=['default', 'emails'])"
