"""Following a workflow: what ``JobService.enqueue_workflow`` returns."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Generic

from typing_extensions import TypeVar

from ..drivers.contract import Workflows
from ..errors import JobFailedError, JobNotFoundError
from ..following import POLL as POLL
from ..following import check_wait, pauses
from .canvas import Workflow
from .records import WorkflowStatus

R = TypeVar("R", default=Any)


class WorkflowHandle(Generic[R]):
    """A workflow sent by ``JobService.enqueue_workflow``: its :attr:`workflow_id`,
    :meth:`status` and :meth:`wait`. ``R`` is what the workflow ends with: a chain's last
    step's result, a group callback's, or a bare group's list of member results."""

    __slots__ = ("_store", "_workflow", "workflow_id")

    def __init__(self, workflow_id: str, store: Workflows, workflow: Workflow[R]) -> None:
        self.workflow_id = workflow_id
        self._store = store
        self._workflow = workflow

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r}, {self._workflow!r})"

    def status(self) -> WorkflowStatus | None:
        """The workflow's :class:`WorkflowStatus` now (None: the driver does not know it)."""
        return self._store.workflow_status(self.workflow_id)

    def wait(self, timeout: float | None = None, *, poll: float = POLL) -> R:
        """Wait for the workflow to end and return its result (typed as its last job
        returns it). :class:`~glasswork.jobs.errors.JobFailedError` when it failed (naming
        the step), :class:`TimeoutError` after ``timeout`` seconds (None: no limit)."""
        check_wait(timeout, poll)
        status = self.status()
        for pause in pauses(timeout, poll):
            if _ended(self.workflow_id, status):
                break
            time.sleep(pause)
            status = self.status()
        return self._result(status, timeout)

    def _result(self, status: WorkflowStatus | None, timeout: float | None) -> R:
        if not _ended(self.workflow_id, status):
            raise TimeoutError(
                f"workflow {self.workflow_id} has not ended after {timeout:g}s (it is running)"
            )
        assert status is not None
        return self._workflow.result_from(status.result)


class AsyncWorkflowHandle(Generic[R]):
    """What ``AsyncJobService.enqueue_workflow`` returns: :class:`WorkflowHandle`'s
    methods to await (the driver is asked in a thread, off the event loop)."""

    __slots__ = ("_sync", "workflow_id")

    def __init__(self, workflow_id: str, store: Workflows, workflow: Workflow[R]) -> None:
        self.workflow_id = workflow_id
        self._sync = WorkflowHandle(workflow_id, store, workflow)

    def __repr__(self) -> str:
        return f"Async{self._sync!r}"

    async def status(self) -> WorkflowStatus | None:
        """The workflow's :class:`WorkflowStatus` now."""
        return await asyncio.to_thread(self._sync.status)

    async def wait(self, timeout: float | None = None, *, poll: float = POLL) -> R:
        """:meth:`WorkflowHandle.wait`, sleeping on the loop."""
        check_wait(timeout, poll)
        status = await self.status()
        for pause in pauses(timeout, poll):
            if _ended(self.workflow_id, status):
                break
            await asyncio.sleep(pause)
            status = await self.status()
        return self._sync._result(status, timeout)


def _ended(workflow_id: str, status: WorkflowStatus | None) -> bool:
    """True once the workflow is done; raises for one failed or unknown."""
    if status is None:
        raise JobNotFoundError(workflow_id)
    if status.state == "failed":
        step = status.failed_step
        raise JobFailedError(
            status.job_id(step) if step is not None else workflow_id,
            "failed",
            f"workflow {workflow_id} ({status.kind}) failed at step {step} "
            f"({status.failed_job}): {status.error}",
        )
    return status.state == "done"
