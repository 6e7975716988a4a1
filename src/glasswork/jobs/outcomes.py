"""What :meth:`Executor.execute <glasswork.jobs.execution.Executor.execute>` decides for one run.

* :class:`Done`: the handler returned.
* :class:`Retry`: a transient failure below ``retry.max_attempts``; run again after ``delay``.
* :class:`DeadLetter`: a permanent failure, retries used up, an invalid payload, an unknown
  job or a malformed body; keep the message in the dead letter.
* :class:`Discard`: a failure of a job defined with ``retry=False``.

Outcomes are values: compare them with ``==``, and treat them as read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .errors import failure_traceback

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
    """The handler returned: acknowledge the message."""

    __slots__ = ()
    kind: ClassVar[str] = "done"


def done_for(ctx: JobContext) -> Done:
    """``Done.of_context(ctx)``, in fewer steps: one of these is made per finished job."""
    done = _new(Done)
    done._message = None
    done._ctx = ctx
    return done


_new = object.__new__


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
