"""Async enqueue: 1,000 enqueues from 100 concurrent coroutines against a moto server.

Contenders, run interleaved in one process, each on a fresh queue per repetition:

* ``AsyncJobService`` on ``SQSQueueDriver`` with aiobotocore (native async I/O);
* ``AsyncJobService`` on the same driver without aiobotocore (the bounded thread pool,
  8 threads: what an install without ``glasswork[async]`` gets);
* the sync ``JobService`` called from the same coroutines (each call blocks the loop).

Reported: wall time for the 1,000 (and enqueues/s), and the longest stall of the event loop
while they run (a ticker coroutine sleeping 1 ms records the largest gap between its ticks):
what every other request of a web app would wait. moto is a Python server on the same cores,
so absolute numbers are moto's; the ratios are the point.

Run: ``python bench/async_enqueue.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _common import Row, best_and_median, emit, parser, row, skipped
from sqs_requests import run_on_moto
from workload import PAYLOAD, Payload, noop

BENCH = "async enqueue"
REGION = "us-east-1"
COROUTINES = 100


def missing_pieces() -> str | None:
    import importlib.util

    for module in ("glasswork.jobs.drivers.sqs", "boto3", "moto.server", "aiobotocore"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"not available: {module} cannot be imported (pip install -e '.[dev]')"
    return None


async def timed(work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Seconds ``work`` takes, and the longest gap (seconds) between ticks of a 1 ms ticker."""
    done = False
    longest = 0.0

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    await work()
    took = time.perf_counter() - start
    done = True
    await task
    return took, longest


def measure(endpoint: str, n: int, repeats: int) -> list[Row]:
    import boto3

    from glasswork.jobs import AsyncJobService, JobService, SQSQueueDriver, define_job

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "testing")
    client = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    job = define_job(name="bench-noop", handler=noop, schema=Payload)
    payload = Payload.model_validate(PAYLOAD)
    per_coroutine = n // COROUTINES

    class ThreadedSQS(SQSQueueDriver):
        def async_enqueuer(self) -> Any:
            return None  # as without aiobotocore: AsyncJobService uses its thread pool

    def fresh(name: str, cls: type[SQSQueueDriver] = SQSQueueDriver) -> tuple[Any, str]:
        url = client.create_queue(QueueName=name)["QueueUrl"]
        return cls(region=REGION, queues={"default": url}, endpoint_url=endpoint), url

    async def run_async(name: str, cls: type[SQSQueueDriver]) -> tuple[float, float, str]:
        driver, url = fresh(name, cls)
        async with AsyncJobService(driver) as jobs:
            await jobs.enqueue(job, payload)  # clients made, queue limit read: not timed

            async def one_coroutine() -> None:
                for _ in range(per_coroutine):
                    await jobs.enqueue(job, payload)

            async def work() -> None:
                await asyncio.gather(*(one_coroutine() for _ in range(COROUTINES)))

            took, stall = await timed(work)
        return took, stall, url

    async def run_sync(name: str) -> tuple[float, float, str]:
        driver, url = fresh(name)
        jobs = JobService(driver)
        jobs.enqueue(job, payload)

        async def one_coroutine() -> None:
            for _ in range(per_coroutine):
                jobs.enqueue(job, payload)  # blocks the loop for the request
                await asyncio.sleep(0)

        async def work() -> None:
            await asyncio.gather(*(one_coroutine() for _ in range(COROUTINES)))

        took, stall = await timed(work)
        return took, stall, url

    contenders: dict[str, Callable[[str], Awaitable[tuple[float, float, str]]]] = {
        "AsyncJobService, aiobotocore": lambda q: run_async(q, SQSQueueDriver),
        "AsyncJobService, thread pool": lambda q: run_async(q, ThreadedSQS),
        "JobService (sync) in coroutines": run_sync,
    }
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in contenders}
    for rep in range(repeats):
        for index, (label, run) in enumerate(contenders.items()):
            took, stall, url = asyncio.run(run(f"bench-async-{rep}-{index}"))
            count = client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
            if int(count) != n + 1:
                raise RuntimeError(f"{label}: the queue holds {count}, expected {n + 1}")
            client.delete_queue(QueueUrl=url)
            samples[label].append((took, stall))

    rows: list[Row] = []
    sync_best = min(t for t, _ in samples["JobService (sync) in coroutines"])
    notes = f"{n:,} enqueues from {COROUTINES} coroutines, moto server on loopback"
    for label, results in samples.items():
        best, median = best_and_median([t for t, _ in results], higher_is_better=False)
        ratio = f"; {sync_best / best:.2f}x the sync service's speed" if "sync" not in label else ""
        rows.append(
            row(
                BENCH,
                label,
                f"seconds for {n:,}",
                best,
                "s",
                median=median,
                runs=repeats,
                notes=notes + ratio,
            )
        )
        rows.append(
            row(
                BENCH,
                label,
                "enqueues/s",
                n / best,
                "jobs/s",
                median=n / median,
                runs=repeats,
                notes=notes,
            )
        )
        stall_best, stall_median = best_and_median(
            [s * 1000 for _, s in results], higher_is_better=False
        )
        rows.append(
            row(
                BENCH,
                label,
                "longest loop stall",
                stall_best,
                "ms",
                median=stall_median,
                runs=repeats,
                notes="largest gap between ticks of a 1 ms ticker during the run",
            )
        )
    return rows


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="enqueues per run (default 1,000)")
    args = p.parse_args(argv)
    why = missing_pieces()
    if why:
        emit([skipped(BENCH, "AsyncJobService", why, status="missing")], args.json)
        return 0
    repeats = 1 if args.quick else 3
    return run_on_moto(
        BENCH, "AsyncJobService", args.json, lambda endpoint: measure(endpoint, args.n, repeats)
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
