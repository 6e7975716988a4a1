"""Workflows (chains, groups with a callback) end to end, through the long-running worker, on
a real SQLite file, the PostgreSQL server and the mock: results pass along a chain, a
group's callback runs exactly once with every result in order (members delivered twice,
two processes ending the last two members at once, a worker SIGKILLed between a member's
effect and its end), a failed step stops its workflow naming it, and a driver without
workflows (SQS) refuses them. Waits are on conditions with deadlines."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glasswork.jobs import AsyncJobService, JobMessage, JobService, MockQueueDriver
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.records import FinalStatus
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError, DuplicateJobError, JobFailedError
from glasswork.jobs.workflows import MemberFailure, chain, group
from glasswork.jobs.workflows.records import step_job_id
from pgtest import dsn, fresh_schema
from status_support import Running, wait_for, worker_for
from workflow_support import (
    JOBS,
    Item,
    Tally,
    doubled,
    partial_total,
    plus_one,
    runs,
    totalled,
)

POSTGRESQL = pytest.param("postgresql", marks=pytest.mark.postgres)
TESTS = Path(__file__).resolve().parent


def open_driver(kind: str, where: str, **options: Any) -> Any:
    if kind == "sqlite":
        return SQLiteQueueDriver(where, **options)
    return PostgresQueueDriver(dsn(), schema=where, **options)


@pytest.fixture(params=["sqlite", POSTGRESQL, "mock"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "postgresql":
        with fresh_schema() as schema:
            yield "postgresql", schema
    else:
        yield request.param, str(tmp_path / "jobs.db")


@pytest.fixture
def driver(place: tuple[str, str]) -> Iterator[Any]:
    kind, where = place
    if kind == "mock":
        yield MockQueueDriver()
        return
    opened = open_driver(kind, where, visibility_timeout=5)
    yield opened
    opened.close()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "runs.jsonl"


def items(log: Path, count: int, fail_at: int = -1, **extra: Any) -> list[Any]:
    return [doubled.s(Item(n=i, log=str(log), fail=i == fail_at, **extra)) for i in range(count)]


def run_all(driver: Any) -> None:
    worker_for(driver, *JOBS, concurrency=4).run_until_empty(timeout=120)


def test_a_3_step_chain_passes_each_result_to_the_next_step(driver: Any, log: Path) -> None:
    handle = JobService(driver).enqueue_workflow(
        chain(doubled.s(Item(n=5, log=str(log))), plus_one, plus_one)
    )
    assert handle.status().state == "running"
    run_all(driver)
    result = handle.wait(timeout=10)
    assert result == Tally(n=12, log=str(log))  # (5 * 2) + 1 + 1, typed as the last step returns
    assert [r["n"] for r in runs(log, "add_one")] == [10, 11]
    status = handle.status()
    assert (status.state, status.kind, status.finished, status.size) == ("done", "chain", 3, 3)
    step = JobService(driver).status(step_job_id(handle.workflow_id, 1))
    assert step is not None and step.state == "done"


def test_a_failing_step_stops_the_chain_as_failed_naming_the_step(driver: Any, log: Path) -> None:
    handle = JobService(driver).enqueue_workflow(
        chain(doubled.s(Item(n=7, log=str(log), fail=True)), plus_one, plus_one)
    )
    run_all(driver)
    status = handle.status()
    assert (status.state, status.failed_step, status.failed_job) == ("failed", 0, "wf-double")
    assert "seven is refused" in (status.error or "")
    with pytest.raises(JobFailedError, match=r"failed at step 0 \(wf-double\)") as failed:
        handle.wait(timeout=5)
    assert failed.value.job_id == step_job_id(handle.workflow_id, 0)
    assert runs(log, "add_one") == []  # the steps after it never ran


def test_a_100_member_groups_callback_runs_once_with_100_results_in_order(
    driver: Any, log: Path
) -> None:
    handle = JobService(driver).enqueue_workflow(group(*items(log, 100)).then(totalled))
    run_all(driver)
    assert handle.wait(timeout=10) == [2 * i for i in range(100)]
    assert [r["count"] for r in runs(log, "total")] == [100]
    status = handle.status()
    assert (status.state, status.finished, status.callback) == ("done", 100, True)


def test_a_group_without_a_callback_ends_with_its_results_typed(driver: Any, log: Path) -> None:
    handle = JobService(driver).enqueue_workflow(group(*items(log, 3)))
    run_all(driver)
    assert handle.wait(timeout=10) == [Tally(n=2 * i, log=str(log)) for i in range(3)]


def test_a_dead_member_fails_the_group_and_its_callback_never_runs(driver: Any, log: Path) -> None:
    handle = JobService(driver).enqueue_workflow(group(*items(log, 10, 7)).then(totalled))
    run_all(driver)
    status = handle.status()
    assert (status.state, status.failed_step, status.finished) == ("failed", 7, 9)
    assert runs(log, "total") == []
    with pytest.raises(JobFailedError, match="failed at step 7"):
        handle.wait(timeout=5)


def test_with_continue_the_callback_gets_each_failure_in_its_place(driver: Any, log: Path) -> None:
    workflow = group(*items(log, 10, 7), on_member_failure="continue").then(partial_total)
    handle = JobService(driver).enqueue_workflow(workflow)
    run_all(driver)
    assert handle.wait(timeout=10) == {"ok": [2 * i for i in range(10) if i != 7], "failed": [7]}


def test_members_delivered_twice_count_once(driver: Any, log: Path) -> None:
    """Every member's end recorded twice (a finish repeated, and a second delivery after a
    lost acknowledgement): the callback is enqueued once, with the results in order."""
    handle = JobService(driver).enqueue_workflow(group(*items(log, 100)).then(totalled))
    got = []
    while len(got) < 100:
        got.extend(driver.receive(max_messages=50))
    ends = []
    for received in got:
        message = JobMessage.from_json(received.body)
        assert message.workflow is not None
        ends.append(
            (
                received,
                FinalStatus(
                    "done",
                    result={"n": message.payload["n"] * 2, "log": str(log)},
                    workflow=(message.workflow.id, message.workflow.step),
                ),
            )
        )
    driver.finish_many(ends[:60])
    driver.finish_many(ends[:60])  # the same ends again: counted already
    for received, final in ends[50:60]:  # a second delivery of ten of them, run again
        driver.finish(received, final)
    assert driver.receive(max_messages=10) == []  # 40 members left: no callback yet
    driver.finish_many(ends[60:])
    driver.finish_many(list(reversed(ends)))
    [callback] = driver.receive(max_messages=10)
    assert JobMessage.from_json(callback.body).job_id == step_job_id(handle.workflow_id, 100)
    assert driver.receive(max_messages=10) == []
    driver.nack(callback)
    run_all(driver)  # the callback itself, through a worker
    assert handle.wait(timeout=10) == [2 * i for i in range(100)]
    assert [r["count"] for r in runs(log, "total")] == [1 * 100]


def _end_one_member(kind: str, where: str, received: Any, barrier: Any, out: Any) -> None:
    """A process that ends one member's delivery at the barrier (the worker's finish
    path: ``finish``, with the end's workflow step)."""
    driver = open_driver(kind, where, visibility_timeout=60)
    message = JobMessage.from_json(received.body)
    assert message.workflow is not None
    end = FinalStatus(
        "done", result=message.payload["n"], workflow=(message.workflow.id, message.workflow.step)
    )
    driver.job_status("warm-up")  # the connection open before the barrier
    barrier.wait(30)
    driver.finish(received, end)
    driver.close()
    out.put(message.workflow.step)


