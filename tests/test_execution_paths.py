"""The Executor's fast path holds to its reference path.

``Executor.execute`` on an event loop runs every delivery through ``Executor._run`` (the
reference). ``Executor.execute_prepared_sync`` (what the Lambda worker calls per record) has
an inline copy of it for sync handlers, and ``execute_sync`` picks between them. Each
scenario here runs through all three, on the same body and attempt, and must give the same
outcome (kind, delay, reason, error), call the same hooks in the same order, and log the
same lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import JobMessage, PermanentJobError, TransientJobError, define_job
from glasswork.jobs.errors import JobTimeoutError
from glasswork.jobs.execution import (
    HOOK_NAMES,
    DeadLetter,
    Discard,
    Done,
    Executor,
    JobHooks,
    JobRegistry,
    Outcome,
    Retry,
)
from glasswork.jobs.steps import worker_steps
from glasswork.services import Services

NO_JITTER = {"max_attempts": 3, "backoff": 2.0, "jitter": False}


class Order(BaseModel):
    order_id: str
    quantity: int


def succeed(payload: Any, ctx: Any) -> None:
    return None


def give_back(payload: Any, ctx: Any) -> int:
    return 42


def transient_with_delay(payload: Any, ctx: Any) -> None:
    raise TransientJobError("the API is down", retry_after=7)


def transient(payload: Any, ctx: Any) -> None:
    raise TransientJobError("the API is down")


def permanent(payload: Any, ctx: Any) -> None:
    raise PermanentJobError("no such customer")


def plain(payload: Any, ctx: Any) -> None:
    raise ValueError("boom")


def system_exit(payload: Any, ctx: Any) -> None:
    raise SystemExit(3)


def cancelled_by_itself(payload: Any, ctx: Any) -> None:
    raise asyncio.CancelledError("gave up")


async def failing_later() -> None:
    raise ValueError("late boom")


def returns_a_coroutine(payload: Any, ctx: Any) -> Any:
    return failing_later()


async def async_succeed(payload: Any, ctx: Any) -> None:
    await asyncio.sleep(0)


async def async_plain(payload: Any, ctx: Any) -> None:
    await asyncio.sleep(0)
    raise ValueError("async boom")


async def over_its_timeout(payload: Any, ctx: Any) -> None:
    await asyncio.sleep(0.5)


@dataclass
class Scenario:
    handler: Callable[..., Any]
    attempt: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    #: The body: None for a valid envelope of job "job"; else the wire text.
    body: str | None = None
    expected: type[Outcome] = Done


def envelope(job_name: str, payload: Any, **extra: Any) -> str:
    fields = json.loads(JobMessage.create(job_name, payload, job_id="job-1").encode())
    fields.update(extra)
    return json.dumps(fields)


SCENARIOS = {
    "success": Scenario(succeed),
    "success with a result": Scenario(give_back),
    "transient error with retry_after": Scenario(transient_with_delay, expected=Retry),
    "transient error, the policy's delay": Scenario(transient, attempt=2, expected=Retry),
    "permanent error": Scenario(permanent, expected=DeadLetter),
    "plain exception, first attempt": Scenario(plain, expected=Retry),
    "plain exception, last attempt": Scenario(plain, attempt=3, expected=DeadLetter),
    "plain exception, retry=False": Scenario(plain, options={"retry": False}, expected=Discard),
    "SystemExit from the handler": Scenario(system_exit, expected=Retry),
    "CancelledError the handler raised": Scenario(cancelled_by_itself, expected=Retry),
    "a sync handler returning a failing coroutine": Scenario(returns_a_coroutine, expected=Retry),
    "async handler": Scenario(async_succeed),
    "async handler failing": Scenario(async_plain, expected=Retry),
    "async handler over its timeout": Scenario(
        over_its_timeout, options={"timeout": 0.05}, expected=Retry
    ),
    "invalid payload": Scenario(
        succeed,
        options={"schema": Order},
        body=envelope("job", {"order_id": "o-1", "quantity": "many"}),
        expected=DeadLetter,
    ),
    "unknown job": Scenario(succeed, body=envelope("nobody", {}), expected=DeadLetter),
    "malformed body": Scenario(succeed, body="{not json", expected=DeadLetter),
    "another envelope version": Scenario(
        succeed, body=envelope("job", {}, version=99), expected=DeadLetter
    ),
}

RAISING = (None, *HOOK_NAMES)


@dataclass
class Observed:
    outcome: tuple[Any, ...]
    hooks: list[tuple[str, str, str | None]]
    logs: list[tuple[str, str, bool]]


def describe(outcome: Outcome) -> tuple[Any, ...]:
    message = outcome.message
    error = getattr(outcome, "error", None)  # a Done has none
    return (
        type(outcome).__name__,
        outcome.delay if isinstance(outcome, Retry) else None,
        getattr(outcome, "reason", None),
        type(error).__name__ if error is not None else None,
        str(error) if error is not None else None,
        None if message is None else (message.job_name, message.job_id),
    )


def reference(executor: Executor, body: str, attempt: int) -> Outcome:
    """Executor._run, on an event loop."""
    return asyncio.run(executor.execute(body, attempt))


def fast(executor: Executor, body: str, attempt: int) -> Outcome:
    """What the Lambda worker's batch loop does per record."""
    ctx = executor.prepare(body, attempt)
    if isinstance(ctx, Outcome):
        return ctx
    return executor.execute_prepared_sync(ctx)


