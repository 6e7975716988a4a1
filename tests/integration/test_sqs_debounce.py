"""Debounce on SQS (a real moto server), through the unique-key table: every debounced
enqueue sends a message of its own and takes the key in the table; a delivery whose job no
longer holds the key is superseded, deleted without running, on the long-running worker and
on the Lambda handler alike (the driver's run step); a run superseded while it ran does not
count and is not retried; long windows go through the scheduler table; what it costs, in
requests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    AsyncJobService,
    ConfigurationError,
    EnqueueError,
    JobService,
    PermanentJobError,
    bootstrap_worker,
    define_job,
)
from glasswork.jobs.debounce import superseded_reason, superseding_job
from glasswork.jobs.drivers.sqs import SQSQueueDriver, create_status_table
from glasswork.jobs.drivers.sqs.scheduler import (
    ScheduledJobsTable,
    Scheduler,
    create_scheduler_table,
)
from glasswork.jobs.testing import FakeLambdaContext, sqs_event_from_messages
from glasswork.jobs.worker import Worker

from .conftest import REGION, Aws
from .test_sqs_driver_moto import RequestCounter

TABLE = "scheduled-jobs"  # the scheduler table, serving as the unique-key table too
STATUS = "job-status"


class Edit(BaseModel):
    doc: str
    n: int


RUNS: list[tuple[str, int, float]] = []
GATE: dict[str, Any] = {"started": threading.Event(), "release": threading.Event(), "fail": False}


def reindex(payload: Edit) -> int:
    RUNS.append((payload.doc, payload.n, time.monotonic()))
    if payload.n < 0:
        GATE["started"].set()
        GATE["release"].wait(30)
        if GATE["fail"] == "permanent":
            raise PermanentJobError("the superseded run fails for good")
        if GATE["fail"]:
            raise RuntimeError("the superseded run fails")
    return payload.n


reindex_job = define_job(
    name="reindex",
    schema=Edit,
    unique=lambda p: p.doc,
    retry={"max_attempts": 5, "backoff": 0.05, "jitter": False},
    handler=reindex,
)
APP = define_module(name="sqs-debounce", jobs=[reindex_job])


@pytest.fixture(autouse=True)
def _fresh_runs() -> Iterator[None]:
    RUNS.clear()
    GATE.update(started=threading.Event(), release=threading.Event(), fail=False)
    yield
    GATE["release"].set()


@pytest.fixture
def url(aws: Aws) -> str:
    create_scheduler_table(TABLE, client=aws.dynamodb)
    create_status_table(STATUS, client=aws.dynamodb)
    return aws.create_queue("jobs", visibility_timeout=5)


def make_driver(aws: Aws, url: str, **options: Any) -> SQSQueueDriver:
    return SQSQueueDriver(
        region=REGION,
        queues={"default": url},
        endpoint_url=aws.endpoint,
        scheduler_table=TABLE,
        unique_table=TABLE,
        **options,
    )


@pytest.fixture(params=["keys only", "with statuses"])
def driver(request: pytest.FixtureRequest, aws: Aws, url: str) -> SQSQueueDriver:
    if request.param == "keys only":
        return make_driver(aws, url)
    return make_driver(aws, url, status_table=STATUS)


def wait_until(check: Callable[[], Any], what: str, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s")
        time.sleep(0.05)
    return found


def queue_empty(driver: SQSQueueDriver) -> bool:
    counts = driver.stats()["default"]
    return counts.ready == counts.delayed == counts.in_flight == 0


def key_item(aws: Aws, doc: str) -> dict[str, Any] | None:
    item = aws.dynamodb.get_item(
        TableName=TABLE,
        Key={"pk": {"S": f"unique#reindex#{doc}"}, "sk": {"S": "unique"}},
        ConsistentRead=True,
    ).get("Item")
    return dict(item) if item else None


class Running:
    """A long-running worker on ``driver`` in a thread, stopped at the end."""

    def __init__(self, driver: SQSQueueDriver) -> None:
        self.worker = Worker(module=APP, driver=driver, concurrency=4, job_timeout=None)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        GATE["release"].set()
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def receive_all(aws: Aws, url: str, count: int, within: float = 20.0) -> list[dict[str, Any]]:
    """``count`` raw messages of ``url`` (as Lambda's integration receives them)."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while len(messages) < count:
        assert time.monotonic() < deadline, f"expected {count} messages, got {len(messages)}"
        messages += aws.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
    return messages


def invoke(handler: Any, aws: Aws, url: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Hand ``messages`` to the Lambda handler; settle them as the event source mapping
    does (delete those not reported)."""
    event = sqs_event_from_messages(messages, aws.queue_arn(url))
    response: dict[str, Any] = handler(event, FakeLambdaContext(remaining_ms=60_000))
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return response


# -- the long-running worker ----------------------------------------------------------------------


def test_a_burst_runs_once_with_its_last_payload_on_a_long_running_worker(
    aws: Aws, driver: SQSQueueDriver
) -> None:
    service = JobService(driver)
    handles = [service.enqueue(reindex_job, Edit(doc="d", n=n), debounce=1) for n in range(5)]
    assert key_item(aws, "d")["job_id"]["S"] == handles[-1].job_id  # type: ignore[index]
    with Running(driver):
        wait_until(lambda: RUNS, "the run")
        wait_until(lambda: queue_empty(driver), "every message deleted")
    assert [(doc, n) for doc, n, _ in RUNS] == [("d", 4)]
    assert key_item(aws, "d") is None  # released when the job was done
    if driver.status_table:
        assert handles[0].wait(timeout=5) == 4  # followed to the job that ran
        for earlier, later in zip(handles, handles[1:], strict=False):  # noqa: RUF007
            assert superseding_job(earlier.status()) == later.job_id


@pytest.mark.parametrize("fails", [False, "retry", "permanent"])
def test_a_run_superseded_while_it_ran_does_not_count_and_is_not_retried(
    aws: Aws, url: str, fails: bool | str
) -> None:
    GATE["fail"] = fails
    dlq = aws.create_queue("jobs-dlq")
    driver = make_driver(aws, url, status_table=STATUS, dead_letter_queues={"default": dlq})
    service = JobService(driver)
    with Running(driver):
        slow = service.enqueue(reindex_job, Edit(doc="d", n=-1), debounce=0)
        assert GATE["started"].wait(20)
        latest = service.enqueue(reindex_job, Edit(doc="d", n=7), debounce=1)
        GATE["release"].set()
        assert latest.wait(timeout=20) == 7
        wait_until(lambda: queue_empty(driver), "every message deleted")
        wait_until(lambda: slow.status().state != "running", "the slow run's end")  # type: ignore[union-attr]
    assert [(doc, n) for doc, n, _ in RUNS] == [("d", -1), ("d", 7)]
    status = slow.status()
    assert status is not None
    dead = aws.drain(dlq)
    if fails == "permanent":  # dead-lettered as any failure for good
        assert status.state == "dead"
        assert [json.loads(m["Body"])["jobId"] for m in dead] == [slow.job_id]
    else:
        assert (status.state, status.error) == (
            "cancelled",
            superseded_reason(latest.job_id, running=True),
        )
        assert slow.wait(timeout=5) == 7
        assert dead == []


# -- the Lambda handler ---------------------------------------------------------------------------


def test_the_lambda_handler_deletes_superseded_records_without_running_them(
    aws: Aws, url: str, driver: SQSQueueDriver
) -> None:
    service = JobService(driver)
    handles = [service.enqueue(reindex_job, Edit(doc="d", n=n), debounce=1) for n in range(3)]
    handler = bootstrap_worker(module=APP, driver=driver, check_setup=False)
    messages = receive_all(aws, url, 3)
    assert invoke(handler, aws, url, messages) == {"batchItemFailures": []}
    assert [(doc, n) for doc, n, _ in RUNS] == [("d", 2)]
    assert aws.drain(url) == []  # the superseded records were deleted, not reported
    assert key_item(aws, "d") is None
    if driver.status_table:
        assert [h.status().state for h in handles] == ["cancelled", "cancelled", "done"]  # type: ignore[union-attr]


def test_a_lambda_run_superseded_while_it_ran_is_not_reported_for_retry(aws: Aws, url: str) -> None:
    GATE["fail"] = "retry"
    driver = make_driver(aws, url)  # no status table: the unique-key table decides alone
    service = JobService(driver)
    handler = bootstrap_worker(module=APP, driver=driver, check_setup=False)
    service.enqueue(reindex_job, Edit(doc="d", n=-1), debounce=0)
    first = receive_all(aws, url, 1)
    answered: list[dict[str, Any]] = []
    invocation = threading.Thread(
        target=lambda: answered.append(invoke(handler, aws, url, first)), daemon=True
    )
    invocation.start()
    assert GATE["started"].wait(20)
    service.enqueue(reindex_job, Edit(doc="d", n=7), debounce=1)
    GATE["release"].set()
    invocation.join(30)
    assert answered == [{"batchItemFailures": []}]  # failed, but superseded: not retried
    assert invoke(handler, aws, url, receive_all(aws, url, 1)) == {"batchItemFailures": []}
    assert [(doc, n) for doc, n, _ in RUNS] == [("d", -1), ("d", 7)]
    assert aws.drain(url) == []
    assert key_item(aws, "d") is None


# -- long windows, failures, costs ----------------------------------------------------------------


def test_a_window_past_fifteen_minutes_goes_through_the_scheduler_table(aws: Aws, url: str) -> None:
    driver = make_driver(aws, url)
    service = JobService(driver)
    first = service.enqueue(reindex_job, Edit(doc="d", n=1), debounce="20m")
    last = service.enqueue(reindex_job, Edit(doc="d", n=2), debounce="20m")
    assert first.message_id.startswith("scheduled:")
    assert last.scheduled_at is not None
    table = ScheduledJobsTable(TABLE, client=aws.dynamodb)
    later = Scheduler(table, driver, clock=lambda: time.time() + 1260)
    run = later.run_once()
    assert (run.dispatched, run.failed) == (2, 0)  # the superseded one is sent all the same
    handler = bootstrap_worker(module=APP, driver=driver, check_setup=False)
    assert invoke(handler, aws, url, receive_all(aws, url, 2)) == {"batchItemFailures": []}
    assert [(doc, n) for doc, n, _ in RUNS] == [("d", 2)]


def test_a_send_that_fails_puts_the_key_back_so_the_superseded_job_counts_again(
    aws: Aws, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = make_driver(aws, url, status_table=STATUS)
    service = JobService(driver)
    first = service.enqueue(reindex_job, Edit(doc="d", n=1), debounce=1)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise EnqueueError("SQS is down")

    with monkeypatch.context() as patched:
        patched.setattr(driver.producer.sender, "send", refuse)
        with pytest.raises(EnqueueError, match="SQS is down"):
            service.enqueue(reindex_job, Edit(doc="d", n=2), debounce=1)
    assert key_item(aws, "d")["job_id"]["S"] == first.job_id  # type: ignore[index]
    assert first.status().state == "scheduled"  # type: ignore[union-attr]
    with Running(driver):
        assert first.wait(timeout=20) == 1


def test_what_a_debounced_enqueue_and_delivery_cost_in_requests(aws: Aws, url: str) -> None:
    """Per enqueue: one UpdateItem (the key) and one SendMessage; with a status table, one
    PutItem more, and one UpdateItem more when it supersedes (the tombstone). Per delivery:
    a GetItem before the run and the DeleteItem that releases the key (a superseded one:
    the GetItem only, and the message deleted)."""
    for status_table, per_enqueue in ((None, 2), (STATUS, 3)):
        RUNS.clear()
        driver = make_driver(aws, url, status_table=status_table)
        driver.message_limit("default")  # read once per queue (GetQueueAttributes)
        dynamodb, sqs = RequestCounter(driver.dynamodb), RequestCounter(driver.client)
        service = JobService(driver)
        service.enqueue(reindex_job, Edit(doc="cost", n=1), debounce=0)
        assert len(dynamodb.calls) + len(sqs.calls) == per_enqueue
        assert (dynamodb.count("UpdateItem"), sqs.count("SendMessage")) == (1, 1)
        before = len(dynamodb.calls)
        service.enqueue(reindex_job, Edit(doc="cost", n=2), debounce=0)
        superseding = 1 if status_table else 0  # the first job's tombstone
        assert len(dynamodb.calls) - before == per_enqueue - 1 + superseding
        handler = bootstrap_worker(module=APP, driver=driver, check_setup=False)
        messages = receive_all(aws, url, 2)
        reads = dynamodb.count("GetItem")
        deletes = dynamodb.count("DeleteItem")
        assert invoke(handler, aws, url, messages) == {"batchItemFailures": []}
        if status_table is None:
            assert dynamodb.count("GetItem") - reads == 2  # one per delivery
        else:  # the superseded one meets its tombstone at the start: no look at the key
            assert dynamodb.count("GetItem") - reads == 1
        assert dynamodb.count("DeleteItem") - deletes == 1  # the run that counted
        assert [n for _, n, _ in RUNS] == [2]


def test_the_async_service_debounces_on_sqs(aws: Aws, url: str) -> None:
    driver = make_driver(aws, url, status_table=STATUS)

    async def burst() -> list[str]:
        async with AsyncJobService(driver) as jobs:
            return [
                (await jobs.enqueue(reindex_job, Edit(doc="d", n=n), debounce=60)).job_id
                for n in range(3)
            ]

    ids = asyncio.run(burst())
    assert key_item(aws, "d")["job_id"]["S"] == ids[-1]  # type: ignore[index]
    assert [superseding_job(driver.job_status(i)) for i in ids] == [ids[1], ids[2], None]


def test_without_a_unique_key_table_debounce_is_refused_naming_the_job(aws: Aws, url: str) -> None:
    driver = SQSQueueDriver(region=REGION, queues={"default": url}, endpoint_url=aws.endpoint)
    with pytest.raises(
        ConfigurationError, match=r"'reindex' cannot be debounced on the sqs driver"
    ):
        JobService(driver).enqueue(reindex_job, Edit(doc="d", n=1), debounce=1)
    assert aws.drain(url) == []
