"""Signature: a job and its payload, validated, as a workflow step (``job.s(payload)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

if TYPE_CHECKING:
    from ..definition import JobDefinition

P = TypeVar("P")
R = TypeVar("R", default=Any)


@dataclass(frozen=True, slots=True)
class Signature(Generic[P, R]):
    """``job`` with ``payload``, validated against its schema when made
    (:class:`~glasswork.jobs.InvalidJobPayloadError` at once): a chain's first step, or a
    group's member. Made by :meth:`JobDefinition.s <glasswork.jobs.JobDefinition.s>`::

        chain(resize.s(Image(url=u)), publish)
        group(*(resize.s(Image(url=u)) for u in urls)).then(build_album)
    """

    job: JobDefinition[P, R]
    payload: P
