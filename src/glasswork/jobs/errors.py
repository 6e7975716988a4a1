"""The error classes of the jobs module.

Errors raised by a handler decide what happens to the job:

* any exception (``BaseException`` included: a handler's ``SystemExit`` fails that job,
  not the worker), :class:`TransientJobError` or :class:`JobTimeoutError`: retried up to
  ``retry.max_attempts``, then dead-lettered;
* :class:`PermanentJobError` (and its subclasses :class:`InvalidJobPayloadError`,
  :class:`UnknownJobError`, :class:`MalformedMessageError`): dead-lettered at once;
* :class:`JobCancelledError` (``ctx.raise_if_cancelled()``): the job ends ``cancelled``,
  neither retried nor dead-lettered.

A failure keeps its traceback unless it is deliberate (:func:`failure_traceback`).

Errors raised at enqueue time (:class:`InvalidJobPayloadError`, :class:`PayloadTooLargeError`,
:class:`DuplicateJobError`) mean nothing was sent.
"""

from __future__ import annotations

import traceback
from typing import Any


class GlassworkError(Exception):
    """Root of every error this library raises on purpose."""


class ConfigurationError(GlassworkError, ValueError):
    """The library was set up wrongly: a missing setting, a duplicate job name, a bad provider."""


class JobError(GlassworkError):
    """Base of the errors a job handler raises to choose its outcome."""


class TransientJobError(JobError):
    """A retriable failure: the job runs again until ``retry.max_attempts``.

    ``retry_after`` (seconds) overrides the job's backoff for this retry, e.g. from a
    ``Retry-After`` header.
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobTimeoutError(TransientJobError):
    """A run took longer than its job's ``timeout``: a transient failure, retried up to
    ``retry.max_attempts`` and then dead-lettered."""

    def __init__(self, job_name: str, seconds: float) -> None:
        super().__init__(f"job {job_name!r} did not finish within its {seconds:g}s timeout")
        self.job_name = job_name
        self.seconds = seconds


class PermanentJobError(JobError):
    """The job can never succeed: it goes to the dead letter at once, without retries."""


class InvalidJobPayloadError(PermanentJobError, ValueError):
    """A payload does not match its job's schema.

    At enqueue time nothing is sent; at run time the job is dead-lettered. ``errors`` holds
    pydantic's error details.
    """

    def __init__(self, job_name: str, errors: list[dict[str, Any]], summary: str = "") -> None:
        self.job_name = job_name
        self.errors = errors
        detail = summary or "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or '<payload>'}: {e.get('msg')}"
            for e in errors
        )
        super().__init__(f"invalid payload for job {job_name!r}: {detail}")


class UnknownJobError(PermanentJobError):
    """A message names a job that this worker does not have registered."""

    def __init__(self, job_name: str, known: list[str]) -> None:
        self.job_name = job_name
        shown = ", ".join(sorted(known)[:20]) or "none"
        super().__init__(f"unknown job {job_name!r}; registered jobs: {shown}")


class MalformedMessageError(PermanentJobError):
    """A message body is not a valid Glasswork job envelope."""


class JobCancelledError(JobError):
    """The job was asked to stop (``JobService.cancel``): raised by
    ``ctx.raise_if_cancelled()``, or by a handler itself. The job ends ``cancelled``: it is
    neither retried nor dead-lettered, and ``on_job_cancelled`` is called instead of
    ``on_job_failed``."""

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


class EnqueueError(GlassworkError):
    """Base of the errors that stop an enqueue: nothing was sent."""


class PayloadTooLargeError(EnqueueError):
    """The serialized message is over the queue's size limit (256 KiB for SQS)."""

    def __init__(self, job_name: str, size: int, limit: int) -> None:
        self.job_name = job_name
        self.size = size
        self.limit = limit
        super().__init__(
            f"message for job {job_name!r} is {size:,} bytes, over the {limit:,}-byte limit; "
            "store large data elsewhere (e.g. S3) and enqueue a reference to it"
        )


class DuplicateJobError(EnqueueError):
    """A pending job already holds this job's unique key."""

    def __init__(self, job_name: str, unique_key: str, existing_job_id: str | None = None) -> None:
        self.job_name = job_name
        self.unique_key = unique_key
        self.existing_job_id = existing_job_id
        held = f" (held by job {existing_job_id})" if existing_job_id else ""
        super().__init__(
            f"job {job_name!r} with unique key {unique_key!r} is already pending{held}"
        )


