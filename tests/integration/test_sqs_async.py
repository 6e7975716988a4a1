"""AsyncJobService on SQS through aiobotocore, against a moto server: enqueues do not block
the event loop (a ticker keeps ticking while they are in flight), unlike the sync service."""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel

from glasswork.jobs import (
    AsyncJobService,
    DuplicateJobError,
    EnqueueError,
    EnqueueResult,
    JobService,
    define_job,
)
from glasswork.jobs.drivers.sqs import SQSQueueDriver
from glasswork.jobs.drivers.sqs.scheduler import ScheduledJobsTable, create_scheduler_table

from .conftest import REGION, Aws

pytest.importorskip("aiobotocore")

from .holding_proxy import HoldingProxy  # aiohttp comes with aiobotocore


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


# -- cancelled and closed enqueues --------------------------------------------------------
# The answers to chosen calls are held back by a proxy in front of moto (holding_proxy), so
# a caller is cancelled, or the service closed, exactly while that call is in flight.

SEND = "AmazonSQS.SendMessage"
PUT = "DynamoDB_20120810.PutItem"


def unique_queue(aws: Aws) -> str:
    create_scheduler_table("scheduled-jobs", client=aws.dynamodb)
    return aws.create_queue("jobs")


def through(proxy: HoldingProxy, url: str) -> SQSQueueDriver:
    return SQSQueueDriver(
        region=REGION,
        queues={"default": url},
        endpoint_url=proxy.endpoint,
        unique_table="scheduled-jobs",
    )


def job_ids_on(aws: Aws, url: str, expected: int) -> list[str]:
    """The job ids of the messages on ``url``: ``expected`` of them, and no more."""
    messages = aws.drain(url, wait=1, expected=expected)
    messages += aws.drain(url)
    return [json.loads(m["Body"])["jobId"] for m in messages]


async def cancelled_at_once(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and see it end with CancelledError while the proxy still holds the
    call it is in (the test releases it only afterwards)."""
    task.cancel()
    await asyncio.wait({task}, timeout=20)
    assert task.cancelled()


async def loop_turns(turns: int = 100) -> None:
    """Let every other task run as far as it can without I/O (no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


@pytest.mark.parametrize("held", [PUT, SEND])
def test_an_enqueue_cancelled_inside_an_aws_call_settles_as_if_awaited(aws: Aws, held: str) -> None:
    """Cancelled while its unique key is written (PUT) or while SQS answers (SEND): the job
    is sent and holds its key, so the caller's retry is refused naming it: one job."""
    url = unique_queue(aws)

    async def main() -> str | None:
        async with (
            HoldingProxy(aws.endpoint) as proxy,
            AsyncJobService(through(proxy, url)) as jobs,
        ):
            proxy.hold(held)
            first = asyncio.create_task(jobs.enqueue(once, Ping(n=1)))
            await proxy.wait_held(1)
            await cancelled_at_once(first)
            proxy.release()
            with pytest.raises(DuplicateJobError) as refused:
                await jobs.enqueue(once, Ping(n=1))  # the caller's retry
        return refused.value.existing_job_id

    holder = asyncio.run(main())
    assert job_ids_on(aws, url, expected=1) == [holder]


def test_a_retry_waits_for_the_cancelled_enqueue_and_goes_through_when_it_failed(
    aws: Aws, caplog: pytest.LogCaptureFixture
) -> None:
    url = unique_queue(aws)

    async def main() -> str:
        async with (
            HoldingProxy(aws.endpoint) as proxy,
            AsyncJobService(through(proxy, url)) as jobs,
        ):
            proxy.hold(SEND, error="InvalidMessageContents")
            first = asyncio.create_task(jobs.enqueue(once, Ping(n=7)))
            await proxy.wait_held(1)
            await cancelled_at_once(first)
            retry = asyncio.create_task(jobs.enqueue(once, Ping(n=7)))
            await loop_turns()
            assert not retry.done()  # not refused for a key whose job may yet fail
            proxy.release()  # SQS refuses the first: its key is given back
            return (await retry).job_id

    retried = asyncio.run(main())
    assert job_ids_on(aws, url, expected=1) == [retried]
    assert "the enqueue of job 'once', whose caller was cancelled, failed" in caplog.text


def test_aclose_waits_for_the_enqueues_in_flight_and_leaves_nothing_open(aws: Aws) -> None:
    """A FastAPI shutdown: ten enqueues are inside SendMessage when aclose() is called."""
    url = unique_queue(aws)
    problems: list[str] = []

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: problems.append(context["message"]))
        async with HoldingProxy(aws.endpoint) as proxy:
            jobs = AsyncJobService(through(proxy, url))
            proxy.hold(SEND, count=10)
            enqueues = [asyncio.create_task(jobs.enqueue(once, Ping(n=i))) for i in range(10)]
            await proxy.wait_held(10)
            closing = asyncio.create_task(jobs.aclose())
            await loop_turns()
            assert not closing.done()  # it waits for them, not closes under them
            with pytest.raises(EnqueueError, match="closing: job 'once' was not enqueued"):
                await jobs.enqueue(once, Ping(n=99))
            proxy.release()
            await closing
            results = await asyncio.gather(*enqueues, return_exceptions=True)
            # Their keys are held: a second enqueue of each is refused (a new service, as
            # the next process would make; the closed one would open its clients again).
            async with AsyncJobService(through(proxy, url)) as again:
                for i in range(10):
                    with pytest.raises(DuplicateJobError):
                        await again.enqueue(once, Ping(n=i))
        del jobs
        gc.collect()
        await loop_turns(1)
        return results

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = asyncio.run(main())
    assert all(isinstance(r, EnqueueResult) for r in results), results
    assert sorted(job_ids_on(aws, url, expected=10)) == sorted(r.job_id for r in results)
    assert problems == []
    assert not [w for w in caught if "Unclosed" in str(w.message)]


def test_aclose_cancels_what_is_still_in_flight_after_its_timeout(aws: Aws) -> None:
    """An answer that never comes: aclose(timeout) gives up on it. Whether the job reached
    its queue is unknown to the caller (here it did); its key is given back, so a retry is
    not refused for a day."""
    url = unique_queue(aws)

    async def main() -> None:
        async with HoldingProxy(aws.endpoint) as proxy:
            jobs = AsyncJobService(through(proxy, url))
            proxy.hold(SEND)
            stuck = asyncio.create_task(jobs.enqueue(once, Ping(n=1)))
            await proxy.wait_held(1)
            await jobs.aclose(timeout=0.1)
            with pytest.raises(EnqueueError, match="whether the job reached its queue is unknown"):
                await stuck
            async with AsyncJobService(through(proxy, url)) as again:
                await again.enqueue(once, Ping(n=1))

    asyncio.run(main())
    assert len(job_ids_on(aws, url, expected=2)) == 2
