"""Fair tenants on SQS, against the moto server: a job's fairness key is the
``MessageGroupId`` of standard queues (SQS fair queues) on every way a job is sent (one send,
``SendMessageBatch``, the async enqueuer, the scheduler table's later dispatch, a redrive
from the dead letters), read back as SQS stores it (``ReceiveMessage`` with the message's
system attributes); FIFO queues keep their own groups."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from glasswork.jobs import AsyncJobService, JobService, define_job
from glasswork.jobs.drivers.sqs.driver import SQSQueueDriver
from glasswork.jobs.drivers.sqs.fifo import fifo_id
from glasswork.jobs.drivers.sqs.scheduler import create_scheduler_handler, create_scheduler_table

from .conftest import REGION, Aws

TABLE = "scheduled-jobs"

tenant_job = define_job(
    name="tenant-job", handler=lambda payload: None, fairness_key=lambda p: p.get("tenant")
)
grouped = define_job(
    name="grouped",
    handler=lambda payload: None,
    group_id=lambda p: f"order-{p['order']}",
    fairness_key=lambda p: p["tenant"],
)


def make_driver(aws: Aws, url: str, **options: Any) -> SQSQueueDriver:
    return SQSQueueDriver(
        region=REGION, queues={"default": url}, endpoint_url=aws.endpoint, **options
    )


def groups(messages: list[dict]) -> dict[int, str | None]:
    """Each received message's ``n`` (payload) -> the MessageGroupId SQS stored for it."""
    return {
        json.loads(m["Body"])["payload"]["n"]: m.get("Attributes", {}).get("MessageGroupId")
        for m in messages
    }


def collect(aws: Aws, url: str, count: int) -> list[dict]:
    """``count`` messages as a consumer asking SQS for their ``MessageGroupId`` (a system
    attribute) receives them (each deleted), within a deadline."""
    messages: list[dict] = []
    deadline = time.monotonic() + 15
    while len(messages) < count and time.monotonic() < deadline:
        response = aws.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["MessageGroupId"],
        )
        for m in response.get("Messages", []):
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            messages.append(m)
    assert len(messages) == count
    return messages


def test_a_fairness_key_is_the_message_group_of_a_standard_queue(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    jobs = JobService(make_driver(aws, url))
    jobs.enqueue(tenant_job, {"n": 1, "tenant": "acme"})
    jobs.enqueue(tenant_job, {"n": 2})  # no tenant: no group (SQS: a tenant of its own)
    jobs.enqueue_in(tenant_job, {"n": 3, "tenant": 42}, "1s")  # DelaySeconds and a group
    assert groups(collect(aws, url, 3)) == {1: "acme", 2: None, 3: "42"}


def test_a_batch_sends_each_messages_group(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    jobs = JobService(make_driver(aws, url))
    tenants = ["a", "b", None, "a", "tenant with spaces é"]
    jobs.enqueue_many(tenant_job, [{"n": n, "tenant": t} for n, t in enumerate(tenants)])
    found = groups(collect(aws, url, len(tenants)))
    # A key SQS would refuse as a group id is sent as its SHA-256 (still one group per key).
    assert found == {
        0: "a",
        1: "b",
        2: None,
        3: "a",
        4: fifo_id("tenant with spaces é"),
    }
    assert found[4] != "tenant with spaces é" and len(str(found[4])) == 64


def test_the_async_enqueuer_sends_the_group_too(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = make_driver(aws, url)

    async def main() -> None:
        async with AsyncJobService(driver) as jobs:
            await jobs.enqueue(tenant_job, {"n": 1, "tenant": "a"})
            await jobs.enqueue_many(tenant_job, [{"n": 2, "tenant": "b"}, {"n": 3}])

    asyncio.run(main())
    assert groups(collect(aws, url, 3)) == {1: "a", 2: "b", 3: None}


def test_the_scheduler_tables_later_dispatch_sends_the_group(aws: Aws) -> None:
    create_scheduler_table(TABLE, client=aws.dynamodb)
    url = aws.create_queue("jobs")
    driver = make_driver(aws, url, scheduler_table=TABLE)
    JobService(driver).enqueue_in(tenant_job, {"n": 1, "tenant": "late"}, "20m")
    now = [time.time()]
    handler = create_scheduler_handler(
        table_name=TABLE,
        region=REGION,
        driver=driver,
        endpoint_url=aws.endpoint,
        clock=lambda: now[0],
    )
    now[0] += 21 * 60
    assert handler({}, None)["dispatched"] == 1
    assert groups(collect(aws, url, 1)) == {1: "late"}


def test_a_redriven_dead_letter_keeps_its_group(aws: Aws) -> None:
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq)
    driver = make_driver(aws, url)
    body = JobService(driver).build_message(tenant_job, {"n": 7, "tenant": "acme"}).encode()
    assert driver.dead_letter(body, "failed", queue="default")
    [letter] = driver.dead_letters("default")
    assert driver.redrive([letter.id]) == 1
    assert groups(collect(aws, url, 1)) == {7: "acme"}


def test_fifo_queues_keep_their_groups_whatever_the_fairness_key(aws: Aws) -> None:
    url = aws.create_queue("jobs.fifo")
    jobs = JobService(make_driver(aws, url))
    jobs.enqueue(grouped, {"n": 1, "order": 9, "tenant": "acme"})
    jobs.enqueue(tenant_job, {"n": 2, "tenant": "acme"})  # no group_id: the job's name
    found = groups(collect(aws, url, 2))
    assert found == {1: "order-9", 2: "tenant-job"}


@pytest.mark.parametrize("queue", ["jobs", "jobs.fifo"])
def test_the_driver_reads_back_the_key_from_the_body(aws: Aws, queue: str) -> None:
    url = aws.create_queue(queue)
    driver = make_driver(aws, url)
    JobService(driver).enqueue(tenant_job, {"n": 1, "tenant": "acme"})
    [received] = driver.receive(wait_seconds=1)
    assert '"fairnessKey":"acme"' in received.body
