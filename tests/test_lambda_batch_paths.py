"""The Lambda worker's two batch loops answer alike.

A batch of sync jobs runs in order on the handler's thread (the hot path); a handler called
on a running event loop, or with ``sync_concurrency`` above 1, runs the same batch on an
event loop instead. Each scenario here goes through all three and must leave the same
partial batch response (or raise the same :class:`BatchRetryError` for the same records)
and the same dead letters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    BatchRetryError,
    JobMessage,
    MockQueueDriver,
    PermanentJobError,
    TransientJobError,
    bootstrap_worker,
    define_job,
)
from glasswork.jobs.testing import FakeLambdaContext, sqs_record


class Item(BaseModel):
    n: int
    do: str = "ok"


def work(payload: Item, ctx: Any) -> None:
    if payload.do == "retry":
        raise TransientJobError(f"{payload.n} later")
    if payload.do == "permanent":
        raise PermanentJobError(f"{payload.n} never")
    if payload.do == "crash":
        raise ValueError(f"{payload.n} crashed")


JOB = define_job(name="work", schema=Item, handler=work, retry={"max_attempts": 3})


def rec(n: int, do: str = "ok", *, queue: str = "jobs", **options: Any) -> dict[str, Any]:
    body = JobMessage.create("work", {"n": n, "do": do})
    return sqs_record(body, message_id=f"m-{n}", queue=queue, **options)


def raw(n: int, body: Any) -> dict[str, Any]:
    record = sqs_record("{}", message_id=f"m-{n}", queue="jobs")
    record["body"] = body
    return record


def fifo(n: int, group: str, do: str = "ok") -> dict[str, Any]:
    return rec(n, do, queue="orders.fifo", group_id=group)


SCENARIOS: dict[str, tuple[list[Any], bool]] = {
    # name: (records, with a driver to keep dead letters)
    "every record finishes": ([rec(1), rec(2), rec(3)], False),
    "retries and a dead letter kept nowhere": (
        [rec(1), rec(2, "retry"), rec(3), rec(4, "permanent"), rec(5)],
        False,
    ),
    "retries and dead letters kept by the driver": (
        [rec(1), rec(2, "retry"), rec(3, "permanent"), rec(4, "crash", receive_count=3), rec(5)],
        True,
    ),
    "a plain exception is retried, then dead-lettered on the last attempt": (
        [rec(1, "crash"), rec(2, "crash", receive_count=3), rec(3)],
        True,
    ),
    "bodies that are no job": (
        [
            rec(1),
            raw(2, "{not json"),
            raw(3, 123),
            raw(4, JobMessage.create("nobody", {}).encode()),
            raw(5, JobMessage.create("work", {"n": "five"}).encode()),
            "not a record",
            rec(6),
        ],
        True,
    ),
    "a bad receive count is attempt 1": (
        [rec(1, "crash", receive_count=3), {**rec(2, "crash"), "attributes": {}}, rec(3)],
        True,
    ),
    "FIFO: a group is held back behind its failure, others go on": (
        [
            fifo(1, "a"),
            fifo(2, "b"),
            fifo(3, "a", "retry"),
            fifo(4, "b"),
            fifo(5, "a"),
            fifo(6, "b", "permanent"),
            fifo(7, "b"),
        ],
        False,
    ),
    "every record to retry": ([rec(1, "retry"), rec(2, "crash")], False),
}


def in_order(handler: Any, event: dict[str, Any], context: Any) -> Any:
    return handler(event, context)


def on_an_event_loop(handler: Any, event: dict[str, Any], context: Any) -> Any:
    async def call() -> Any:
        return handler(event, context)

    return asyncio.run(call())


PATHS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "event loop": (on_an_event_loop, {}),
    "thread pool": (in_order, {"sync_concurrency": 2}),
}


def run(
    path: Callable[..., Any], options: dict[str, Any], records: list[Any], with_driver: bool
) -> tuple[Any, ...]:
    driver = MockQueueDriver() if with_driver else None
    handler = bootstrap_worker(
        module=define_module(name="paths", jobs=[JOB]), driver=driver, **options
    )
    try:
        response = path(handler, {"Records": records}, FakeLambdaContext())
        answer: tuple[Any, ...] = ("response", sorted(response["batchItemFailures"], key=str))
    except BatchRetryError as exc:
        answer = ("raised", sorted(exc.retried))
    dead = sorted(d.reason for d in driver.dead_letters) if driver is not None else []
    return answer, dead


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("path", list(PATHS))
def test_both_batch_loops_give_the_same_response_and_dead_letters(path: str, name: str) -> None:
    records, with_driver = SCENARIOS[name]
    expected = run(in_order, {}, records, with_driver)
    assert run(*PATHS[path], records, with_driver) == expected


def test_the_scenarios_say_what_the_contract_says() -> None:
    """The reference answers themselves: only what must be retried is reported."""

    def answer(name: str) -> tuple[Any, ...]:
        records, with_driver = SCENARIOS[name]
        return run(in_order, {}, records, with_driver)

    def ids(*ns: int) -> list[dict[str, str]]:
        return [{"itemIdentifier": f"m-{n}"} for n in ns]

    assert answer("every record finishes") == (("response", []), [])
    assert answer("retries and a dead letter kept nowhere") == (("response", ids(2, 4)), [])
    response, dead = answer("retries and dead letters kept by the driver")
    assert response == ("response", ids(2))
    assert dead == ["PermanentJobError: 3 never", "failed 3 of 3 attempts: ValueError: 4 crashed"]
    response, dead = answer("bodies that are no job")
    assert response == ("response", [])
    assert len(dead) == 5
    assert answer("a bad receive count is attempt 1")[0] == ("response", ids(2))
    assert answer("FIFO: a group is held back behind its failure, others go on") == (
        ("response", ids(3, 5, 6, 7)),
        [],
    )
    assert answer("every record to retry") == (("raised", ["m-1", "m-2"]), [])


def test_a_batch_with_too_little_time_left_is_returned_whole_on_both_loops() -> None:
    records = [rec(1), rec(2)]
    for path, options in [(in_order, {}), *PATHS.values()]:
        handler = bootstrap_worker(
            module=define_module(name="paths", jobs=[JOB]), deadline_margin=1.0, **options
        )
        with pytest.raises(BatchRetryError) as raised:
            path(handler, {"Records": records}, FakeLambdaContext(remaining_ms=500))
        assert sorted(raised.value.retried) == ["m-1", "m-2"]
