"""Composing jobs: :func:`chain` (one after another, each result the next one's payload) and
:func:`group` (side by side, with :meth:`Group.then` a callback once all have finished).
What these return is handed to ``JobService.enqueue_workflow``; nothing is sent before.

Typed: ``chain(a.s(p), b)`` requires ``b``'s payload type to be ``a``'s result type, and a
group's callback to take ``list[R]`` (``list[MemberFailure | R]`` with
``on_member_failure="continue"``), so mypy and pyright report a step that cannot take what
the one before returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from typing_extensions import TypeVar

from ..definition import Signature
from .records import FAILURE_KEY, MemberFailure, OnMemberFailure

if TYPE_CHECKING:
    from ..definition import JobDefinition

R = TypeVar("R", default=Any)
R1 = TypeVar("R1")
R2 = TypeVar("R2")
R3 = TypeVar("R3")
R4 = TypeVar("R4")
R5 = TypeVar("R5")
R6 = TypeVar("R6")
RC = TypeVar("RC")

#: The most steps a chain may have (each is a row of its workflow).
MAX_CHAIN_STEPS = 1000


class Workflow(Generic[R]):
    """What ``JobService.enqueue_workflow`` takes; ``R`` is what ``handle.wait()`` returns."""

    kind: Literal["chain", "group"]

    def result_from(self, value: Any) -> R:
        """The stored result of the whole workflow, as ``R``."""
        raise NotImplementedError


class Chain(Workflow[R]):
    """Steps run one after another: ``first``, then each of ``rest`` with the result of the
    one before as its payload. Made by :func:`chain`."""

    kind = "chain"
    __slots__ = ("first", "rest")

    def __init__(self, first: Signature[Any, Any], rest: Sequence[JobDefinition[Any, Any]]):
        self.first = first
        self.rest = tuple(rest)

    @property
    def steps(self) -> tuple[JobDefinition[Any, Any], ...]:
        """Every step's job, in order."""
        return (self.first.job, *self.rest)

    def result_from(self, value: Any) -> R:
        return self.steps[-1].result_from(value)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"chain({', '.join(job.name for job in self.steps)})"


class Group(Workflow[list[R]]):
    """Members run side by side; :meth:`then` adds a callback that runs once, after every
    member finished, with their results in member order. Made by :func:`group`."""

    kind = "group"
    __slots__ = ("members", "on_member_failure")

    def __init__(
        self, members: Sequence[Signature[Any, Any]], on_member_failure: OnMemberFailure
    ) -> None:
        self.members = tuple(members)
        self.on_member_failure: OnMemberFailure = on_member_failure

    def then(self, callback: JobDefinition[list[R], RC]) -> FanIn[RC]:
        """This group with ``callback``: it runs exactly once, after every member finished,
        with the list of their results (in member order) as its payload."""
        return FanIn(self, callback)

    def result_from(self, value: Any) -> list[R]:
        if not isinstance(value, list):
            return value  # type: ignore[no-any-return]
        return [
            member_result(member.job, item)
            for member, item in zip(self.members, value, strict=False)
        ]

    def __repr__(self) -> str:
        return f"group({len(self.members)} members)"


class FanIn(Workflow[R]):
    """A group with its callback (:meth:`Group.then`)."""

    kind = "group"
    __slots__ = ("callback", "group")

    def __init__(self, group: Group[Any], callback: JobDefinition[Any, R]) -> None:
        self.group = group
        self.callback = callback

    @property
    def members(self) -> tuple[Signature[Any, Any], ...]:
        return self.group.members

    @property
    def on_member_failure(self) -> OnMemberFailure:
        return self.group.on_member_failure

    def result_from(self, value: Any) -> R:
        return self.callback.result_from(value)

    def __repr__(self) -> str:
        return f"group({len(self.members)} members).then({self.callback.name})"


def member_result(job: JobDefinition[Any, Any], value: Any) -> Any:
    """One member's stored result as its job returns it, or the :class:`MemberFailure`."""
    if isinstance(value, dict) and value.get(FAILURE_KEY) is True:
        return MemberFailure.model_validate(value)
    return job.result_from(value)


