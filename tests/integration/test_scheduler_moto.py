"""The DynamoDB scheduler table and its handler against a real (moto) server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from glasswork.jobs import ConfigurationError, JobMessage, JobService, define_job
from glasswork.jobs.drivers import QueueStats
from glasswork.jobs.drivers.sqs import SQSQueueDriver
from glasswork.jobs.drivers.sqs.scheduler import (
    TABLE_SHARDS,
    ScheduledJobsTable,
    create_scheduler_handler,
    create_scheduler_table,
    run_scheduler,
    shard_key,
)

from .conftest import REGION, Aws
from .test_sqs_driver_moto import RequestCounter

TABLE = "scheduled-jobs"
ping = define_job(name="ping", handler=lambda payload, ctx: None)
email = define_job(name="send-email", queue="emails", handler=lambda payload, ctx: None)


class Clock:
    """A settable clock for the scheduler (the jobs' due times are real)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Killed(BaseException):
    """Stands in for the process dying: not an Exception, so nothing catches it."""


class DyingDriver(SQSQueueDriver):
    """Dies once, before (``when="before"``) or after (``"after"``) sending."""

    def __init__(self, *args: Any, when: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.when = when
        self.died = False

    def enqueue_many(self, messages: Any, delay_seconds: float = 0.0) -> Any:
        if not self.died and self.when == "before":
            self.died = True
            raise Killed
        result = super().enqueue_many(messages, delay_seconds)
        if not self.died and self.when == "after":
            self.died = True
            raise Killed
        return result


@pytest.fixture
def table(aws: Aws) -> ScheduledJobsTable:
    create_scheduler_table(TABLE, client=aws.dynamodb)
    return ScheduledJobsTable(TABLE, client=aws.dynamodb)


def make_driver(aws: Aws, queues: dict[str, str], cls: type = SQSQueueDriver, **kw: Any) -> Any:
    return cls(region=REGION, queues=queues, endpoint_url=aws.endpoint, scheduler_table=TABLE, **kw)


def make_handler(aws: Aws, driver: SQSQueueDriver, clock: Clock, **kw: Any) -> Any:
    return create_scheduler_handler(
        table_name=TABLE,
        region=REGION,
        driver=driver,
        endpoint_url=aws.endpoint,
        clock=clock,
        **kw,
    )


def job_ids(messages: list[dict]) -> list[str]:
    return [json.loads(m["Body"])["jobId"] for m in messages]


def test_create_scheduler_table_sets_key_schema_and_ttl(aws: Aws) -> None:
    arn = create_scheduler_table(TABLE, client=aws.dynamodb)
    assert create_scheduler_table(TABLE, client=aws.dynamodb) == arn  # idempotent

    described = aws.dynamodb.describe_table(TableName=TABLE)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = aws.dynamodb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_scheduled_item_holds_the_envelope_due_time_and_ttl(aws: Aws, table: Any) -> None:
    driver = make_driver(aws, {"default": aws.create_queue("jobs")})
    result = JobService(driver).enqueue_in(ping, {"n": 1}, "2h")

    [item] = _all_items(aws)
    due = float(item["due_at"]["N"])
    assert result.scheduled_at is not None
    assert abs(due - result.scheduled_at.timestamp()) < 0.002
    assert item["pk"]["S"] == shard_key(result.job_id)
    assert item["sk"]["S"] == f"{round(due * 1000):015d}#{result.job_id}"
    assert JobMessage.from_json(item["body"]["S"]).payload == {"n": 1}
    assert item["queue"]["S"] == "default"
    assert int(item["expires_at"]["N"]) >= due + 7 * 86400


def _all_items(aws: Aws) -> list[dict]:
    items: list[dict] = []
    for shard in range(TABLE_SHARDS):
        items += aws.dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"shard-{shard}"}},
        )["Items"]
    return items


