"""Executor.execute: the async path long-running workers use, with sync handlers offloaded."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from glasswork import Services, define_module
from glasswork.jobs import (
    DeadLetter,
    Discard,
    Done,
    Executor,
    JobHooks,
    JobMessage,
    JobRegistry,
    Retry,
    TransientJobError,
    define_job,
)


def executor_for(*jobs, hooks=None):
    module = define_module(name="m", jobs=list(jobs))
    return Executor(
        JobRegistry.for_module(module), Services.for_module(module), JobHooks.from_option(hooks)
    )


def test_sync_handlers_run_through_run_sync_off_the_loop():
    threads = []
    job = define_job(name="sync", handler=lambda p, c: threads.append(threading.get_ident()))
    executor = executor_for(job)
    pool = ThreadPoolExecutor(2)

    async def main():
        loop = asyncio.get_running_loop()

        async def run_sync(fn, *args):
            return await loop.run_in_executor(pool, fn, *args)

        return await executor.execute(
            JobMessage.create("sync", None).encode(), 1, run_sync=run_sync
        )

    outcome = asyncio.run(main())
    assert isinstance(outcome, Done)
    assert threads and threads[0] != threading.get_ident()


def test_async_handlers_run_on_the_callers_loop():
    loops = []

    async def handler(payload, ctx):
        loops.append(asyncio.get_running_loop())

    executor = executor_for(define_job(name="a", handler=handler))

    async def main():
        outcome = await executor.execute(JobMessage.create("a", None), 1)
        return outcome, asyncio.get_running_loop()

    outcome, loop = asyncio.run(main())
    assert isinstance(outcome, Done)
    assert loops == [loop]


def test_outcomes_carry_delay_reason_and_message():
    def fail(payload, ctx):
        raise TransientJobError("later", retry_after=7)

    executor = executor_for(
        define_job(name="retry", handler=fail, retry={"max_attempts": 2}),
        define_job(name="discard", handler=fail, retry=False),
    )
    retry = executor.execute_sync(JobMessage.create("retry", None), 1)
    assert isinstance(retry, Retry) and retry.delay == 7 and retry.message.job_name == "retry"
    dead = executor.execute_sync(JobMessage.create("retry", None), 2)
    assert isinstance(dead, DeadLetter)
    assert dead.reason == "failed 2 of 2 attempts: TransientJobError: later"
    discard = executor.execute_sync(JobMessage.create("discard", None), 1)
    assert isinstance(discard, Discard) and discard.kind == "discarded"


def test_backoff_from_policy_when_no_retry_after():
    def fail(payload, ctx):
        raise RuntimeError("x")

    job = define_job(
        name="b", handler=fail, retry={"max_attempts": 5, "backoff": 4, "jitter": False}
    )
    executor = executor_for(job)
    delays = [executor.execute_sync(JobMessage.create("b", None), n).delay for n in (1, 2, 3)]
    assert delays == [4, 8, 16]


def test_malformed_body_outcome_has_no_message():
    outcome = executor_for().execute_sync(b"\xff\xfe", 1)
    assert isinstance(outcome, DeadLetter) and outcome.message is None


def test_keyboard_interrupt_is_not_swallowed():
    def stop(payload, ctx):
        raise KeyboardInterrupt

    executor = executor_for(define_job(name="k", handler=stop))
    try:
        executor.execute_sync(JobMessage.create("k", None), 1)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("KeyboardInterrupt was swallowed")
