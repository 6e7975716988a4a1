"""How a run's end is handed to a driver's status store
(:class:`~glasswork.jobs.drivers.contract.StatusStore`): :func:`final_status` for a job
that ended (done, failed, dead, cancelled), :func:`retry_note` for one to be retried.

Shared by the workers that keep statuses; it imports no worker, so the Lambda handler
pays only for this module.
"""

from __future__ import annotations

from .context import JobContext
from .drivers.records import DEFAULT_RESULT_TTL, FinalStatus
from .errors import failure_traceback
from .outcomes import Cancelled, DeadLetter, Discard, Done, Outcome


def final_status(outcome: Outcome, ctx: JobContext | None) -> FinalStatus:
    """How a job that ended with ``outcome`` (Done, Discard, Cancelled or DeadLetter) is
    recorded: its result (none kept when its job's ``result_ttl`` is 0), error, traceback,
    last progress, and how long to keep it."""
    keep_for = _result_ttl(ctx)
    progress = ctx.last_progress if ctx is not None else None
    fraction, note = progress if progress is not None else (None, None)
    if isinstance(outcome, Done):
        if keep_for <= 0:  # nothing is kept: do not even make the result
            return FinalStatus("done", keep_for=keep_for)
        return FinalStatus(
            "done",
            result=outcome.result,
            error=outcome.result_error,
            progress=fraction,
            progress_note=note,
            keep_for=keep_for,
        )
    if isinstance(outcome, Cancelled):
        return FinalStatus(
            "cancelled",
            error=outcome.reason,
            progress=fraction,
            progress_note=note,
            keep_for=keep_for,
        )
    assert isinstance(outcome, DeadLetter | Discard)
    return FinalStatus(
        "dead" if isinstance(outcome, DeadLetter) else "failed",
        error=outcome.reason,
        traceback=failure_traceback(outcome.error),
        progress=fraction,
        progress_note=note,
        keep_for=keep_for,
    )


def retry_note(error: BaseException) -> tuple[str, str | None]:
    """What ``record_retry`` keeps of a failed run: the error and its traceback."""
    return f"{type(error).__name__}: {error}", failure_traceback(error)


def _result_ttl(ctx: JobContext | None) -> float:
    definition = ctx.definition if ctx is not None else None
    # An unknown job's (no definition) keeps the default.
    return DEFAULT_RESULT_TTL if definition is None else float(definition.result_ttl)