@pytest.mark.subprocess
@pytest.mark.parametrize("kind", ["sqlite", POSTGRESQL])
def test_two_processes_ending_the_last_two_members_at_once_enqueue_one_callback(
    kind: str, tmp_path: Path, log: Path
) -> None:
    """Groups of two members, each member ended by its own process at the same instant
    (a barrier), again and again: every group's callback is enqueued exactly once."""
    with fresh_schema() if kind == "postgresql" else _nothing() as schema:
        where = schema if kind == "postgresql" else str(tmp_path / "jobs.db")
        driver = open_driver(kind, where, visibility_timeout=60)
        jobs = JobService(driver)
        ctx = multiprocessing.get_context("spawn")
        rounds = 8
        for _ in range(rounds):
            handle = jobs.enqueue_workflow(
                group(doubled.s(Item(n=1, log=str(log))), doubled.s(Item(n=2, log=str(log)))).then(
                    totalled
                )
            )
            members = driver.receive(max_messages=10)
            assert len(members) == 2
            assert all(handle.workflow_id in m.body for m in members)
            barrier, out = ctx.Barrier(2), ctx.Queue()
            procs = [
                ctx.Process(target=_end_one_member, args=(kind, where, member, barrier, out))
                for member in members
            ]
            for p in procs:
                p.start()
            assert sorted(out.get(timeout=60) for _ in procs) == [0, 1]
            for p in procs:
                p.join(30)
            callbacks = driver.receive(max_messages=10)
            assert [JobMessage.from_json(c.body).payload for c in callbacks] == [[1, 2]]
            driver.ack(callbacks[0])
        driver.close()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.subprocess
