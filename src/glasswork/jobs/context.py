"""What a handler gets besides its payload: :class:`JobContext` and its :class:`JobLogger`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .errors import JobCancelledError
from .message import JobMessage

if TYPE_CHECKING:
    from ..services import Services

#: The ``payload`` of ``JobContext._fields`` before the payload is validated.
UNVALIDATED: Any = object()

#: The ``attributes`` of a delivery the queue says nothing about.
NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


# Attributes of every LogRecord: an ``extra`` key with one of these names makes logging raise.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg,unused-ignore]
    """``ctx.logger``: a standard logger that puts the job name and id on every line, in the
    text and as ``extra`` fields (``job_name``, ``job_id``, ``attempt``) for JSON formatters.
    A record's file, line and function are those of the code that called it.

    It also takes the seeds' structured style, a mapping first and the message second:
    ``ctx.logger.info({"user_id": uid}, "Welcome email sent")`` logs "Welcome email sent"
    with ``user_id`` as an ``extra`` field (and ``user_id=...`` at the end of the text).
    """

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        # Every call reaches the logger through here: one frame more to skip, so the record's
        # file, line and function (and Powertools' `location`) are the caller's.
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        if isinstance(msg, Mapping) and args and isinstance(args[0], str):
            fields = {_field_name(k): v for k, v in msg.items()}
            given = kwargs.get("extra")
            kwargs["extra"] = {**fields, **given} if given else fields
            shown = " ".join(f"{k}={v!r}" for k, v in msg.items())
            msg, args = f"{args[0]} {shown}" if shown else args[0], args[1:]
        super().log(level, msg, *args, **kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        given = kwargs.get("extra")
        kwargs["extra"] = {**extra, **given} if given else extra
        return f"[{extra['job_name']} {extra['job_id']}] {msg}", kwargs


def _field_name(key: object) -> str:
    name = str(key)
    return f"{name}_" if name in _RECORD_ATTRIBUTES else name


class JobContext:
    """What a handler gets besides its payload.

    ``services`` (the module's providers; ``services.get(UserService)`` is typed),
    ``logger``, ``job`` (the :class:`JobMessage`), ``attempt`` (1 on the first run),
    ``max_attempts`` (None when retries are off), ``lambda_context`` (the AWS Lambda context
    when run by the Lambda worker), ``attributes`` (what the queue says of this delivery,
    e.g. SQS's ``SentTimestamp`` and ``AWSTraceHeader``; empty when it says nothing) and
    ``definition`` (the job's :class:`~glasswork.jobs.JobDefinition`; None for a message
    naming a job the worker does not know; typed loosely here, since definitions name this
    class in their handlers' type and the two modules must not import each other).

    A long-running job can report :meth:`progress` and look at :attr:`cancelled` (or call
    :meth:`raise_if_cancelled`) to stop when ``JobService.cancel`` asks it to.

    Workers get contexts from :meth:`Executor.prepare <glasswork.jobs.execution.Executor.prepare>`,
    which leaves ``job`` and ``logger`` to be made on first read: most handlers never touch
    them, and a run costs less without. The same goes for the cancel flag and the progress
    (unset slots, read as "not cancelled" and "no progress").
    """

    __slots__ = (
        "_body",
        "_cancel",
        "_fields",
        "_job",
        "_log",
        "_logger",
        "_progress",
        "attempt",
        "attributes",
        "definition",
        "lambda_context",
        "max_attempts",
        "services",
    )
    _body: str | bytes | None
    _job: JobMessage
    _logger: JobLogger
    _fields: dict[str, Any]  # job_name, job_id, queue, payload (validated, or UNVALIDATED)
    _log: logging.Logger
    _cancel: str | None  # why the job was asked to stop; None (or unset): it was not
    _progress: tuple[float, str | None] | None  # the latest ctx.progress(); unset: none

    def __init__(
        self,
        services: Services,
        logger: JobLogger,
        job: JobMessage,
        attempt: int = 1,
        max_attempts: int | None = None,
        lambda_context: Any = None,
        definition: Any = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.services = services
        self._logger = logger
        self._job = job
        self._log = getattr(logger, "logger", logger)  # type: ignore[arg-type]  # a Logger works too
        self._body = None
        self._fields = fields_of(job)
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.lambda_context = lambda_context
        self.definition = definition
        self.attributes = attributes or NO_ATTRIBUTES
        self._cancel = None
        self._progress = None

    @property
    def job(self) -> JobMessage:
        """The job's :class:`JobMessage`."""
        try:
            return self._job
        except AttributeError:
            assert self._body is not None
            job = self._job = JobMessage.from_json(self._body)
            return job

    @property
    def logger(self) -> JobLogger:
        """A logger putting the job name and id on every line."""
        try:
            return self._logger
        except AttributeError:
            fields = self._fields
            extra = {
                "job_name": fields["job_name"],
                "job_id": fields["job_id"],
                "attempt": self.attempt,
            }
            logger = self._logger = JobLogger(self._log, extra)
            return logger

    # -- cancellation and progress --------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """Whether the job was asked to stop (``JobService.cancel``). A long sync handler
        looks at it between steps; an ``async def`` one is also cancelled at its next await."""
        try:
            return self._cancel is not None
        except AttributeError:
            return False

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~glasswork.jobs.JobCancelledError` if the job was asked to stop: the
        job then ends ``cancelled`` (not retried, not dead-lettered)."""
        try:
            reason = self._cancel
        except AttributeError:
            return
        if reason is not None:
            raise JobCancelledError(reason)

    def request_cancel(self, reason: str = "cancelled while running") -> None:
        """Ask the job to stop (what a worker calls when its driver says the job was
        cancelled): :attr:`cancelled` turns true. Safe from any thread."""
        self._cancel = reason

    @property
    def cancel_reason(self) -> str | None:
        """Why the job was asked to stop (None: it was not)."""
        try:
            return self._cancel
        except AttributeError:
            return None

    def progress(self, fraction: float, note: str | None = None) -> None:
        """Report how far the job is, ``fraction`` from 0.0 to 1.0, with an optional
        ``note``. Only the latest report is kept, here; the worker hands it to the
        driver's status store about once a second (and the last one when the job ends), so
        calling this often costs little. Safe from any thread."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"progress must be a number from 0 to 1, got {fraction!r}")
        if not 0.0 <= fraction <= 1.0:  # NaN fails this too
            raise ValueError(f"progress must be from 0 to 1, got {fraction!r}")
        if note is not None and not isinstance(note, str):
            raise TypeError(f"a progress note must be a string or None, got {note!r}")
        self._progress = (float(fraction), note)  # one assignment: readers see both or neither

    @property
    def last_progress(self) -> tuple[float, str | None] | None:
        """The latest :meth:`progress` report, ``(fraction, note)``, or None."""
        try:
            return self._progress
        except AttributeError:
            return None

    def __repr__(self) -> str:
        job = self.job
        return f"<JobContext {job.job_name} {job.job_id} attempt {self.attempt}>"


def fields_of(job: JobMessage | None) -> dict[str, Any]:
    """``JobContext._fields`` for a message whose payload is not validated yet."""
    if job is None:  # a context made by hand, say in a test, without a message
        return {"job_name": None, "job_id": None, "queue": None, "payload": UNVALIDATED}
    return {
        "job_name": job.job_name,
        "job_id": job.job_id,
        "queue": job.queue,
        "payload": UNVALIDATED,
    }
