"""The records a workflow is stored and reported as: what a driver is asked to store
(:class:`WorkflowPlan`, its later steps :class:`StepPlan`), what it reports
(:class:`WorkflowStatus`), and how a group member that failed reaches a callback
(:class:`MemberFailure`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

WorkflowKind = Literal["chain", "group"]
WorkflowState = Literal["running", "done", "failed"]
OnMemberFailure = Literal["fail", "continue"]
#: The key that marks a failed member in a callback's results list (JSON).
FAILURE_KEY = "glassworkMemberFailure"


def step_job_id(workflow_id: str, step: int) -> str:
    """The job id of ``workflow_id``'s step ``step``: derived, so the step a finishing
    worker enqueues has the id the workflow was given (and any retry of that write, the
    same one)."""
    return f"{workflow_id}-{step}"


@dataclass(frozen=True, slots=True)
class StepPlan:
    """A step enqueued later by the worker that finishes the one before (a chain's next
    step, a group's callback): the job to send, with the previous result (a chain) or the
    members' results (a callback) as its payload."""

    step: int
    job_name: str
    queue: str
    priority: int = 0

    def job_id(self, workflow_id: str) -> str:
        return step_job_id(workflow_id, self.step)


@dataclass(frozen=True, slots=True)
class WorkflowPlan:
    """What :meth:`Workflows.start_workflow` stores: a chain of ``size`` steps (step 0 sent
    at once, the others in ``later``), or a group of ``size`` members (all sent at once)
    with its callback, if any, in ``later`` as step ``size``."""

    workflow_id: str
    kind: WorkflowKind
    size: int
    later: tuple[StepPlan, ...] = ()
    on_member_failure: OnMemberFailure = "fail"

    @property
    def callback(self) -> StepPlan | None:
        """A group's callback (None: a chain, or a group without one)."""
        return self.later[0] if self.kind == "group" and self.later else None


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    """A workflow's state as its driver stores it.

    ``state``: ``running``, ``done`` (every step done; ``result`` is the last step's result,
    the callback's, or, for a group without a callback, the members' results in order) or
    ``failed`` (``failed_step`` and ``failed_job`` name the step, ``error`` says why).
    ``size``: a chain's steps or a group's members; ``finished``: how many of those ended
    (a group's fan-in count); ``callback``: whether a group has one."""

    workflow_id: str
    kind: WorkflowKind
    state: WorkflowState
    size: int
    finished: int
    on_member_failure: OnMemberFailure = "fail"
    callback: bool = False
    failed_step: int | None = None
    failed_job: str | None = None
    error: str | None = None
    result: Any = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def job_id(self, step: int) -> str:
        """The job id of step ``step`` (a group's callback is step ``size``), to follow it
        with ``JobService.status``."""
        return step_job_id(self.workflow_id, step)


class MemberFailure(BaseModel):
    """A group member that ended without a result, as a callback of a group with
    ``on_member_failure="continue"`` gets it in place of the result: type the callback's
    payload ``list[MemberFailure | R]`` (MemberFailure first when ``R`` is a dict type).

    ``step`` is its index in the group, ``state`` how it ended (``dead``, ``failed``,
    ``cancelled``), ``error`` why. On the wire it is an object with
    ``"glassworkMemberFailure": true``, which no result of yours should have."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    marker: Literal[True] = Field(alias=FAILURE_KEY)
    step: int
    job_id: str
    job_name: str | None = None
    state: str
    error: str | None = None


def failure_entry(
    step: int, job_id: str, job_name: str | None, state: str, error: str | None
) -> dict[str, Any]:
    """A failed member's place in a results list (JSON), as :class:`MemberFailure` reads."""
    return {
        FAILURE_KEY: True,
        "step": step,
        "job_id": job_id,
        "job_name": job_name,
        "state": state,
        "error": error,
    }