@pytest.mark.parametrize("kind", ["sqlite", POSTGRESQL])
def test_a_worker_killed_after_a_members_effect_still_gets_one_callback(
    kind: str, tmp_path: Path, log: Path
) -> None:
    """A worker process SIGKILLed after member 50's effect, before its end was recorded:
    the member runs again once its lease runs out (members run at least once), and the
    callback runs exactly once with every result."""
    with fresh_schema() if kind == "postgresql" else _nothing() as schema:
        where = schema if kind == "postgresql" else str(tmp_path / "jobs.db")
        driver = open_driver(kind, where, visibility_timeout=1)
        handle = JobService(driver).enqueue_workflow(
            group(*items(log, 100, hang_on=50)).then(totalled)
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
        victim = subprocess.Popen(
            [sys.executable, str(TESTS / "workflow_support.py"), kind, where], env=env
        )
        try:
            wait_for(lambda: any(r["n"] == 50 for r in runs(log, "double")), timeout=60)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        finally:
            if victim.poll() is None:
                victim.kill()
        assert runs(log, "total") == []
        with Running(worker_for(driver, *JOBS, concurrency=4)):
            wait_for(lambda: runs(log, "total"), timeout=60)
            assert handle.wait(timeout=30) == [2 * i for i in range(100)]
        assert [r["count"] for r in runs(log, "total")] == [100]
        fifty = [r for r in runs(log, "double") if r["n"] == 50]
        assert len(fifty) >= 2  # its effect happened twice: members are not exactly once
        driver.close()


def test_the_mock_drain_runs_a_chain_and_a_group(log: Path) -> None:
    driver = MockQueueDriver()
    jobs = JobService(driver)
    chained = jobs.enqueue_workflow(chain(doubled.s(Item(n=1, log=str(log))), plus_one))
    grouped = jobs.enqueue_workflow(group(*items(log, 5)).then(totalled))
    from workflow_support import module

    driver.drain(module)
    assert chained.wait(timeout=0) == Tally(n=3, log=str(log))
    assert grouped.wait(timeout=0) == [0, 2, 4, 6, 8]


def test_the_async_service_enqueues_and_follows_a_workflow(log: Path) -> None:
    driver = MockQueueDriver()

    async def main() -> Any:
        async with AsyncJobService(driver) as jobs:
            handle = await jobs.enqueue_workflow(group(*items(log, 3)).then(totalled))
            assert (await handle.status()).state == "running"  # type: ignore[union-attr]
            await asyncio.to_thread(run_all, driver)
            return await handle.wait(timeout=5)

    assert asyncio.run(main()) == [0, 2, 4]


def test_a_group_with_a_taken_unique_key_stores_nothing(tmp_path: Path, log: Path) -> None:
    from glasswork.jobs import define_job

    keyed = define_job(
        name="wf-keyed", handler=lambda p: p.n, schema=Item, unique=lambda p: str(p.n)
    )
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    jobs = JobService(driver)
    jobs.enqueue(keyed, Item(n=3, log=str(log)))
    with pytest.raises(DuplicateJobError):
        jobs.enqueue_workflow(group(*(keyed.s(Item(n=i, log=str(log))) for i in range(5))))
    assert driver.pending_count() == 1
    assert driver.file.conn().execute("SELECT count(*) FROM glasswork_workflows").fetchone() == (0,)
    driver.close()


def test_a_callback_payload_over_the_message_limit_fails_the_group_saying_so(
    log: Path,
) -> None:
    driver = MockQueueDriver()
    driver.max_message_bytes = 2_000
    handle = JobService(driver).enqueue_workflow(group(*items(log, 40)).then(totalled))
    run_all(driver)
    status = handle.status()
    assert (status.state, status.failed_step) == ("failed", 40)
    assert "too large" in (status.error or "")
    assert runs(log, "total") == []


def test_a_payload_is_checked_when_its_signature_is_made() -> None:
    from glasswork.jobs import InvalidJobPayloadError

    with pytest.raises(InvalidJobPayloadError):
        doubled.s({"n": "not a number"})  # type: ignore[arg-type]


def test_a_driver_without_workflows_refuses_them_naming_what_is_missing(
    moto_endpoint: str, log: Path
) -> None:
    from glasswork.jobs.drivers.sqs import SQSQueueDriver

    driver = SQSQueueDriver(
        region="us-east-1",
        endpoint_url=moto_endpoint,
        queues={"default": f"{moto_endpoint}/123456789012/q-wf"},
    )
    with pytest.raises(ConfigurationError, match=r"sqs driver cannot run workflows.*Workflows"):
        JobService(driver).enqueue_workflow(group(*items(log, 2)).then(totalled))


def test_a_version_6_sqlite_file_is_upgraded_and_runs_workflows(tmp_path: Path, log: Path) -> None:
    import sqlite3

    from glasswork.jobs.drivers.sqlite import schema

    path = tmp_path / "v6.db"
    conn = sqlite3.connect(path)
    for step in schema.MIGRATIONS[:6]:
        if callable(step):
            step(conn)
        else:
            conn.executescript(step)
    conn.execute("PRAGMA user_version = 6")
    conn.commit()
    conn.close()
    driver = SQLiteQueueDriver(path)
    handle = JobService(driver).enqueue_workflow(group(*items(log, 3)).then(totalled))
    run_all(driver)
    assert handle.wait(timeout=5) == [0, 2, 4]
    assert driver.file.conn().execute("PRAGMA user_version").fetchone()[0] == 8
    driver.close()


def test_member_failure_reads_its_wire_form() -> None:
    failure = MemberFailure.model_validate(
        {"glassworkMemberFailure": True, "step": 3, "job_id": "w-3", "state": "dead"}
    )
    assert (failure.step, failure.state, failure.error) == (3, "dead", None)
    with pytest.raises(ValueError):
        MemberFailure.model_validate({"step": 3, "job_id": "w-3", "state": "dead"})


def test_group_and_chain_refuse_what_they_cannot_run() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        group()
    with pytest.raises(TypeError, match=r"job\.s\(payload\)"):
        chain(doubled, plus_one)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="on_member_failure"):
        group(doubled.s(Item(n=1, log="x")), on_member_failure="ignore")  # type: ignore[call-overload]