def without_a_loop(executor: Executor, body: str, attempt: int) -> Outcome:
    return executor.execute_sync(body, attempt)


@dataclass
class Delivery:
    body: str
    attempt: int
    attributes: dict[str, Any] = field(default_factory=dict)


def batch(executor: Executor, body: str, attempt: int) -> Outcome:
    """What the Lambda batch loop does per record when it keeps only failures: the record
    read by prepare_all, run without its Done (kept or not, a Done it must be)."""
    [ctx] = executor.prepare_all([Delivery(body, attempt)])
    if isinstance(ctx, Outcome):
        return ctx
    outcome = executor.execute_prepared_sync(ctx, None, None, False)
    if type(outcome) is Done:
        # The shared, empty Done (nothing of the run kept); or, when run steps wrap the run
        # (tracing switched on by an earlier test, say), the run's own.
        assert outcome.value is None or outcome.message is not None
        return Done.of_context(ctx)
    return outcome


PATHS = {"execute_prepared_sync": fast, "execute_sync": without_a_loop, "batch": batch}


def observe(
    path: Callable[[Executor, str, int], Outcome],
    scenario: Scenario,
    raising: str | None,
    caplog: pytest.LogCaptureFixture,
) -> Observed:
    calls: list[tuple[str, str, str | None]] = []

    def hook(name: str) -> Callable[..., None]:
        def record(job: JobMessage, ctx: Any, *error: BaseException) -> None:
            calls.append((name, job.job_name, type(error[0]).__name__ if error else None))
            if name == raising:
                raise RuntimeError(f"{name} broke")

        return record

    options = {"retry": NO_JITTER, **scenario.options}
    job = define_job(name="job", handler=scenario.handler, **options)
    module = define_module(name="paths", jobs=[job])
    registry = JobRegistry.for_module(module)
    executor = Executor(
        registry,
        Services.for_module(module),
        JobHooks.from_option({name: hook(name) for name in HOOK_NAMES}),
        steps=worker_steps(registry, None),
    )
    body = scenario.body if scenario.body is not None else envelope("job", {})
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="glasswork.jobs"):
        outcome = path(executor, body, scenario.attempt)
    logs = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    return Observed(describe(outcome), calls, logs)


@pytest.mark.parametrize("raising", RAISING, ids=lambda r: f"{r} raises" if r else "hooks ok")
@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("path", list(PATHS))
def test_the_fast_paths_give_what_the_reference_path_gives(
    path: str, name: str, raising: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = SCENARIOS[name]
    expected = observe(reference, scenario, raising, caplog)
    got = observe(PATHS[path], scenario, raising, caplog)

    assert expected.outcome[0] == scenario.expected.__name__  # the reference is right
    assert got.outcome == expected.outcome
    assert got.hooks == expected.hooks
    assert got.logs == expected.logs


def test_the_scenarios_reach_the_inline_path_and_the_hooks() -> None:
    """The comparison above is worth something only if the inline copy runs: a stepless
    sync job with a validated payload takes it, and every hook is called somewhere."""
    job = define_job(name="job", handler=succeed, retry=NO_JITTER)
    module = define_module(name="paths", jobs=[job])
    executor = Executor(JobRegistry.for_module(module), Services.for_module(module))
    ctx = executor.prepare(envelope("job", {}), 1)
    assert not isinstance(ctx, Outcome)
    assert executor.current_steps() == ()
    assert ctx.definition is job and not job.is_async
    assert ctx._fields["payload"] == {}  # validated in one pass: not UNVALIDATED


def test_an_async_job_over_its_timeout_is_cut_on_every_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scenario = SCENARIOS["async handler over its timeout"]
    for path in (reference, *PATHS.values()):
        started = time.monotonic()
        observed = observe(path, scenario, None, caplog)
        assert observed.outcome[0] == "Retry"
        assert observed.outcome[3] == JobTimeoutError.__name__
        assert time.monotonic() - started < 0.45, path.__name__


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_prepare_all_reads_each_delivery_as_prepare_does(name: str) -> None:
    scenario = SCENARIOS[name]
    job = define_job(
        name="job", handler=scenario.handler, **{"retry": NO_JITTER, **scenario.options}
    )
    module = define_module(name="paths", jobs=[job])
    executor = Executor(JobRegistry.for_module(module), Services.for_module(module))
    body = scenario.body or envelope("job", {})
    attributes = {"MessageGroupId": "g"}
    one = executor.prepare(body, scenario.attempt, "lambda-context", attributes)
    [got, other] = executor.prepare_all(
        [Delivery(body, scenario.attempt, attributes), Delivery(envelope("job", {}), 2)],
        "lambda-context",
    )
    assert type(got) is type(one)
    if isinstance(one, Outcome):
        assert describe(got) == describe(one)  # type: ignore[arg-type]
        return
    assert isinstance(got, type(one))
    for name_ in ("attempt", "max_attempts", "lambda_context", "attributes", "definition"):
        assert getattr(got, name_) == getattr(one, name_), name_
    assert got._fields == one._fields and got.job == one.job
    assert not isinstance(other, Outcome) and other.attempt == 2 and other.attributes == {}