def test_scheduler_dispatches_due_items_and_leaves_future_ones(aws: Aws, table: Any) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    service = JobService(driver)
    soon = service.enqueue_in(ping, {"n": "20m"}, "20m")
    later = service.enqueue_in(ping, {"n": "2h"}, "2h")
    clock = Clock()

    handler = make_handler(aws, driver, clock)
    assert handler({}, None) == {"dispatched": 0, "failed": 0, "skipped": 0, "dead_lettered": 0}
    assert table.count() == 2

    clock.now += 21 * 60  # 1 minute after the first is due
    assert handler({}, None) == {"dispatched": 1, "failed": 0, "skipped": 0, "dead_lettered": 0}
    assert job_ids(aws.drain(url, wait=1)) == [soon.job_id]
    assert table.count() == 1

    clock.now += 3 * 3600
    assert handler({}, None)["dispatched"] == 1
    assert job_ids(aws.drain(url, wait=1)) == [later.job_id]
    assert table.count() == 0


def test_scheduler_finds_items_overdue_for_days_with_one_query_per_shard(
    aws: Aws, table: Any
) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    results = JobService(driver).enqueue_many(ping, [{"n": i} for i in range(20)], delay="1h")
    clock = Clock()
    clock.now += 30 * 86400  # the scheduler was down for a month
    handler = make_handler(aws, driver, clock)
    requests = RequestCounter(handler.scheduler.table.client)

    assert handler({}, None)["dispatched"] == 20

    assert requests.count("Scan") == 0
    assert requests.count("Query") == TABLE_SHARDS
    assert sorted(job_ids(aws.drain(url, wait=1, expected=20))) == sorted(r.job_id for r in results)


def test_scheduler_sends_jobs_due_within_the_lookahead_with_the_remaining_delay(
    aws: Aws, table: Any
) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    result = JobService(driver).enqueue_in(ping, {}, "16m")
    assert result.scheduled_at is not None
    clock = Clock()
    clock.now = result.scheduled_at.timestamp() - 30  # due in 30 s; lookahead is 60 s

    assert make_handler(aws, driver, clock)({}, None)["dispatched"] == 1
    assert table.count() == 0
    assert driver.stats()["default"] == QueueStats("default", ready=0, delayed=1, in_flight=0)


def test_fifo_jobs_are_sent_only_once_due(aws: Aws, table: Any) -> None:
    url = aws.create_queue("jobs.fifo")
    driver = make_driver(aws, {"default": url})
    result = JobService(driver).enqueue_in(ping, {}, "30s")  # FIFO: via the table
    clock = Clock()
    handler = make_handler(aws, driver, clock)

    clock.now += 10  # within the lookahead, but a FIFO queue cannot hold it back
    assert handler({}, None) == {"dispatched": 0, "failed": 0, "skipped": 1, "dead_lettered": 0}
    clock.now += 25
    assert handler({}, None)["dispatched"] == 1

    [message] = aws.drain(url, wait=1)
    assert json.loads(message["Body"])["jobId"] == result.job_id
    assert message["Attributes"]["MessageDeduplicationId"] == result.job_id


def test_scheduler_killed_between_claim_and_send_loses_no_job(aws: Aws, table: Any) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url}, cls=DyingDriver, when="before")
    result = JobService(driver).enqueue_in(ping, {}, "20m")
    clock = Clock()
    clock.now += 21 * 60
    handler = make_handler(aws, driver, clock, claim_seconds=120)

    with pytest.raises(Killed):
        handler({}, None)  # claimed, then died before sending
    assert table.count() == 1

    # Another run while the dead claim is still live leaves it alone (no double send)...
    assert handler({}, None) == {"dispatched": 0, "failed": 0, "skipped": 0, "dead_lettered": 0}
    assert aws.drain(url) == []

    # ...and the first run after the claim expires sends it.
    clock.now += 121
    assert handler({}, None)["dispatched"] == 1
    assert job_ids(aws.drain(url, wait=1)) == [result.job_id]
    assert table.count() == 0


def test_scheduler_killed_between_send_and_delete_sends_again_with_the_same_job_id(
    aws: Aws, table: Any
) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url}, cls=DyingDriver, when="after")
    result = JobService(driver).enqueue_in(ping, {}, "20m")
    clock = Clock()
    clock.now += 21 * 60
    handler = make_handler(aws, driver, clock, claim_seconds=120)

    with pytest.raises(Killed):
        handler({}, None)  # sent, then died before deleting
    clock.now += 121
    assert handler({}, None)["dispatched"] == 1

    # At-least-once: the crash window produced a duplicate that carries the same job id.
    assert job_ids(aws.drain(url, wait=1, expected=2)) == [result.job_id] * 2
    assert table.count() == 0


