"""What a handler gets besides its payload: :class:`JobContext` and its :class:`JobLogger`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..services import Services
    from .message import JobMessage

# Attributes of every LogRecord: an ``extra`` key with one of these names makes logging raise.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg,unused-ignore]
    """``ctx.logger``: a standard logger that puts the job name and id on every line, in the
    text and as ``extra`` fields (``job_name``, ``job_id``, ``attempt``) for JSON formatters.

    It also takes the seeds' structured style, a mapping first and the message second:
    ``ctx.logger.info({"user_id": uid}, "Welcome email sent")`` logs "Welcome email sent"
    with ``user_id`` as an ``extra`` field (and ``user_id=...`` at the end of the text).
    """

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
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


#: The ``attributes`` of a delivery the queue says nothing about.
NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


@dataclass(slots=True)
class JobContext:
    """What a handler gets besides its payload.

    ``services`` (the module's providers; ``services.get(UserService)`` is typed),
    ``logger``, ``job`` (the :class:`JobMessage`), ``attempt`` (1 on the first run),
    ``max_attempts`` (None when retries are off), ``lambda_context`` (the AWS Lambda
    context when run by the Lambda worker) and ``attributes`` (what the queue says of this
    delivery, e.g. SQS's ``SentTimestamp`` and ``AWSTraceHeader``; empty when it says nothing).
    """

    services: Services
    logger: JobLogger
    job: JobMessage
    attempt: int = 1
    max_attempts: int | None = None
    lambda_context: Any = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: NO_ATTRIBUTES)
