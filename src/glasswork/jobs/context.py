"""What a handler gets besides its payload: :class:`JobContext` and its :class:`JobLogger`."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from .message import JobMessage

if TYPE_CHECKING:
    from ..modules import Services


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg,unused-ignore]
    """``ctx.logger``: a standard logger that puts the job name and id on every line, in the
    text and as ``extra`` fields (``job_name``, ``job_id``, ``attempt``) for JSON formatters."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        given = kwargs.get("extra")
        kwargs["extra"] = {**extra, **given} if given else extra
        return f"[{extra['job_name']} {extra['job_id']}] {msg}", kwargs


class JobContext:
    """What a handler gets besides its payload.

    ``services`` (the module's providers), ``logger``, ``job`` (the :class:`JobMessage`),
    ``attempt`` (1 on the first run), ``max_attempts`` (None when retries are off) and
    ``lambda_context`` (the AWS Lambda context when run by the Lambda worker).

    Workers make contexts with :meth:`for_run`, which builds ``job`` and ``logger`` only
    when first read: most handlers never touch them, and a run costs less without.
    """

    __slots__ = (
        "_body",
        "_job",
        "_job_id",
        "_job_name",
        "_log",
        "_logger",
        "attempt",
        "lambda_context",
        "max_attempts",
        "services",
    )
    _body: str | bytes | None
    _job_id: str
    _job_name: str
    _log: logging.Logger

    def __init__(
        self,
        services: Services,
        logger: JobLogger,
        job: JobMessage,
        attempt: int = 1,
        max_attempts: int | None = None,
        lambda_context: Any = None,
    ) -> None:
        self.services = services
        self._logger: JobLogger | None = logger
        self._job: JobMessage | None = job
        self._log = logger.logger
        self._body = None
        self._job_name = job.job_name
        self._job_id = job.job_id
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.lambda_context = lambda_context

    @classmethod
    def for_run(
        cls,
        services: Services,
        log: logging.Logger,
        job: JobMessage | None,
        body: str | bytes | None,
        job_name: str,
        job_id: str,
        attempt: int,
        max_attempts: int | None,
        lambda_context: Any,
    ) -> JobContext:
        """The context of one run of ``job``, or of the message ``body`` (a valid envelope
        naming ``job_name`` / ``job_id``), parsed into ``job`` on first read; ``logger``
        writes to ``log``."""
        ctx = cls.__new__(cls)
        ctx.services = services
        ctx._logger = None
        ctx._job = job
        ctx._log = log
        ctx._body = body
        ctx._job_name = job_name
        ctx._job_id = job_id
        ctx.attempt = attempt
        ctx.max_attempts = max_attempts
        ctx.lambda_context = lambda_context
        return ctx

    @property
    def job(self) -> JobMessage:
        """The job's :class:`JobMessage`."""
        job = self._job
        if job is None:
            assert self._body is not None
            job = self._job = JobMessage.from_json(self._body)
        return job

    @property
    def logger(self) -> JobLogger:
        """A logger putting the job name and id on every line."""
        logger = self._logger
        if logger is None:
            extra = {"job_name": self._job_name, "job_id": self._job_id, "attempt": self.attempt}
            logger = self._logger = JobLogger(self._log, extra)
        return logger

    def __repr__(self) -> str:
        job = self.job
        return f"<JobContext {job.job_name} {job.job_id} attempt {self.attempt}>"
