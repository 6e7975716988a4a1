"""Executor.execute: the async path long-running workers use, with sync handlers offloaded."""

import asyncio
import datetime
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pydantic
import pytest

from glasswork import define_module
from glasswork.jobs import (
    ConfigurationError,
    JobMessage,
    PermanentJobError,
    RetryPolicy,
    TransientJobError,
    define_job,
)
from glasswork.jobs.errors import JobCancelledError
from glasswork.jobs.execution import (
    HOOK_NAMES,
    Cancelled,
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


# -- results, cancellation and retry rules: the same on both paths ------------------------
#
# ``fast``: execute_sync of an encoded body with no steps, the Lambda worker's hot path
# (execute_prepared_sync, no coroutine); ``full``: Executor.execute on a running loop, the
# long-running worker's (_run). Every rule below must hold on both.


def run_on(path, executor, message, attempt=1):
    if path == "fast":
        ctx = executor.prepare(message.encode(), attempt)
        chain = executor._execute_with
        executor._execute_with = None  # the fast path never builds a coroutine
        try:
            return executor.execute_prepared_sync(ctx)
        finally:
            executor._execute_with = chain
    return asyncio.run(executor.execute(message, attempt))


def msg(name):
    return JobMessage.create(name, {"n": 1})  # a payload: the fast path reads it in one go


PATHS = pytest.mark.parametrize("path", ["fast", "full"])


class Total(pydantic.BaseModel):
    total: int
    when: datetime.date


@PATHS
def test_done_carries_the_handlers_return_value_as_json(path):
    executor = executor_for(
        define_job(name="model", handler=lambda: Total(total=3, when=datetime.date(2026, 1, 2))),
        define_job(name="plain", handler=lambda: {"rows": [1, 2], "ok": True}),
        define_job(name="none", handler=lambda: None),
    )
    model = run_on(path, executor, msg("model"))
    assert isinstance(model, Done)
    assert model.result == {"total": 3, "when": "2026-01-02"} and model.result_error is None
    plain = run_on(path, executor, msg("plain"))
    assert plain.result == {"rows": [1, 2], "ok": True}
    assert run_on(path, executor, msg("none")).result is None


def test_an_async_handlers_return_value_is_its_result():
    async def handler():
        await asyncio.sleep(0)
        return [1, "two"]

    executor = executor_for(define_job(name="a", handler=handler))
    assert executor.execute_sync(JobMessage.create("a", None).encode()).result == [1, "two"]
    assert asyncio.run(executor.execute(JobMessage.create("a", None))).result == [1, "two"]


@PATHS
@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), {"when": datetime.date.today()}])
def test_a_result_json_cannot_write_leaves_the_job_done_with_a_note_and_one_warning(
    path, value, caplog
):
    executor = executor_for(define_job(name="odd", handler=lambda: value))
    outcome = run_on(path, executor, msg("odd"))
    assert isinstance(outcome, Done) and outcome.value is value
    with caplog.at_level(logging.WARNING, logger="glasswork.jobs"):
        assert outcome.result is None
        assert "could not be stored" in outcome.result_error
        assert outcome.result is None  # read again: no second warning
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "done, but its result could not be stored" in caplog.records[0].getMessage()


@PATHS
def test_a_job_cancelled_error_ends_the_job_cancelled_without_failed_hooks(path):
    calls = []

    def handler(payload, ctx):
        raise JobCancelledError("user pressed stop")

    executor = executor_for(
        define_job(name="stop", handler=handler, retry={"max_attempts": 5}),
        hooks={
            "on_job_failed": lambda job, ctx, err: calls.append("failed"),
            "on_job_dead_letter": lambda job, ctx, err: calls.append("dead"),
            "on_job_cancelled": lambda job, ctx, err: calls.append(("cancelled", str(err))),
        },
    )
    outcome = run_on(path, executor, msg("stop"))
    assert isinstance(outcome, Cancelled) and outcome.kind == "cancelled"
    assert outcome.reason == "user pressed stop"
    assert isinstance(outcome.error, JobCancelledError)
    assert calls == [("cancelled", "user pressed stop")]


@PATHS
def test_a_sync_handler_stops_at_raise_if_cancelled_once_asked(path):
    seen = []

    def handler(payload, ctx):
        seen.append(ctx.cancelled)
        ctx.request_cancel()  # what the worker does when the driver says so
        seen.append(ctx.cancelled)
        ctx.raise_if_cancelled()
        seen.append("not reached")

    executor = executor_for(define_job(name="loop", handler=handler))
    outcome = run_on(path, executor, msg("loop"))
    assert isinstance(outcome, Cancelled) and outcome.reason == "cancelled while running"
    assert seen == [False, True]


@PATHS
def test_any_failure_of_a_job_asked_to_stop_ends_it_cancelled_not_retried(path):
    def handler(payload, ctx):
        ctx.request_cancel("stop it")
        raise ValueError("interrupted half way")

    executor = executor_for(define_job(name="j", handler=handler))
    outcome = run_on(path, executor, msg("j"))
    assert isinstance(outcome, Cancelled) and outcome.reason == "stop it"
    assert isinstance(outcome.error.__cause__, ValueError)


