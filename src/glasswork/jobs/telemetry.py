"""OpenTelemetry tracing: a PRODUCER span per enqueue, a CONSUMER span per run, one trace.

``JobService.enqueue*`` sends inside a ``send <queue>`` span and carries its context in the
message (the envelope's ``trace`` key, W3C ``traceparent``/``tracestate``; on SQS also as
message attributes). Every worker runs each job inside a ``process <job name>`` span whose
parent is that context, with the attempt, the outcome and any error; a retry, dead letter or
discard marks the span's status as an error. On Lambda, a record that carries an X-Ray
``AWSTraceHeader`` and no ``traceparent`` gets a span linked to that X-Ray trace.

Only ``opentelemetry-api`` is needed (``pip install 'glasswork[otel]'``); spans go wherever
the application's SDK sends them, and nowhere until it configures one. Tracing is on when
the API is installed, unless ``GLASSWORK_TRACING=off`` (or :func:`set_tracing`) turns it
off; without the API nothing here imports it, and enqueues and runs cost what they did.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .drivers.contract import driver_name
from .errors import ConfigurationError
from .message import MAX_MESSAGE_BYTES, JobMessage

if TYPE_CHECKING:
    from .drivers.contract import QueueDriver
    from .execution import CallNext, JobRun, Outcome

R = TypeVar("R")
logger = logging.getLogger("glasswork.jobs")

#: The instrumentation scope of Glasswork's spans.
SCOPE = "glasswork.jobs"
#: ``off``/``0``/``false``/``no`` turns tracing off; ``on``/``1``/``true``/``yes`` insists on it.
ENV_VAR = "GLASSWORK_TRACING"
_OFF = ("off", "0", "false", "no")
#: The module an SDK is configured through: once imported, an SDK may be set.
_OTEL_TRACE = "opentelemetry.trace"

# Messaging semantic conventions, and Glasswork's own attributes.
SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"
JOB_NAME = "glasswork.job.name"
JOB_ID = "glasswork.job.id"
ATTEMPT = "glasswork.job.attempt"
OUTCOME = "glasswork.job.outcome"
RETRY_DELAY = "glasswork.job.retry_delay"

_UNRESOLVED: Any = object()
_tracer: Any = _UNRESOLVED  # the producer's tracer; None while tracing is off
_provider: Any = None  # set_tracing's tracer provider (None: the global one)
# SQS message attribute names: letters, digits, "-", "_", "."; not starting with AWS./Amazon.
_ATTRIBUTE_NAME = re.compile(r"(?!(?i:aws\.|amazon\.))[A-Za-z0-9_.-]{1,256}")
_MAX_ATTRIBUTES = 10
#: Seconds between two warnings that tracing failed (a broken span processor or exporter
#: fails on every span; the failures in between are logged at debug level).
WARN_INTERVAL = 60.0
_next_warning = 0.0
_unreported = 0


# -- switching it on and off -----------------------------------------------------------------


def set_tracing(enabled: bool | None, *, tracer_provider: Any = None) -> None:
    """Turn tracing on or off for this process (None: decide again from ``GLASSWORK_TRACING``
    and whether ``opentelemetry-api`` is installed). Affects services from now on and
    workers bootstrapped from now on. ``tracer_provider``: where their spans go instead of
    the global provider."""
    global _tracer, _provider
    _tracer = _UNRESOLVED
    _provider = tracer_provider
    if enabled is not None:
        _tracer = _make_tracer(tracer_provider) if enabled else None
        if enabled and _tracer is None:
            raise ConfigurationError(
                "tracing needs opentelemetry-api: pip install 'glasswork[otel]'"
            )


def tracing_enabled() -> bool:
    """Whether enqueues and runs are traced (imports OpenTelemetry the first time it is on)."""
    return _resolve() is not None


def _resolve() -> Any:
    global _tracer
    if _tracer is _UNRESOLVED:
        setting = os.environ.get(ENV_VAR, "").strip().lower()
        if setting in _OFF:
            _tracer = None
        else:
            _tracer = _make_tracer()
            if _tracer is None and setting in ("on", "1", "true", "yes"):
                raise ConfigurationError(
                    f"{ENV_VAR}={setting} but opentelemetry-api is not installed: "
                    "pip install 'glasswork[otel]'"
                )
    return _tracer


def _make_tracer(tracer_provider: Any = None) -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer(SCOPE, _version(), tracer_provider=tracer_provider)


def _version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("glasswork")
    except metadata.PackageNotFoundError:
        return None


# -- producing -------------------------------------------------------------------------------


def traced_send(
    driver: QueueDriver,
    send: Callable[..., R],
    message: JobMessage | Sequence[JobMessage],
    *args: Any,
) -> R:
    """``send(message, *args)`` (one of ``driver``'s ``enqueue*``) inside a PRODUCER span,
    the span's context written into the message(s) first. Without tracing, just the call."""
    producing = _producing(message, driver, driver.message_limit)
    if producing is None:
        return send(message, *args)
    with producing as payload:
        return producing.sent(send(payload, *args))


async def traced_send_async(
    send: Callable[..., Awaitable[R]],
    message: JobMessage | Sequence[JobMessage],
    *args: Any,
    driver: object,
    limit: int,
) -> R:
    """:func:`traced_send` for :class:`~glasswork.jobs.AsyncJobService`: ``await
    send(message, *args)`` inside the PRODUCER span, the messages checked against ``limit``
    (the queue's) with their trace context."""
    producing = _producing(message, driver, lambda queue: limit)
    if producing is None:
        return await send(message, *args)
    with producing as payload:
        return producing.sent(await send(payload, *args))


def _producing(
    message: JobMessage | Sequence[JobMessage],
    driver: object,
    limit_of: Callable[[str], int] | None,
) -> _ProducerSpan | None:
    """The PRODUCER span of a send, or None while tracing is off (or idle: no SDK yet)."""
    tracer = _tracer if _tracer is not _UNRESOLVED else _resolve()
    if tracer is None or (_provider is None and _no_sdk()):
        return None
    batch = not isinstance(message, JobMessage)
    messages: list[JobMessage] = list(message) if batch else [message]  # type: ignore[arg-type,list-item]
    if not messages:
        return None
    return _ProducerSpan(tracer, messages, batch, _system(driver), limit_of)


class _ProducerSpan:
    """A send's PRODUCER span: entering starts it and gives what to send (the messages with
    the span's context, or as they were if tracing fails: tracing never stops a send)."""

    def __init__(
        self,
        tracer: Any,
        messages: list[JobMessage],
        batch: bool,
        system: str,
        limit_of: Callable[[str], int] | None,
    ) -> None:
        self.tracer = tracer
        self.messages = messages
        self.batch = batch
        self.system = system
        self.limit_of = limit_of
        self.span: Any = None
        self.token: Any = None

    def __enter__(self) -> Any:
        from opentelemetry import context, propagate, trace

        first, messages = self.messages[0], self.messages
        attributes: dict[str, Any] = {
            SYSTEM: self.system,
            DESTINATION: first.queue,
            OPERATION_TYPE: "send",
            OPERATION_NAME: "send",
            JOB_NAME: first.job_name,
        }
        if self.batch:
            attributes[BATCH_COUNT] = len(messages)
        else:
            attributes[JOB_ID] = first.job_id
        try:
            span = self.tracer.start_span(
                f"send {first.queue}", kind=trace.SpanKind.PRODUCER, attributes=attributes
            )
            self.token = context.attach(trace.set_span_in_context(span))
        except Exception:  # tracing must never stop a job from being sent
            logger.warning("could not start the enqueue's span; sending untraced", exc_info=True)
            return messages if self.batch else first
        self.span = span
        carrier: dict[str, str] = {}
        try:
            propagate.inject(carrier)
        except Exception:
            logger.warning("a propagator failed; sending without trace context", exc_info=True)
            carrier = {}
        if carrier:
            messages = [m.model_copy(update={"trace": carrier}) for m in messages]
            try:
                for m in messages:
                    # The trace context counts toward the size limit too: the driver's own.
                    m.encode(self.limit_of(m.queue) if self.limit_of else MAX_MESSAGE_BYTES)
            except BaseException as exc:
                self.__exit__(type(exc), exc, None)
                raise
        return messages if self.batch else messages[0]

    def sent(self, result: R) -> R:
        """Note the send's ``result`` (its message id) on the span; returns it."""
        try:
            if self.span is not None and not self.batch and self.span.is_recording():
                self.span.set_attribute(MESSAGE_ID, str(getattr(result, "message_id", "")))
        except Exception:  # the job is sent: nothing may make the enqueue look failed
            _tracing_failed("noting the message id of a sent job")
        return result

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        span, self.span = self.span, None
        if span is None:
            return
        from opentelemetry import context

        description = f"{type(exc).__name__}: {exc}" if exc is not None else ""
        _finish(span, context.detach, self.token, exc, description)


def sqs_message_attributes(message: JobMessage, limit: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """``message``'s trace context as SQS message attributes, so consumers that do not read
    the envelope see it too. Empty when there is none, or when the attributes would take
    the message past the queue's ``limit`` (the envelope still carries the context)."""
    if not message.trace:
        return {}
    attributes = {
        name: {"DataType": "String", "StringValue": value}
        for name, value in list(message.trace.items())[:_MAX_ATTRIBUTES]
        if value and isinstance(value, str) and _ATTRIBUTE_NAME.fullmatch(name)
    }
    body = message.encode()
    size = len(body.encode("utf-8")) + sum(
        len(name) + len("String") + len(a["StringValue"].encode("utf-8"))
        for name, a in attributes.items()
    )
    return attributes if size <= limit else {}


# -- consuming -------------------------------------------------------------------------------


class Tracing:
    """The tracing step: each run inside a CONSUMER span ``process <job name>``, child of
    the enqueue's span. Workers add it by themselves while tracing is on; make one yourself
    to trace with a ``tracer_provider`` other than the global one. ``system`` is the
    ``messaging.system`` attribute (``aws_sqs``, ``sqlite``, ...)."""

    __slots__ = ("_context", "_global", "_propagate", "_trace", "_tracer", "system")
    _trace: Any  # the opentelemetry.trace module; None until bound (see once_imported)

    def __init__(self, tracer_provider: Any = None, *, system: str = "aws_sqs") -> None:
        self._global = tracer_provider is None
        self.system = system
        self._bind(tracer_provider)

    @classmethod
    def once_imported(cls, system: str = "aws_sqs") -> Tracing:
        """The step on the global provider, idle (and OpenTelemetry not imported by it) until
        something else imports OpenTelemetry: before that no SDK can be configured and every
        span would be a no-op, so a worker's cold start does not pay for the import."""
        step = cls.__new__(cls)
        step._global = True
        step.system = system
        step._trace = None
        return step

    def _bind(self, tracer_provider: Any) -> None:
        tracer = _make_tracer(tracer_provider)
        if tracer is None:
            raise ConfigurationError(
                "tracing needs opentelemetry-api: pip install 'glasswork[otel]'"
            )
        from opentelemetry import context, propagate, trace

        self._tracer = tracer
        self._context = context
        self._propagate = propagate
        self._trace = trace

    def is_active(self) -> bool:
        """Whether runs are traced now: not while the global provider is still
        OpenTelemetry's placeholder (no SDK configured yet), when every span would be a
        no-op; the executor then leaves this step out of the run."""
        if not self._global:
            return True
        trace = self._trace
        if trace is None:  # made by once_imported()
            if _OTEL_TRACE not in sys.modules:
                return False
            self._bind(None)
            trace = self._trace
        # The API's own global, read directly: get_tracer_provider() spends a microsecond
        # looking up an environment variable on every call while nothing is set.
        if getattr(trace, "_TRACER_PROVIDER", False) is None:
            return False
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome:
        if not self.is_active():
            return await call_next()
        try:
            span = self._start(run)
            token = self._context.attach(self._trace.set_span_in_context(span))
        except Exception:  # a broken propagator, say: the job runs untraced, not at all
            logger.warning("could not start the span of a run; running untraced", exc_info=True)
            return await call_next()
        try:
            outcome = await call_next()
        except BaseException as exc:  # a worker cancelling the run at shutdown
            _finish(
                span, self._context.detach, token, exc, f"run interrupted: {type(exc).__name__}"
            )
            raise
        try:
            if span.is_recording():
                _record_outcome(span, outcome)
        except Exception:
            _tracing_failed("recording a run's outcome on its span")
        _finish(span, self._context.detach, token)
        return outcome

    def _start(self, run: JobRun) -> Any:
        message = run.message
        carrier = message.trace
        parent = self._propagate.extract(carrier) if carrier else None
        links = None
        if not carrier or "traceparent" not in carrier:
            header = run.ctx.attributes.get("AWSTraceHeader")
            link = xray_link(header) if isinstance(header, str) else None
            links = [link] if link is not None else None
        return self._tracer.start_span(
            f"process {message.job_name}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                SYSTEM: self.system,
                DESTINATION: message.queue,
                OPERATION_TYPE: "process",
                OPERATION_NAME: "process",
                JOB_NAME: message.job_name,
                JOB_ID: message.job_id,
                ATTEMPT: run.attempt,
            },
            links=links,
        )


def _no_sdk() -> bool:
    """Whether no SDK is configured yet (the global provider is still OpenTelemetry's
    proxy): every span would be a no-op, so none is made. Checked per call, since an
    application may configure its SDK after building services and workers."""
    from opentelemetry import trace

    # The API's own global, read directly: get_tracer_provider() spends a microsecond
    # looking up an environment variable on every call while nothing is set. (Making our
    # tracer already called it once, which loads a provider named in the environment.)
    if getattr(trace, "_TRACER_PROVIDER", False) is None:
        return True
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def consumer_step(driver: QueueDriver | None) -> Tracing | None:
    """The tracing step for a worker on ``driver``, or None while tracing is off."""
    if _not_imported_yet():
        return Tracing.once_imported(_system(driver))
    if _resolve() is None:
        return None
    return Tracing(_provider, system=_system(driver))


def _not_imported_yet() -> bool:
    """Whether tracing is on by default (neither :func:`set_tracing` nor ``GLASSWORK_TRACING``
    decided it, no provider of its own), and OpenTelemetry is installed but nothing has
    imported it, nor names a tracer provider in the environment: no SDK can be configured
    yet, so a worker's step may wait for the import (:meth:`Tracing.once_imported`)."""
    return (
        _tracer is _UNRESOLVED
        and _provider is None
        and _OTEL_TRACE not in sys.modules
        and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ
        and os.environ.get(ENV_VAR, "").strip().lower() not in _OFF
        and importlib.util.find_spec("opentelemetry") is not None
    )


def _record_outcome(span: Any, outcome: Outcome) -> None:
    span.set_attribute(OUTCOME, outcome.kind)
    error: BaseException | None = getattr(outcome, "error", None)
    if error is None or outcome.kind == "cancelled":  # a cancelled run did what was asked
        return
    delay = getattr(outcome, "delay", None)
    if delay is not None:
        span.set_attribute(RETRY_DELAY, float(delay))
    reason = getattr(outcome, "reason", None) or f"{type(error).__name__}: {error}"
    _mark_error(span, error, f"{outcome.kind}: {reason}")


def _finish(
    span: Any,
    detach: Callable[[Any], None],
    token: Any,
    error: BaseException | None = None,
    description: str = "",
) -> None:
    """Mark ``span`` with ``error`` (if any), detach its context and end it. Never raises:
    the SDK lets a span processor's ``on_end`` raise through ``span.end()``, and a broken
    processor or exporter must not change what happened to a job (logged instead)."""
    if error is not None:
        try:
            _mark_error(span, error, description)
        except Exception:
            _tracing_failed("recording an error on a span")
    try:
        detach(token)
    except Exception:
        _tracing_failed("detaching a span's context")
    try:
        span.end()
    except Exception:
        _tracing_failed("ending a span (a span processor's on_end raised)")


def _tracing_failed(what: str) -> None:
    """Log that tracing failed at ``what``, with the traceback: a warning at most once per
    :data:`WARN_INTERVAL` (saying how many failed since), debug level in between."""
    global _next_warning, _unreported
    now = time.monotonic()
    if now < _next_warning:
        _unreported += 1
        logger.debug("tracing failed %s", what, exc_info=True)
        return
    _next_warning = now + WARN_INTERVAL
    since = f"; {_unreported} more tracing failures since the last warning" if _unreported else ""
    _unreported = 0
    logger.warning(
        "tracing failed %s; the job's outcome is unchanged (next warning in %gs at the earliest)%s",
        what,
        WARN_INTERVAL,
        since,
        exc_info=True,
    )


def _mark_error(span: Any, error: BaseException, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    if span.is_recording():
        span.set_attribute(ERROR_TYPE, type(error).__qualname__)
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, description))


def _system(driver: object) -> str:
    """``messaging.system``: SQS by its semantic-conventions name, other drivers by theirs."""
    name = driver_name(driver)
    return "aws_sqs" if name in (None, "sqs") else str(name)


def parse_xray_header(header: str) -> tuple[int, int, bool] | None:
    """Trace id, parent span id and sampled flag of an X-Ray trace header
    (``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1``);
    None when it is not one."""
    fields: Mapping[str, str] = dict(
        part.strip().split("=", 1) for part in header.split(";") if "=" in part
    )
    root = fields.get("Root", "").split("-")
    parent = fields.get("Parent", "")
    if len(root) != 3 or root[0] != "1" or len(root[1]) != 8 or len(root[2]) != 24:
        return None
    if len(parent) != 16:
        return None
    try:
        trace_id, span_id = int(root[1] + root[2], 16), int(parent, 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, fields.get("Sampled") == "1"


def xray_link(header: str) -> Any:
    """An OpenTelemetry link to the X-Ray trace ``header`` names (None when malformed)."""
    parsed = parse_xray_header(header)
    if parsed is None:
        return None
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    trace_id, span_id, sampled = parsed
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return Link(context, {"glasswork.link.source": "AWSTraceHeader"})
