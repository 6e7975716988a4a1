"""Starting a workflow: the plan a driver stores and the messages it sends first, built a
batch at a time (a group of 10,000 members is never 10,000 messages in memory at once)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..definition import Signature
from ..drivers.contract import Workflows, capabilities_of
from ..errors import ConfigurationError, InvalidJobPayloadError
from ..message import JobMessage, WorkflowRef, new_job_id
from .canvas import Chain, FanIn, Group, Workflow
from .records import StepPlan, WorkflowPlan, step_job_id

if TYPE_CHECKING:
    from ..definition import JobDefinition
    from ..service import EnqueueBase

#: Members per ``start_workflow`` batch (one message list in memory at a time).
BATCH = 500


def workflow_store(driver: object, workflow: Workflow[Any]) -> Workflows:
    """``driver``'s :class:`Workflows` group; a :class:`ConfigurationError` naming what is
    missing on a driver without it."""
    store = capabilities_of(driver).workflows
    if store is None:
        name = getattr(driver, "name", type(driver).__name__)
        raise ConfigurationError(
            f"the {name} driver cannot run workflows ({workflow!r}): it lacks the Workflows "
            "capability (start_workflow, workflow_status, and advancing workflows where jobs "
            "finish; see docs/drivers.md). Chains, groups and depends_on run on the SQLite, "
            "PostgreSQL and mock drivers; nothing was sent"
        )
    return store


def plan(
    service: EnqueueBase, workflow: Workflow[Any], limit_of: Any
) -> tuple[WorkflowPlan, Iterable[list[JobMessage]]]:
    """The plan of ``workflow`` and its first messages in batches (each validated and
    checked against ``limit_of(queue)`` bytes as it is built)."""
    workflow_id = new_job_id()
    if isinstance(workflow, Chain):
        later = tuple(_later(service, job, step) for step, job in enumerate(workflow.rest, start=1))
        stored = WorkflowPlan(workflow_id, "chain", len(workflow.rest) + 1, later)
        first = [_message(service, workflow.first, workflow_id, 0, limit_of)]
        return stored, [first]
    if isinstance(workflow, FanIn | Group):
        members = workflow.members
        callback = workflow.callback if isinstance(workflow, FanIn) else None
        later = (_later(service, callback, len(members)),) if callback is not None else ()
        stored = WorkflowPlan(workflow_id, "group", len(members), later, workflow.on_member_failure)
        return stored, MemberBatches(service, members, workflow_id, limit_of)
    raise TypeError(f"enqueue_workflow takes chain(...) or group(...), got {workflow!r}")


class MemberBatches:
    """A group's member messages, :data:`BATCH` at a time, built as they are read: one
    batch in memory at a time, and read again from the start when iterated again (a
    driver repeating a transaction its connection lost), with the same job ids."""

    def __init__(
        self,
        service: EnqueueBase,
        members: tuple[Signature[Any, Any], ...],
        workflow_id: str,
        limit_of: Any,
    ) -> None:
        self.service = service
        self.members = members
        self.workflow_id = workflow_id
        self.limit_of = limit_of

    def __iter__(self) -> Iterator[list[JobMessage]]:
        members = self.members
        for start in range(0, len(members), BATCH):
            yield [
                _message(self.service, member, self.workflow_id, step, self.limit_of)
                for step, member in enumerate(members[start : start + BATCH], start=start)
            ]


def _later(service: EnqueueBase, job: JobDefinition[Any, Any], step: int) -> StepPlan:
    priority = service.checked_priority(job, job.priority) if job.priority else 0
    return StepPlan(step, job.name, service.queue_of(job), priority)


def _message(
    service: EnqueueBase,
    signature: Signature[Any, Any],
    workflow_id: str,
    step: int,
    limit_of: Any,
) -> JobMessage:
    """The message of a step whose payload is known now (validated when the signature was
    made), as ``JobService`` builds any: unique key, group, concurrency key, priority."""
    job = signature.job
    value = signature.payload
    queue = service.queue_of(job)
    unique_key = job.unique_key_for(value)
    if unique_key is not None and "\x00" in unique_key:
        raise InvalidJobPayloadError(
            job.name, [], f"its unique key {unique_key!r} holds U+0000 (NUL); nothing was sent"
        )
    message = JobMessage.create(
        job.name,
        job.to_wire(value),
        queue=queue,
        job_id=step_job_id(workflow_id, step),
        unique_key=unique_key,
        group_id=job.group_id_for(value),
        priority=service.checked_priority(job, job.priority) if job.priority else 0,
        concurrency_key=job.concurrency_key_for(value),
        workflow=WorkflowRef(id=workflow_id, step=step),
    )
    message.encode(limit_of(queue))
    return message


def start(service: EnqueueBase, driver: Any, workflow: Workflow[Any]) -> tuple[str, Workflows]:
    """Store ``workflow`` on ``driver`` and send its first messages; its id and the store."""
    store = workflow_store(driver, workflow)
    stored, batches = plan(service, workflow, driver.message_limit)
    store.start_workflow(stored, batches)
    return stored.workflow_id, store