def test_a_failed_send_is_recorded_and_retried_after_a_backoff(aws: Aws, table: Any) -> None:
    emails = aws.create_queue("emails")
    producer = make_driver(aws, {"default": aws.create_queue("jobs"), "emails": emails})
    JobService(producer).enqueue_in(email, {}, "20m")
    clock = Clock()
    clock.now += 21 * 60
    # This scheduler's driver does not know the "emails" queue: the send fails.
    misconfigured = make_driver(aws, {"default": producer.queues["default"]})

    assert make_handler(aws, misconfigured, clock)({}, None)["failed"] == 1
    [item] = _all_items(aws)
    assert "unknown queue 'emails'" in item["last_error"]["S"]
    assert item["dispatch_attempts"]["N"] == "1"

    fixed = make_handler(aws, producer, clock)
    clock.now += 10
    assert fixed({}, None)["dispatched"] == 0  # still backing off (30 s after a first failure)
    clock.now += 25
    assert fixed({}, None)["dispatched"] == 1
    assert len(aws.drain(emails, wait=1)) == 1


def test_only_one_scheduler_claims_an_item(aws: Aws, table: Any) -> None:
    driver = make_driver(aws, {"default": aws.create_queue("jobs")})
    JobService(driver).enqueue_in(ping, {}, "20m")
    [item] = _all_items(aws)
    pk, sk, now = item["pk"]["S"], item["sk"]["S"], time.time()

    assert table.claim(pk, sk, now=now, until=now + 60, token="a") is not None
    assert table.claim(pk, sk, now=now + 1, until=now + 61, token="b") is None
    assert table.claim(pk, sk, now=now + 61, until=now + 121, token="c") is not None
    table.delete(pk, sk)
    assert table.claim(pk, sk, now=now + 200, until=now + 260, token="d") is None


def test_handler_stops_before_the_lambda_times_out(aws: Aws, table: Any) -> None:
    driver = make_driver(aws, {"default": aws.create_queue("jobs")})
    JobService(driver).enqueue_in(ping, {}, "20m")
    clock = Clock()
    clock.now += 21 * 60

    class AlmostOutOfTime:
        def get_remaining_time_in_millis(self) -> int:
            return 4000  # under the 5 s safety margin

    assert make_handler(aws, driver, clock)({}, AlmostOutOfTime())["dispatched"] == 0
    assert table.count() == 1


def test_run_scheduler_loop_dispatches_until_stopped(aws: Aws, table: Any) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    result = JobService(driver).enqueue_in(ping, {}, "20m")
    stop = threading.Event()
    loop = threading.Thread(
        target=run_scheduler,
        kwargs={
            "table_name": TABLE,
            "region": REGION,
            "driver": driver,
            "endpoint_url": aws.endpoint,
            "interval": 0.05,
            "stop": stop,
            "clock": lambda: time.time() + 21 * 60,
        },
    )
    loop.start()
    try:
        assert job_ids(aws.drain(url, wait=5, expected=1)) == [result.job_id]
    finally:
        stop.set()
        loop.join(20)
    assert not loop.is_alive()
    assert table.count() == 0


def test_scheduler_settings_are_checked(aws: Aws) -> None:
    driver = make_driver(aws, {"default": aws.create_queue("jobs")})
    with pytest.raises(ConfigurationError, match="lookahead"):
        create_scheduler_handler(table_name=TABLE, driver=driver, lookahead=901)
    with pytest.raises(ConfigurationError, match="table_name"):
        create_scheduler_handler(table_name="", driver=driver)


# -- unusable items, batches ------------------------------------------------------------------


def _put_raw(aws: Aws, sk: str, **attributes: Any) -> None:
    """An item as something other than Glasswork (or a bug, or a hand edit) might leave it."""
    aws.dynamodb.put_item(
        TableName=TABLE, Item={"pk": {"S": "shard-0"}, "sk": {"S": sk}, **attributes}
    )


