"""What :meth:`Executor.execute <glasswork.jobs.execution.Executor.execute>` decides for one run.

* :class:`Done`: the handler returned (its :attr:`~Done.result` is what it returned).
* :class:`Retry`: a transient failure below ``retry.max_attempts``; run again after ``delay``.
* :class:`DeadLetter`: a permanent failure, retries used up, an invalid payload, an unknown
  job or a malformed body; keep the message in the dead letter.
* :class:`Discard`: a failure of a job defined with ``retry=False``.
* :class:`Cancelled`: the job was asked to stop and did (``JobCancelledError``, or an
  ``async def`` handler's task cancelled); never retried or dead-lettered.

Outcomes are values: compare them with ``==``, and treat them as read-only.
:func:`final_status` and :func:`retry_note` say how an ended or failed run is handed to a
driver's status store (both workers use them).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from .drivers.records import DEFAULT_RESULT_TTL, FinalStatus
from .errors import MalformedMessageError, failure_traceback

if TYPE_CHECKING:
    from .context import JobContext
    from .message import JobMessage


class Outcome:
    """What should happen to a message after a run. ``message`` is None for a body that
    could not be decoded."""

    __slots__ = ("_ctx", "_message")
    kind: ClassVar[str] = "outcome"
    _fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: JobMessage | None) -> None:
        self._message = message
        self._ctx: JobContext | None = None

    @classmethod
    def of_context(cls, ctx: JobContext, *fields: Any) -> Any:
        """The outcome for ``ctx``'s job, whose message is read from ``ctx`` only when
        asked for: a worker that never looks at a finished job's message never builds it."""
        outcome = cls(None, *fields)
        outcome._ctx = ctx
        return outcome

    @property
    def message(self) -> JobMessage | None:
        """The job's message (None for a body that could not be decoded)."""
        ctx = self._ctx
        if ctx is not None:
            self._message = ctx.job
            self._ctx = None
        return self._message

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Outcome)
        return self.message == other.message and all(
            getattr(self, f) == getattr(other, f) for f in self._fields
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"message={self.message!r}", *(f"{f}={getattr(self, f)!r}" for f in self._fields)]
        return f"{type(self).__name__}({', '.join(parts)})"


class Done(Outcome):
    """The handler returned: acknowledge the message. ``value`` is what it returned;
    :attr:`result` is that value as it is stored (JSON), made on first read."""

    __slots__ = ("_stored", "value")
    kind: ClassVar[str] = "done"
    _fields = ("result",)
    _stored: tuple[Any, str | None]  # (result, why it was not stored), made on first read

    def __init__(self, message: JobMessage | None, value: Any = None) -> None:
        super().__init__(message)
        self.value = value

    @property
    def result(self) -> Any:
        """The handler's return value as JSON data: a pydantic model dumped
        (``model_dump(mode="json")``), anything else as it is if ``json`` can write it,
        else None (see :attr:`result_error`)."""
        return self._storable()[0]

    @property
    def result_error(self) -> str | None:
        """Why the return value could not be stored (None: it could, or there was none).
        The job is done all the same: it ran, and never runs again."""
        return self._storable()[1]

    def _storable(self) -> tuple[Any, str | None]:
        try:
            return self._stored
        except AttributeError:
            pass
        stored = self._stored = storable_result(self.value)
        if stored[1] is not None:
            message = self.message
            logger.warning(
                "[%s %s] done, but %s",
                message.job_name if message else "?",
                message.job_id if message else "?",
                stored[1],
            )
        return stored


#: Types whose values ``json`` always writes as they are.
_PLAIN = frozenset({str, int, bool, type(None)})


def storable_result(value: Any) -> tuple[Any, str | None]:
    """``(result, error)``: a handler's return ``value`` as JSON data, or None with why it
    cannot be (a value ``json.dumps`` refuses, NaN and infinities included)."""
    if type(value) in _PLAIN:
        return value, None
    try:
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        json.dumps(value, allow_nan=False)
    except Exception as exc:
        return None, (
            f"its result could not be stored: a {type(value).__name__} is not "
            f"JSON-serialisable ({exc}); return JSON data or a pydantic model"
        )
    return value, None


def done_for(ctx: JobContext, value: Any) -> Done:
    """``Done.of_context(ctx, value)``, in fewer steps: one of these is made per finished job."""
    done = _new(Done)
    done._message = None
    done._ctx = ctx
    done.value = value
    return done


