"""Executor.execute: the async path long-running workers use, with sync handlers offloaded."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from glasswork import define_module
from glasswork.jobs import JobMessage, TransientJobError, define_job
from glasswork.jobs.execution import (
    DeadLetter,
    Discard,
    Done,
    Executor,
    JobHooks,
    JobRegistry,
    Retry,
)
from glasswork.services import Services


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


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt(), SystemExit(3), GeneratorExit(), asyncio.CancelledError()]
)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_base_exceptions_from_a_handler_are_that_jobs_transient_failure(kind, error):
    def sync_handler(payload, ctx):
        raise error

    async def async_handler(payload, ctx):
        raise error

    failed = []
    executor = executor_for(
        define_job(
            name="k",
            handler=sync_handler if kind == "sync" else async_handler,
            retry={"max_attempts": 2},
        ),
        hooks={"on_job_failed": lambda job, ctx, err: failed.append(err)},
    )
    retry = executor.execute_sync(JobMessage.create("k", None), 1)
    assert isinstance(retry, Retry) and retry.error is error
    assert failed == [error]
    dead = executor.execute_sync(JobMessage.create("k", None), 2)
    assert isinstance(dead, DeadLetter) and type(error).__name__ in dead.reason

    async def on_a_loop():
        return await executor.execute(JobMessage.create("k", None), 1)

    assert isinstance(asyncio.run(on_a_loop()), Retry)


def test_private_loop_survives_a_handler_raising_system_exit():
    async def exits(payload, ctx):
        raise SystemExit(1)

    ran = []

    async def fine(payload, ctx):
        ran.append(True)

    executor = executor_for(
        define_job(name="x", handler=exits), define_job(name="ok", handler=fine)
    )
    assert isinstance(executor.execute_sync(JobMessage.create("x", None)), Retry)
    assert isinstance(executor.execute_sync(JobMessage.create("ok", None)), Done)
    assert ran == [True]


def test_cancelling_the_callers_task_is_not_swallowed():
    started = asyncio.Event()

    async def hangs(payload, ctx):
        started.set()
        await asyncio.sleep(30)

    executor = executor_for(define_job(name="h", handler=hangs))

    async def main():
        task = asyncio.create_task(executor.execute(JobMessage.create("h", None)))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_steps_wrap_every_run_outermost_first_and_see_the_outcome():
    seen = []

    def step(name):
        async def around(run, call_next):
            seen.append(f"{name} before {run.message.job_name} attempt {run.attempt}")
            outcome = await call_next()
            seen.append(f"{name} after {outcome.kind}")
            return outcome

        return around

    module = define_module(name="m", jobs=[define_job(name="j", handler=lambda p: None)])
    executor = Executor.for_module(module, steps=[step("outer"), step("inner")])
    assert isinstance(executor.execute_sync(JobMessage.create("j", None), 2), Done)
    assert seen == [
        "outer before j attempt 2",
        "inner before j attempt 2",
        "inner after done",
        "outer after done",
    ]


def test_a_step_can_answer_without_running_the_handler_or_fail_the_run():
    ran = []
    job = define_job(name="j", handler=lambda p: ran.append(p), retry={"max_attempts": 3})

    async def skip(run, call_next):
        return Done(run.message)

    async def refuse(run, call_next):
        return await run.fail(TransientJobError("not now"))

    module = define_module(name="m", jobs=[job])
    assert isinstance(
        Executor.for_module(module, steps=[skip]).execute_sync(JobMessage.create("j", 1)), Done
    )
    assert ran == []
    outcome = Executor.for_module(module, steps=[refuse]).execute_sync(JobMessage.create("j", 1))
    assert isinstance(outcome, Retry) and str(outcome.error) == "not now"
    unknown = Executor.for_module(module, steps=[refuse]).execute_sync(JobMessage.create("nope", 1))
    assert isinstance(unknown, DeadLetter)


@pytest.mark.parametrize("given", ["body", "message"])
def test_a_step_reads_the_job_name_and_queue_of_a_run(given):
    seen = []

    async def step(run, call_next):
        seen.append((run.job_name, run.queue, run.attempt))
        outcome = await call_next()
        seen.append(outcome.message.job_id == run.message.job_id)
        return outcome

    module = define_module(name="m", jobs=[define_job(name="a", handler=lambda p, c: None)])
    executor = Executor.for_module(module, steps=[step])
    message = JobMessage.create("a", None, queue="emails")
    outcome = executor.execute_sync(message.encode() if given == "body" else message, 2)
    assert isinstance(outcome, Done)
    assert seen == [("a", "emails", 2), True]


def test_idle_steps_are_left_out_of_runs_until_they_become_active():
    calls = []

    class Switchable:
        active = False

        def is_active(self):
            return self.active

        async def __call__(self, run, call_next):
            calls.append("switchable")
            return await call_next()

    async def always(run, call_next):
        calls.append("always")
        return await call_next()

    switchable = Switchable()
    job = define_job(name="j", handler=lambda p: calls.append("handler"))
    module = define_module(name="m", jobs=[job])
    idle_only = Executor.for_module(module, steps=[switchable])
    mixed = Executor.for_module(module, steps=[switchable, always])
    for executor in (idle_only, mixed):
        assert isinstance(executor.execute_sync(JobMessage.create("j", None)), Done)
        assert isinstance(asyncio.run(executor.execute(JobMessage.create("j", None))), Done)
    assert calls == ["handler", "handler", "always", "handler", "always", "handler"]
    calls.clear()
    switchable.active = True
    assert isinstance(mixed.execute_sync(JobMessage.create("j", None)), Done)
    assert calls == ["switchable", "always", "handler"]