def _bad_items(aws: Aws, due: float) -> dict[str, str]:
    """Five unusable items due at ``due``; returns sort key -> the problem it has."""
    good_body = JobMessage.create("ping", {}, queue="default").encode()
    due_n = {"N": f"{due:.3f}"}
    ms = f"{int(due * 1000) - 1000:015d}"
    items = {
        f"{ms}#no-queue": ({"due_at": due_n, "body": {"S": good_body}}, "queue is missing"),
        f"{ms}#due-text": (
            {"queue": {"S": "default"}, "due_at": {"S": "tomorrow"}, "body": {"S": good_body}},
            "due_at is not of type N",
        ),
        f"{ms}#not-json": (
            {"queue": {"S": "default"}, "due_at": due_n, "body": {"S": "{not json"}},
            "body is not a job message",
        ),
        f"{ms}#body-number": (
            {"queue": {"S": "default"}, "due_at": due_n, "body": {"N": "42"}},
            "body is not of type S",
        ),
        f"{ms}#not-a-job": (
            {"queue": {"S": "default"}, "due_at": due_n, "body": {"S": '{"hello": 1}'}},
            "jobName: Field required",
        ),
    }
    for sk, (attributes, _) in items.items():
        _put_raw(aws, sk, **attributes)
    return {sk: problem for sk, (_, problem) in items.items()}


def test_unusable_items_are_dead_lettered_with_the_reason_and_the_rest_are_sent(
    aws: Aws, table: Any
) -> None:
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq)
    driver = make_driver(aws, {"default": url})
    results = JobService(driver).enqueue_many(ping, [{"n": i} for i in range(3)], delay="20m")
    clock = Clock()
    clock.now += 21 * 60
    problems = _bad_items(aws, clock.now - 30)

    run = make_handler(aws, driver, clock)({}, None)

    assert run == {"dispatched": 3, "failed": 0, "skipped": 0, "dead_lettered": 5}
    assert sorted(job_ids(aws.drain(url, wait=1, expected=3))) == sorted(r.job_id for r in results)
    dead = aws.drain(dlq, wait=1, expected=5)
    reasons = {m["MessageAttributes"]["GlassworkReason"]["StringValue"] for m in dead}
    for sk, problem in problems.items():
        [reason] = [r for r in reasons if sk in r]
        assert problem in reason
    assert table.count() == 0  # none left to block later passes (or wait for the TTL)


def test_an_unusable_item_with_no_dead_letter_is_logged_at_error_and_deleted(
    aws: Aws, table: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = aws.create_queue("jobs")  # no redrive policy, and no dead_letter_queue
    driver = make_driver(aws, {"default": url})
    clock = Clock()
    _put_raw(
        aws,
        f"{int(clock.now * 1000) - 1000:015d}#broken",
        queue={"S": "default"},
        due_at={"N": f"{clock.now - 1:.3f}"},
        body={"S": "{not json"},
    )
    with caplog.at_level("ERROR", logger="glasswork.jobs.scheduler"):
        run = make_handler(aws, driver, clock)({}, None)
    assert run["dead_lettered"] == 1
    assert "no dead letter to keep it in" in caplog.text and "{not json" in caplog.text
    assert table.count() == 0


def test_an_unusable_item_naming_no_known_queue_goes_to_the_configured_dead_letter(
    aws: Aws, table: Any
) -> None:
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq)
    driver = make_driver(aws, {"default": url})
    clock = Clock()
    _put_raw(
        aws,
        f"{int(clock.now * 1000) - 1000:015d}#orphan",
        queue={"S": "nobody-knows-this-queue"},
        due_at={"BOOL": True},
        body={"S": "x"},
    )
    handler = make_handler(aws, driver, clock, dead_letter_queue="default")
    assert handler({}, None)["dead_lettered"] == 1
    [dead] = aws.drain(dlq, wait=1)
    assert dead["Body"] == "x"
    assert "due_at is not of type N" in dead["MessageAttributes"]["GlassworkReason"]["StringValue"]


