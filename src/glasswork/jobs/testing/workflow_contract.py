"""The contract of the :class:`~glasswork.jobs.drivers.contract.Workflows` group, part of the
driver contract suite (:mod:`glasswork.jobs.testing.contract` re-exports it): what a driver
that keeps workflows does where their steps end, at the level of its own methods
(``start_workflow``, ``finish``/``finish_many``, ``dead_letter``, ``workflow_status``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ..drivers.contract import capabilities_of, driver_name
from ..drivers.records import FinalStatus, ReceivedMessage
from ..message import JobMessage, WorkflowRef, new_job_id
from ..workflows.records import FAILURE_KEY, StepPlan, WorkflowPlan, step_job_id

__all__ = ["TestWorkflows"]

#: How long a test waits for deliveries (as the rest of the suite: generous).
PATIENCE = 15.0


def workflows(driver: object) -> Any:
    """``driver`` as its ``Workflows`` group, or the test skipped naming what it lacks
    (the group needs the status store and consuming too)."""
    caps = capabilities_of(driver)
    for field, protocol in (
        ("consuming", "Consuming"),
        ("status", "StatusStore"),
        ("workflows", "Workflows"),
    ):
        if getattr(caps, field) is None:
            pytest.skip(f"the {driver_name(driver)} driver has no {protocol} ({field})")
    return caps.workflows


def receive_exactly(driver: Any, count: int) -> list[ReceivedMessage]:
    """``count`` deliveries, waiting up to :data:`PATIENCE` seconds for them."""
    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + PATIENCE
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"expected {count} deliveries within {PATIENCE} s, got {len(got)}")
        got.extend(driver.receive(None, count - len(got), min(1.0, left)))
    return got


def nothing_due(driver: Any) -> bool:
    """Whether a receive now finds nothing (what it found is handed back)."""
    found = driver.receive(None, 10, 0.0)
    for r in found:
        driver.nack(r)
    return not found


def step_message(workflow_id: str, step: int, payload: object, name: str = "member") -> JobMessage:
    return JobMessage.create(
        name,
        payload,
        job_id=step_job_id(workflow_id, step),
        workflow=WorkflowRef(id=workflow_id, step=step),
    )


def done(received: ReceivedMessage, result: object) -> tuple[ReceivedMessage, FinalStatus]:
    step = JobMessage.from_json(received.body).workflow
    assert step is not None, "a workflow step's message lost its workflow"
    return received, FinalStatus("done", result=result, keep_for=60, workflow=(step.id, step.step))


def start_group(
    driver: Any, size: int, callback: bool = True, on_failure: Any = "fail"
) -> tuple[str, list[JobMessage]]:
    workflow_id = new_job_id()
    later = (StepPlan(size, "callback", "default"),) if callback else ()
    plan = WorkflowPlan(workflow_id, "group", size, later, on_failure)
    members = [step_message(workflow_id, i, {"i": i}) for i in range(size)]
    driver.start_workflow(plan, [members[: size // 2], members[size // 2 :]])
    return workflow_id, members


class TestWorkflows:
    """``start_workflow``, ``workflow_status``, and workflows advanced where steps end (the
    ``Workflows`` group)."""

    def test_a_chain_step_done_enqueues_the_next_with_its_result_once(self, driver: Any) -> None:
        workflows(driver)
        workflow_id = new_job_id()
        plan = WorkflowPlan(
            workflow_id,
            "chain",
            3,
            (StepPlan(1, "second", "default"), StepPlan(2, "third", "default")),
        )
        driver.start_workflow(plan, [[step_message(workflow_id, 0, {"n": 1}, "first")]])
        [first] = receive_exactly(driver, 1)
        driver.finish(*done(first, {"n": 2}))
        driver.finish(*done(first, {"n": 99}))  # a second end of the same step: counts once
        [second] = receive_exactly(driver, 1)
        message = JobMessage.from_json(second.body)
        assert (message.job_name, message.payload, message.job_id) == (
            "second",
            {"n": 2},
            step_job_id(workflow_id, 1),
        )
        assert nothing_due(driver)
        assert driver.workflow_status(workflow_id).finished == 1
        driver.finish(*done(second, {"n": 3}))
        [third] = receive_exactly(driver, 1)
        driver.finish(*done(third, "end"))
        status = driver.workflow_status(workflow_id)
        assert (status.state, status.result, status.finished) == ("done", "end", 3)

    def test_a_groups_last_member_enqueues_the_callback_once_with_results_in_order(
        self, driver: Any
    ) -> None:
        workflows(driver)
        workflow_id, _ = start_group(driver, 6)
        got = receive_exactly(driver, 6)
        # Ended out of order, some twice (a member delivered twice counts once).
        ends = [done(r, JobMessage.from_json(r.body).payload["i"] * 10) for r in reversed(got)]
        driver.finish_many(ends[:3])
        driver.finish_many(ends[:3])
        assert nothing_due(driver)
        assert driver.workflow_status(workflow_id).finished == 3
        driver.finish_many(ends[3:])
        driver.finish_many(ends)
        [callback] = receive_exactly(driver, 1)
        message = JobMessage.from_json(callback.body)
        assert message.job_name == "callback"
        assert message.payload == [0, 10, 20, 30, 40, 50]
        assert message.job_id == step_job_id(workflow_id, 6)
        assert nothing_due(driver)
        driver.finish(*done(callback, "album"))
        status = driver.workflow_status(workflow_id)
        assert (status.state, status.result, status.callback) == ("done", "album", True)

    def test_a_group_without_a_callback_ends_with_its_results(self, driver: Any) -> None:
        workflows(driver)
        workflow_id, _ = start_group(driver, 3, callback=False)
        driver.finish_many([done(r, "r") for r in receive_exactly(driver, 3)])
        status = driver.workflow_status(workflow_id)
        assert (status.state, status.result) == ("done", ["r", "r", "r"])

    def test_a_dead_lettered_member_fails_the_group_and_its_callback_never_comes(
        self, driver: Any
    ) -> None:
        workflows(driver)
        workflow_id, _ = start_group(driver, 3)
        got = receive_exactly(driver, 3)
        failing = got[1]
        step = JobMessage.from_json(failing.body).workflow
        assert step is not None
        driver.dead_letter(failing.body, "broken", queue=failing.queue)
        driver.ack(failing)
        driver.finish(
            failing,
            FinalStatus("dead", error="broken", keep_for=60, workflow=(step.id, step.step)),
        )
        driver.finish_many([done(r, 1) for r in (got[0], got[2])])
        assert nothing_due(driver)
        status = driver.workflow_status(workflow_id)
        assert (status.state, status.failed_step, status.failed_job) == ("failed", 1, "member")
        assert "broken" in (status.error or "")

    def test_with_continue_the_callback_gets_a_failed_members_failure(self, driver: Any) -> None:
        workflows(driver)
        start_group(driver, 2, on_failure="continue")
        first, second = sorted(
            receive_exactly(driver, 2), key=lambda r: JobMessage.from_json(r.body).job_id
        )
        step = JobMessage.from_json(second.body).workflow
        assert step is not None
        driver.finish(first, done(first, "ok")[1])
        driver.finish(
            second,
            FinalStatus("failed", error="gave up", keep_for=60, workflow=(step.id, step.step)),
        )
        [callback] = receive_exactly(driver, 1)
        ok, failure = JobMessage.from_json(callback.body).payload
        assert ok == "ok"
        assert failure[FAILURE_KEY] is True
        assert (failure["step"], failure["state"], failure["error"]) == (1, "failed", "gave up")

    def test_an_unknown_workflow_has_no_status(self, driver: Any) -> None:
        workflows(driver)
        assert driver.workflow_status("no-such-workflow-of-the-contract-suite") is None