_new = object.__new__
logger = logging.getLogger("glasswork.jobs")


class Retry(Outcome):
    """Run the job again after ``delay`` seconds."""

    __slots__ = ("delay", "error")
    kind: ClassVar[str] = "retry"
    _fields = ("delay", "error")

    def __init__(self, message: JobMessage | None, delay: float, error: BaseException) -> None:
        super().__init__(message)
        self.delay = delay
        self.error = error


class _Failed(Outcome):
    """An outcome that ends a job for good after ``error``, for ``reason``."""

    __slots__ = ("error", "reason")
    _fields = ("reason", "error")

    def __init__(self, message: JobMessage | None, reason: str, error: BaseException) -> None:
        super().__init__(message)
        self.reason = reason
        self.error = error


class DeadLetter(_Failed):
    """Move the message to the dead letter, with ``reason`` and :attr:`traceback`."""

    __slots__ = ()
    kind: ClassVar[str] = "dead_letter"

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of ``error`` kept with the dead letter (about 8 KB at
        most, the end kept), or None for a deliberate job error: see
        :func:`glasswork.jobs.errors.failure_traceback`."""
        return failure_traceback(self.error)


class Discard(_Failed):
    """Drop the message after a failure (the job has ``retry=False``)."""

    __slots__ = ()
    kind: ClassVar[str] = "discarded"


class Cancelled(_Failed):
    """The job was asked to stop and did: acknowledge it, never retry or dead-letter it.
    ``reason`` says why; ``error`` is a :class:`~glasswork.jobs.JobCancelledError` (the
    handler's, or one standing for the cancellation of an ``async def`` handler's task)."""

    __slots__ = ()
    kind: ClassVar[str] = "cancelled"


# -- to a status store ---------------------------------------------------------------------


def final_status(outcome: Outcome, ctx: JobContext | None) -> FinalStatus:
    """How a job that ended with ``outcome`` (Done, Discard, Cancelled or DeadLetter) is
    recorded: its result (none kept when its job's ``result_ttl`` is 0), error, traceback,
    last progress, and how long to keep it."""
    keep_for = _result_ttl(ctx)
    progress = ctx.last_progress if ctx is not None else None
    fraction, note = progress if progress is not None else (None, None)
    step = workflow_step(ctx)
    if isinstance(outcome, Done):
        if keep_for <= 0 and step is None:  # nothing is kept: do not even make the result
            return FinalStatus("done", keep_for=keep_for)
        return FinalStatus(
            "done",
            result=outcome.result,
            error=outcome.result_error,
            progress=fraction,
            progress_note=note,
            keep_for=keep_for,
            workflow=step,
        )
    if isinstance(outcome, Cancelled):
        return FinalStatus(
            "cancelled",
            error=outcome.reason,
            progress=fraction,
            progress_note=note,
            keep_for=keep_for,
            workflow=step,
        )
    assert isinstance(outcome, DeadLetter | Discard)
    return FinalStatus(
        "dead" if isinstance(outcome, DeadLetter) else "failed",
        error=outcome.reason,
        traceback=failure_traceback(outcome.error),
        progress=fraction,
        progress_note=note,
        keep_for=keep_for,
        workflow=step,
    )


def workflow_step(ctx: JobContext | None) -> tuple[str, int] | None:
    """``(workflow id, step)`` of the job ``ctx`` ran, when it is a workflow's step. A body
    without the ``"workflow"`` key (every job outside a workflow) is not parsed for it."""
    if ctx is None:
        return None
    body = getattr(ctx, "_body", None)  # the wire text, when the message was not parsed
    if isinstance(body, str) and '"workflow"' not in body:
        return None
    if isinstance(body, bytes) and b'"workflow"' not in body:
        return None
    try:
        ref = ctx.job.workflow
    except MalformedMessageError:  # a "workflow" that is no step (a hand-made body)
        logger.warning("ignoring a malformed workflow step in a job's message: %.200r", body)
        return None
    return None if ref is None else (ref.id, ref.step)


def retry_note(error: BaseException) -> tuple[str, str | None]:
    """What ``record_retry`` keeps of a failed run: the error and its traceback."""
    return f"{type(error).__name__}: {error}", failure_traceback(error)


def _result_ttl(ctx: JobContext | None) -> float:
    definition = ctx.definition if ctx is not None else None
    # An unknown job's (no definition) keeps the default.
    return DEFAULT_RESULT_TTL if definition is None else float(definition.result_ttl)
