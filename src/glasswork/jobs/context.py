"""What a handler gets besides its payload: :class:`JobContext` and its :class:`JobLogger`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

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

    Workers get contexts from :meth:`Executor.prepare <glasswork.jobs.execution.Executor.prepare>`,
    which leaves ``job`` and ``logger`` to be made on first read: most handlers never touch
    them, and a run costs less without.
    """

    __slots__ = (
        "_body",
        "_fields",
        "_job",
        "_log",
        "_logger",
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