def test_due_jobs_are_claimed_sent_and_deleted_in_batches(aws: Aws, table: Any) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    JobService(driver).enqueue_many(ping, [{"n": i} for i in range(25)], delay="20m")
    clock = Clock()
    clock.now += 21 * 60
    handler = make_handler(aws, driver, clock)
    dynamodb = RequestCounter(handler.scheduler.table.client)
    sqs = RequestCounter(driver.client)

    assert handler({}, None)["dispatched"] == 25

    assert dynamodb.count("TransactWriteItems") == 1  # one claim for all 25
    assert dynamodb.count("BatchWriteItem") == 1  # one delete for all 25
    assert dynamodb.count("UpdateItem") == dynamodb.count("DeleteItem") == 0
    assert sqs.count("SendMessageBatch") == 3 and sqs.count("SendMessage") == 0
    assert len(aws.drain(url, wait=1, expected=25)) == 25
    assert table.count() == 0


def test_items_another_scheduler_claims_meanwhile_are_left_and_the_rest_sent(
    aws: Aws, table: Any
) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, {"default": url})
    JobService(driver).enqueue_many(ping, [{"n": i} for i in range(5)], delay="20m")
    clock = Clock()
    clock.now += 21 * 60

    class Racing(ScheduledJobsTable):
        """Another scheduler claims two items between this one's query and its claim."""

        def claim_many(self, items: Any, **kwargs: Any) -> Any:
            for item in items[:2]:
                assert self.claim(item.pk, item.sk, now=clock.now, until=clock.now + 60, token="x")
            return super().claim_many(items, **kwargs)

    handler = make_handler(aws, driver, clock)
    handler.scheduler.table = Racing(TABLE, client=aws.dynamodb)
    requests = RequestCounter(aws.dynamodb)

    run = handler({}, None)
    assert (run["dispatched"], run["skipped"]) == (3, 2)
    assert requests.count("TransactWriteItems") == 2  # cancelled by the two, then without them
    assert table.count() == 2  # the other scheduler's to send
    assert len(aws.drain(url, wait=1, expected=3)) == 3


_SCHEDULER_PROCESS = """
import logging, os, signal, sys, threading, time
from glasswork.jobs import SQSQueueDriver
from glasswork.jobs.drivers.sqs.scheduler import run_scheduler
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
endpoint, url, table, sig, when = sys.argv[1:6]

class SignalOnStart(logging.Handler):
    # The signal comes the moment "scheduler started" is logged: a supervisor waiting for
    # that line may send it at once.
    def emit(self, record):
        if "scheduler started" in record.getMessage():
            os.kill(os.getpid(), int(sig))

class SignalInWait(threading.Event):
    # The signal comes while this thread holds the event's lock, inside wait().
    def wait(self, timeout=None):
        with self._cond:
            os.kill(os.getpid(), int(sig))
            time.sleep(0.05)  # the handler runs here
        return super().wait(timeout)

stop = None
if when == "at-start":
    logging.getLogger().addHandler(SignalOnStart())
elif when == "in-wait":
    stop = SignalInWait()
driver = SQSQueueDriver(queues={"default": url}, region="us-east-1", endpoint_url=endpoint,
                        scheduler_table=table)
run_scheduler(table_name=table, region="us-east-1", driver=driver, endpoint_url=endpoint,
              interval=0.1, stop=stop)
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("when", ["later", "at-start", "in-wait"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_scheduler_in_a_process_stops_on_a_signal(
    aws: Aws, table: Any, sig: signal.Signals, when: str
) -> None:
    """As a container runs it: the main thread's loop ends cleanly on SIGTERM or SIGINT,
    whenever the signal comes once "scheduler started" is logged: later, at once
    (``at-start``), or while the loop's thread holds the lock of the event it waits on
    (``in-wait``: a handler that set the event would deadlock)."""
    url = aws.create_queue("jobs")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCHEDULER_PROCESS, aws.endpoint, url, TABLE, str(sig), when],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        if when == "later":
            deadline = time.monotonic() + 20
            while "scheduler started" not in proc.stderr.readline():
                assert time.monotonic() < deadline and proc.poll() is None, "did not start"
            proc.send_signal(sig)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the scheduler did not stop within 20 s of {sig.name} (deadlocked?)")
        assert code == 0
        log = proc.stderr.read()
        assert f"scheduler stopping on {sig.name}" in log and "scheduler stopped" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