class JobInProgressError(TransientJobError):
    """An idempotent job's key is held by a run still in progress elsewhere: this delivery
    is retried later rather than run twice at once."""

    def __init__(self, job_name: str, key: str, seconds_left: float) -> None:
        super().__init__(
            f"job {job_name!r} with idempotency key {key!r} is already running elsewhere "
            f"(its claim lapses in {seconds_left:.1f}s); trying again later"
        )
        self.job_name = job_name
        self.key = key
        self.seconds_left = seconds_left


class BatchRetryError(GlassworkError):
    """Raised by the Lambda worker so that Lambda returns a whole SQS batch to its queue:
    every record of it is to be retried, or some are and a partial batch response cannot
    carry them (``report_batch_item_failures=False``, an event source mapping without
    ``ReportBatchItemFailures``, a record without a ``messageId``). Finished records were
    deleted first. ``retried`` lists the message ids to retry."""

    def __init__(self, message: str, retried: list[str]) -> None:
        super().__init__(message)
        self.retried = retried


class DeadLetterUnavailableError(GlassworkError):
    """A job failed for good and its dead letter could not be kept (no driver, no dead
    letter for its queue, a failed send). Raised by the Lambda worker for EventBridge events,
    so that Lambda's asynchronous retries and on-failure destination keep the event."""


# -- following a job (JobService.status / wait / cancel, priorities) -------------------------


class JobFailedError(GlassworkError):
    """A job waited for (``JobService.wait``, ``handle.wait()``) ended without a result:
    ``state`` is ``failed`` (discarded), ``dead`` (dead-lettered) or ``cancelled``; ``error``
    and ``traceback`` are those its status kept (None when none was kept)."""

    def __init__(
        self, job_id: str, state: str, error: str | None = None, traceback: str | None = None
    ) -> None:
        self.job_id = job_id
        self.state = state
        self.error = error
        self.traceback = traceback
        why = f": {error}" if error else ""
        super().__init__(f"job {job_id} ended {state}{why}")


class JobNotFoundError(GlassworkError, LookupError):
    """The driver has no status for a job waited for: it was never enqueued there, or it
    ended longer ago than its ``result_ttl`` (``result_ttl=0`` keeps none), or it was enqueued
    in a transaction not committed yet."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(
            f"no status for job {job_id}: never enqueued on this driver, or ended longer ago "
            "than its result_ttl (0 keeps none)"
        )


class StatusUnavailableError(ConfigurationError):
    """The driver keeps no job statuses, so a job's status, result or cancellation cannot be
    asked of it (the message says how to enable them, where the driver can)."""


class PriorityUnsupportedError(ConfigurationError):
    """A non-zero priority was asked of a driver that does not claim jobs by priority;
    nothing was sent."""


# -- the traceback a failure keeps ----------------------------------------------------------
#
# The traceback of a job's failure: kept with its dead letter, logged with its first failure.
#
# One rule for both: a :class:`~glasswork.jobs.TransientJobError` or
# :class:`~glasswork.jobs.PermanentJobError` raised on purpose (chaining no other error) says
# all in its message, so it gets no traceback; every other failure (an unexpected exception,
# or a job error raised ``from`` one, or inside an ``except`` block) gets the whole formatted
# traceback, chained errors included, bounded to :data:`MAX_TRACEBACK_CHARS` with the end (where
# it was raised) kept.

#: The longest traceback kept with a dead letter, in characters (the end is kept).
MAX_TRACEBACK_CHARS = 8192
_CUT = "[... {} characters cut ...]\n"


def is_deliberate(error: BaseException) -> bool:
    """Whether ``error`` is a job error raised on purpose: a :class:`TransientJobError` or
    :class:`PermanentJobError` (their subclasses too: an invalid payload, an unknown job, a
    timeout) with no ``__cause__`` and no shown ``__context__``."""
    return (
        isinstance(error, TransientJobError | PermanentJobError)
        and error.__cause__ is None
        and (error.__context__ is None or error.__suppress_context__)
    )


def failure_traceback(error: BaseException) -> str | None:
    """The formatted traceback of ``error`` (bounded, see :func:`bounded`), or None for a
    deliberate job error (:func:`is_deliberate`)."""
    if is_deliberate(error):
        return None
    return bounded("".join(traceback.format_exception(error)))


def bounded(text: str, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, keeping its end (the innermost frames
    and the error), marked where it was cut."""
    if len(text) <= limit:
        return text
    keep = limit - len(_CUT.format(len(text)))
    return _CUT.format(len(text) - keep) + text[len(text) - keep :]