def test_an_async_handlers_task_cancelled_after_a_cancel_request_ends_cancelled():
    calls = []
    started = {}

    async def handler(payload, ctx):
        started["event"].set()
        await asyncio.sleep(60)

    executor = executor_for(
        define_job(name="slow", handler=handler),
        hooks={
            "on_job_failed": lambda job, ctx, err: calls.append("failed"),
            "on_job_cancelled": lambda job, ctx, err: calls.append("cancelled"),
        },
    )

    async def main():
        started["event"] = asyncio.Event()
        ctx = executor.prepare(JobMessage.create("slow", None))
        task = asyncio.ensure_future(executor.execute_prepared(ctx))
        await started["event"].wait()
        ctx.request_cancel()
        task.cancel()
        outcome = await task
        return outcome, task.cancelling()

    outcome, cancelling = asyncio.run(main())
    assert isinstance(outcome, Cancelled)
    assert cancelling == 0  # the cancellation was the job's end, taken back
    assert calls == ["cancelled"]


def test_a_task_cancelled_without_a_cancel_request_still_passes_through():
    started = {}

    async def handler(payload, ctx):
        started["event"].set()
        await asyncio.sleep(60)

    executor = executor_for(define_job(name="slow", handler=handler))

    async def main():
        started["event"] = asyncio.Event()
        task = asyncio.ensure_future(executor.execute(JobMessage.create("slow", None)))
        await started["event"].wait()
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


@PATHS
def test_dead_letter_on_dead_letters_at_once_and_retry_on_retries(path):
    def fail_with(error):
        def handler():
            raise error

        return handler

    rules = {"max_attempts": 5, "retry_on": (TimeoutError,), "dead_letter_on": (ValueError,)}
    executor = executor_for(
        define_job(name="value", handler=fail_with(ValueError("bad")), retry=rules),
        define_job(name="timeout", handler=fail_with(TimeoutError("slow")), retry=rules),
        define_job(name="other", handler=fail_with(KeyError("k")), retry=rules),
        define_job(name="transient", handler=fail_with(TransientJobError("t")), retry=rules),
    )
    dead = run_on(path, executor, msg("value"))
    assert isinstance(dead, DeadLetter) and dead.reason == "ValueError: bad"
    assert isinstance(run_on(path, executor, msg("timeout")), Retry)
    out_of_attempts = run_on(path, executor, msg("timeout"), attempt=5)
    assert isinstance(out_of_attempts, DeadLetter)
    assert isinstance(run_on(path, executor, msg("other")), Retry)
    assert isinstance(run_on(path, executor, msg("transient")), Retry)


@PATHS
def test_transient_and_permanent_job_errors_win_over_the_lists(path):
    class Flaky(TransientJobError, ValueError):
        pass

    class Broken(PermanentJobError, TimeoutError):
        pass

    def raising(error):
        def handler():
            raise error

        return handler

    rules = {"retry_on": (TimeoutError,), "dead_letter_on": (ValueError,)}
    executor = executor_for(
        define_job(name="flaky", handler=raising(Flaky("x")), retry=rules),
        define_job(name="broken", handler=raising(Broken("y")), retry=rules),
    )
    assert isinstance(run_on(path, executor, msg("flaky")), Retry)
    assert isinstance(run_on(path, executor, msg("broken")), DeadLetter)


def test_when_both_lists_match_the_nearer_class_wins():
    retry_all_but_value = RetryPolicy(retry_on=(Exception,), dead_letter_on=(ValueError,))
    assert retry_all_but_value.dead_letters(ValueError())
    assert retry_all_but_value.dead_letters(UnicodeDecodeError("utf-8", b"", 0, 1, "x"))
    assert not retry_all_but_value.dead_letters(KeyError())
    only_lookups_retried = RetryPolicy(retry_on=LookupError, dead_letter_on=Exception)
    assert not only_lookups_retried.dead_letters(KeyError())
    assert only_lookups_retried.dead_letters(RuntimeError())
    tie = RetryPolicy(retry_on=(ValueError,), dead_letter_on=(ValueError,))
    assert tie.dead_letters(ValueError())


@pytest.mark.parametrize(
    ("option", "shown"),
    [
        ({"retry_on": "ValueError"}, "retry_on"),
        ({"dead_letter_on": (ValueError, 3)}, "dead_letter_on"),
        ({"dead_letter_on": ValueError()}, "dead_letter_on"),
        ({"retry_on": (int,)}, "retry_on"),
    ],
)
def test_retry_lists_must_be_exception_classes_when_the_job_is_defined(option, shown):
    with pytest.raises(ConfigurationError, match=f"retry {shown} must be an exception class"):
        define_job(name="j", handler=lambda: None, retry=option)


def test_retry_lists_take_a_class_a_tuple_or_a_list():
    job = define_job(
        name="j", handler=lambda: None, retry={"retry_on": OSError, "dead_letter_on": [KeyError]}
    )
    assert job.retry is not None
    assert job.retry.retry_on == (OSError,) and job.retry.dead_letter_on == (KeyError,)


def test_on_job_cancelled_is_a_hook_name_like_the_others():
    assert "on_job_cancelled" in HOOK_NAMES
    hooks = JobHooks.from_option({"on_job_cancelled": print})
    assert hooks.on_job_cancelled is print and hooks.names() == ["on_job_cancelled"]