@overload
def chain(first: Signature[Any, R1], /) -> Chain[R1]: ...
@overload
def chain(first: Signature[Any, R1], s2: JobDefinition[R1, R2], /) -> Chain[R2]: ...
@overload
def chain(
    first: Signature[Any, R1], s2: JobDefinition[R1, R2], s3: JobDefinition[R2, R3], /
) -> Chain[R3]: ...
@overload
def chain(
    first: Signature[Any, R1],
    s2: JobDefinition[R1, R2],
    s3: JobDefinition[R2, R3],
    s4: JobDefinition[R3, R4],
    /,
) -> Chain[R4]: ...
@overload
def chain(
    first: Signature[Any, R1],
    s2: JobDefinition[R1, R2],
    s3: JobDefinition[R2, R3],
    s4: JobDefinition[R3, R4],
    s5: JobDefinition[R4, R5],
    /,
) -> Chain[R5]: ...
@overload
def chain(
    first: Signature[Any, R1],
    s2: JobDefinition[R1, R2],
    s3: JobDefinition[R2, R3],
    s4: JobDefinition[R3, R4],
    s5: JobDefinition[R4, R5],
    s6: JobDefinition[R5, R6],
    /,
) -> Chain[R6]: ...
def chain(first: Signature[Any, Any], /, *rest: JobDefinition[Any, Any]) -> Chain[Any]:
    """``first`` (a job with its payload, ``a.s(payload)``), then each job of ``rest`` with
    the result of the one before as its payload::

        handle = jobs.enqueue_workflow(chain(charge.s(Order(id=7)), send_receipt, archive))
        handle.wait()   # what archive returned

    A step that ends without a result (dead-lettered, discarded, cancelled) stops the chain:
    its state is ``failed``, naming the step, and ``handle.wait()`` raises
    :class:`~glasswork.jobs.errors.JobFailedError`.

    Up to 6 steps are typed step by step (each step's payload type must be the result type
    of the one before); a longer chain is made with ``Chain(first, rest)``, checked at run
    time only."""
    from ..definition import JobDefinition

    if not isinstance(first, Signature):
        raise TypeError(f"a chain starts with a job and its payload, job.s(payload); got {first!r}")
    for job in rest:
        if not isinstance(job, JobDefinition):
            raise TypeError(
                f"a chain's later steps are jobs (their payload is the result of the step "
                f"before), got {job!r}"
            )
    if len(rest) + 1 > MAX_CHAIN_STEPS:
        raise ValueError(f"a chain has at most {MAX_CHAIN_STEPS} steps, got {len(rest) + 1}")
    return Chain(first, rest)


@overload
def group(*members: Signature[Any, R], on_member_failure: Literal["fail"] = "fail") -> Group[R]: ...
@overload
def group(
    *members: Signature[Any, R], on_member_failure: Literal["continue"]
) -> Group[MemberFailure | R]: ...
def group(*members: Signature[Any, Any], on_member_failure: OnMemberFailure = "fail") -> Group[Any]:
    """Members (each a job with its payload, ``a.s(payload)``) that run side by side::

        album = group(*(resize.s(Image(url=u)) for u in urls)).then(build_album)
        jobs.enqueue_workflow(album)

    ``on_member_failure``: ``"fail"`` (a member that ends without a result fails the group,
    and its callback never runs) or ``"continue"`` (the callback runs once every member
    ended, a failed one's place in its list holding a :class:`MemberFailure`)."""
    if on_member_failure not in ("fail", "continue"):
        raise ValueError(
            f'on_member_failure must be "fail" or "continue", got {on_member_failure!r}'
        )
    for member in members:
        if not isinstance(member, Signature):
            raise TypeError(
                f"a group's members are jobs with their payloads, job.s(payload); got {member!r}"
            )
    if not members:
        raise ValueError("a group needs at least one member")
    return Group(members, on_member_failure)
