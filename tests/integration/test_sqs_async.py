"""AsyncJobService on SQS through aiobotocore, against a moto server: enqueues do not block
the event loop (a ticker keeps ticking while they are in flight), unlike the sync service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel

from glasswork.jobs import AsyncJobService, DuplicateJobError, JobService, define_job
from glasswork.jobs.drivers.sqs import SQSQueueDriver
from glasswork.jobs.scheduler import ScheduledJobsTable, create_scheduler_table

from .conftest import REGION, Aws

pytest.importorskip("aiobotocore")


class Ping(BaseModel):
    n: int


ping = define_job(name="ping", schema=Ping, handler=lambda p: None)
once = define_job(name="once", schema=Ping, unique=lambda p: p.n, handler=lambda p: None)


def driver_for(aws: Aws, url: str, **options: Any) -> SQSQueueDriver:
    return SQSQueueDriver(
        region=REGION, queues={"default": url}, endpoint_url=aws.endpoint, **options
    )


async def with_ticker(enqueues: list[Callable[[], Awaitable[Any]]]) -> int:
    """Run ``enqueues`` concurrently beside a ticker; return the ticks counted while at
    least one enqueue was in flight."""
    in_flight = 0
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += in_flight > 0
            await asyncio.sleep(0)

    async def tracked(enqueue: Callable[[], Awaitable[Any]]) -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            await enqueue()
        finally:
            in_flight -= 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await asyncio.gather(*(tracked(e) for e in enqueues))
    done = True
    await task
    return ticks


def test_the_loop_keeps_ticking_while_sqs_enqueues_are_in_flight(aws: Aws) -> None:
    url = aws.create_queue("jobs")
    driver = driver_for(aws, url)

    async def native() -> int:
        async with AsyncJobService(driver) as jobs:
            assert jobs.mode == "native"
            return await with_ticker(
                [lambda i=i: jobs.enqueue(ping, Ping(n=i)) for i in range(50)]  # type: ignore[misc]
            )

    async def blocking() -> int:
        jobs = JobService(driver)

        async def enqueue(i: int) -> None:
            jobs.enqueue(ping, Ping(n=i))  # blocks the loop for the whole request

        return await with_ticker([lambda i=i: enqueue(i) for i in range(50)])  # type: ignore[misc]

    assert asyncio.run(native()) > 0
    assert asyncio.run(blocking()) == 0
    assert len(aws.drain(url, wait=1, expected=100)) == 100


def test_async_sqs_enqueues_now_later_many_and_far_away(aws: Aws) -> None:
    create_scheduler_table("scheduled-jobs", client=aws.dynamodb)
    url = aws.create_queue("jobs")
    driver = driver_for(aws, url, scheduler_table="scheduled-jobs")

    async def main() -> None:
        async with AsyncJobService(driver) as jobs:
            now = await jobs.enqueue(ping, Ping(n=1))
            assert now.scheduled_at is None
            soon = await jobs.enqueue_in(ping, Ping(n=2), "5m")  # SQS DelaySeconds
            assert soon.scheduled_at is not None
            far = await jobs.enqueue_in(ping, Ping(n=3), "2h")  # the scheduler table
            assert far.message_id.startswith("scheduled:")
            many = await jobs.enqueue_many(ping, [Ping(n=i) for i in range(10, 35)])
            assert len({r.message_id for r in many}) == 25

    asyncio.run(main())
    stats = driver.stats()["default"]
    assert (stats.ready, stats.delayed) == (26, 1)
    assert ScheduledJobsTable("scheduled-jobs", client=aws.dynamodb).count() == 1


def test_async_sqs_unique_keys(aws: Aws) -> None:
    create_scheduler_table("scheduled-jobs", client=aws.dynamodb)
    url = aws.create_queue("jobs")
    driver = driver_for(aws, url, unique_table="scheduled-jobs")

    async def main() -> None:
        async with AsyncJobService(driver) as jobs:
            first = await jobs.enqueue(once, Ping(n=1))
            with pytest.raises(DuplicateJobError) as refused:
                await jobs.enqueue(once, Ping(n=1))
            assert refused.value.existing_job_id == first.job_id
            with pytest.raises(DuplicateJobError):
                await jobs.enqueue_many(once, [Ping(n=2), Ping(n=1)])
            await jobs.enqueue_many(once, [Ping(n=2), Ping(n=3)])  # 2 was given back

    asyncio.run(main())
    assert len(aws.drain(url, wait=1, expected=3)) == 3