def test_a_workflow_ended_a_week_ago_is_deleted_by_a_later_start(tmp_path: Path, log: Path) -> None:
    from glasswork.jobs.workflows import advancing

    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    jobs = JobService(driver)
    old = jobs.enqueue_workflow(group(*items(log, 3)).then(totalled))
    running = jobs.enqueue_workflow(group(*items(log, 2)))
    run_all(driver)
    conn = driver.file.conn()
    week_ago = time.time() - advancing.KEEP_ENDED - 1
    conn.execute("UPDATE glasswork_workflows SET updated_at = ?", (week_ago,))
    conn.execute(
        "UPDATE glasswork_workflows SET state = 'running' WHERE workflow_id = ?",
        (running.workflow_id,),
    )
    jobs.enqueue_workflow(group(*items(log, 1)))
    assert old.status() is None and running.status() is not None
    steps = conn.execute(
        "SELECT count(*) FROM glasswork_workflow_steps WHERE workflow_id = ?", (old.workflow_id,)
    ).fetchone()
    assert steps == (0,)
    driver.close()


def test_a_member_cancelled_before_it_ran_counts_as_ended_cancelled(driver: Any, log: Path) -> None:
    jobs = JobService(driver)
    lenient = jobs.enqueue_workflow(
        group(*items(log, 3), on_member_failure="continue").then(partial_total)
    )
    strict = jobs.enqueue_workflow(chain(doubled.s(Item(n=1, log=str(log))), plus_one))
    assert jobs.cancel(step_job_id(lenient.workflow_id, 1), "not needed")
    assert jobs.cancel(step_job_id(strict.workflow_id, 0), "not needed")
    run_all(driver)
    assert lenient.wait(timeout=10) == {"ok": [0, 4], "failed": [1]}
    status = strict.status()
    assert (status.state, status.failed_step, status.error) == (
        "failed",
        0,
        "cancelled: not needed",
    )


def test_a_body_whose_workflow_field_is_malformed_is_dead_lettered_as_malformed(
    tmp_path: Path,
) -> None:
    """A hand-made body with a "workflow" that is no step is a malformed envelope: the
    worker dead-letters it saying so (as any malformed field), and goes on."""
    import json

    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    body = JobMessage.create("wf-add-one", {"n": 1, "log": str(tmp_path / "l")}).to_json()
    broken = json.loads(body) | {"workflow": "not-a-step"}
    driver.file.conn().execute(
        "INSERT INTO glasswork_jobs (queue, job_name, job_id, body, visible_at, enqueued_at) "
        "VALUES ('default', 'wf-add-one', 'broken', ?, 0, 0)",
        (json.dumps(broken),),
    )
    run_all(driver)
    [dead] = driver.dead_letters()
    assert "workflow" in dead.reason
    assert driver.pending_count() == 0
    driver.close()
