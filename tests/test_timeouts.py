"""The per-job timeout step: define_job(timeout=...) and JobTimeout."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from glasswork import define_module
from glasswork.jobs import (
    ConfigurationError,
    JobMessage,
    JobTimeoutError,
    TransientJobError,
    define_job,
)
from glasswork.jobs.execution import DeadLetter, Done, Executor, Retry
from glasswork.jobs.timeouts import JobTimeout


def run(executor, name, attempt=1, run_sync=None):
    async def main():
        return await executor.execute(JobMessage.create(name, None), attempt, run_sync=run_sync)

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("given", "seconds"), [(5, 5.0), ("1m30s", 90.0), (timedelta(minutes=2), 120.0), (0.5, 0.5)]
)
def test_timeout_accepts_seconds_strings_and_timedeltas(given, seconds):
    assert define_job(name="j", handler=lambda p: None, timeout=given).timeout == seconds


@pytest.mark.parametrize("bad", [0, -1, "soon", float("inf"), float("nan"), [5]])
def test_a_bad_timeout_is_refused_when_the_job_is_defined(bad):
    with pytest.raises(ConfigurationError, match="timeout"):
        define_job(name="j", handler=lambda p: None, timeout=bad)


def test_an_async_job_past_its_timeout_is_cancelled_and_retried_then_dead_lettered():
    cancelled = []

    async def hangs(payload, ctx):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(ctx.attempt)
            raise

    job = define_job(name="hang", handler=hangs, timeout=0.1, retry={"max_attempts": 2})
    executor = Executor.for_module(define_module("m", jobs=[job]), steps=[JobTimeout()])
    started = time.monotonic()
    first = run(executor, "hang", 1)
    assert time.monotonic() - started < 2
    assert isinstance(first, Retry) and isinstance(first.error, JobTimeoutError)
    assert isinstance(first.error, TransientJobError)
    second = run(executor, "hang", 2)
    assert isinstance(second, DeadLetter) and "0.1s timeout" in second.reason
    assert cancelled == [1, 2]


def test_the_default_applies_to_jobs_without_their_own_and_the_job_wins():
    async def slow(payload, ctx):
        await asyncio.sleep(0.3)

    module = define_module(
        "m",
        jobs=[
            define_job(name="default", handler=slow),
            define_job(name="own", handler=slow, timeout=5),
        ],
    )
    executor = Executor.for_module(module, steps=[JobTimeout(default=0.05)])
    assert isinstance(run(executor, "default"), Retry)
    assert isinstance(run(executor, "own"), Done)


def test_a_sync_job_in_a_thread_frees_the_caller_at_its_timeout():
    release = threading.Event()
    finished = []

    def blocks(payload, ctx):
        release.wait(5)
        finished.append(True)

    job = define_job(name="block", handler=blocks, timeout=0.1)
    executor = Executor.for_module(define_module("m", jobs=[job]), steps=[JobTimeout()])
    pool = ThreadPoolExecutor(1)

    async def run_sync(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    started = time.monotonic()
    outcome = run(executor, "block", run_sync=run_sync)
    assert time.monotonic() - started < 2
    assert isinstance(outcome, Retry) and isinstance(outcome.error, JobTimeoutError)
    release.set()
    pool.shutdown(wait=True)
    assert finished == [True]  # the thread ran on; its late result changed nothing


def test_a_handlers_own_timeout_error_is_an_ordinary_failure():
    async def raises(payload, ctx):
        raise TimeoutError("upstream timed out")

    job = define_job(name="t", handler=raises, timeout=10)
    executor = Executor.for_module(define_module("m", jobs=[job]), steps=[JobTimeout()])
    outcome = run(executor, "t")
    assert isinstance(outcome, Retry) and not isinstance(outcome.error, JobTimeoutError)
