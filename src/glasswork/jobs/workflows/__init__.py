"""Workflows: chains, groups with a callback that runs exactly once (fan-in), built on the
driver's status store (see ``docs/workflows.md``).

::

    from glasswork.jobs.workflows import chain, group

    jobs.enqueue_workflow(chain(charge.s(Order(id=7)), send_receipt))
    album = jobs.enqueue_workflow(group(*(resize.s(Image(url=u)) for u in urls)).then(build_album))
    album.wait(timeout=60)

What an application writes is here: :func:`chain`, :func:`group`, :class:`MemberFailure` (a
failed member, in a ``"continue"`` group's results), :class:`WorkflowHandle` /
:class:`AsyncWorkflowHandle` (what ``enqueue_workflow`` returns), :class:`WorkflowStatus`
and :class:`Signature` (``job.s(payload)``). Internals are in the submodules: ``canvas``
(composing), ``starting`` (the plan a driver stores), ``advancing`` (what a finished step
does, on SQL; the mock runs the same statements, ``drivers/mock/workflows.py``).
"""

from __future__ import annotations

from ..definition import Signature
from .canvas import Chain, FanIn, Group, Workflow, chain, group
from .handle import AsyncWorkflowHandle, WorkflowHandle
from .records import MemberFailure, WorkflowStatus

__all__ = [
    "AsyncWorkflowHandle",
    "Chain",
    "FanIn",
    "Group",
    "MemberFailure",
    "Signature",
    "Workflow",
    "WorkflowHandle",
    "WorkflowStatus",
    "chain",
    "group",
]
