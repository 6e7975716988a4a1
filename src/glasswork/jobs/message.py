"""JobMessage: the versioned JSON envelope every driver carries.

Wire format, version 1 (UTF-8 JSON object; keys in camelCase so producers in any language,
including the TypeScript Glasswork, can write it)::

    {
      "version": 1,                          # required, integer, this format
      "jobName": "send-welcome-email",       # required, the registered job name
      "jobId": "5f0c6c1e-...",               # required, unique per enqueue (dedupe key)
      "payload": {"userId": "123"},          # any JSON value; absent means null
      "queue": "emails",                     # optional, default "default"
      "enqueuedAt": "2026-11-25T10:00:00Z",  # optional, ISO 8601 with offset
      "uniqueKey": "123",                    # optional, the job's unique key
      "groupId": "user-123",                 # optional, FIFO message group
      "concurrencyKey": "tenant-7",          # optional, the job's concurrency key
      "debounce": 30.0,                      # optional, enqueued with debounce= (seconds)
      "fairnessKey": "tenant-7",             # optional, the tenant claims are fair across
      "workflow": {"id": "9a1f...", "step": 2},  # optional, a workflow step (workflows/)
      "trace": {"traceparent": "00-...-01"}  # optional, W3C trace context of the enqueue
    }

Unknown keys are ignored, so later minor additions stay readable by older workers. A ``trace``
of the wrong type (not an object of strings) is ignored, entry by entry: tracing never stops
a job.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, ValidationError
from pydantic_core import core_schema

from .errors import MalformedMessageError, PayloadTooLargeError

ENVELOPE_VERSION = 1
#: The default size limit of a message: SQS's long-standing 256 KiB, so jobs move between
#: drivers freely. Drivers may allow more (``QueueDriver.message_limit``): SQS queues take
#: up to their ``MaximumMessageSize``, 1 MiB (1,048,576 bytes) at most.
MAX_MESSAGE_BYTES = 262_144

logger = logging.getLogger("glasswork.jobs")


def _salvage_trace(value: Any) -> dict[str, str] | None:
    """A ``trace`` of the wrong JSON type: only its text entries are kept (none: no
    context), since a broken trace context starts a new trace and never stops a job."""
    kept = {}
    if isinstance(value, dict):
        kept = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    logger.debug("ignoring the malformed parts of a trace context: %.200r", value)
    return kept or None


class _Salvaged:
    """``Annotated[T, _Salvaged()]``: a value ``T`` refuses is passed through
    :func:`_salvage_trace` instead. Left to right, so a well-formed value never calls
    into Python (this runs for every message a worker reads)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.union_schema(
            [handler(source), core_schema.no_info_plain_validator_function(_salvage_trace)],
            mode="left_to_right",
        )


class WorkflowRef(BaseModel):
    """The workflow a job is a step of (:mod:`glasswork.jobs.workflows`): its id, and the
    step's index (a chain's position, a group member's, or the callback's after them)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    step: int = Field(ge=0)


class JobMessage(BaseModel):
    """One job on the wire: job name, job id, payload and metadata.

    ``payload`` is the JSON form of the validated payload (a dict for a model schema).
    """

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")
    # The checked wire text, kept so the service's size check and the driver's send
    # serialize once; the model is frozen, so it cannot go stale. A plain slot rather than a
    # pydantic PrivateAttr: private attributes cost an init hook on every parse and a
    # ``__getattr__`` on every read, which was a third of the Lambda path's time per message.
    # Copies and pickles simply serialize again.
    __slots__ = ("_body",)

    version: int = ENVELOPE_VERSION
    job_name: str = Field(alias="jobName", min_length=1)
    job_id: str = Field(alias="jobId", min_length=1)
    payload: Any = None
    queue: str = "default"
    enqueued_at: datetime | None = Field(default=None, alias="enqueuedAt")
    unique_key: str | None = Field(default=None, alias="uniqueKey")
    group_id: str | None = Field(default=None, alias="groupId")
    #: What the job's ``concurrency_limit`` is counted by (None, left out of the body: the
    #: job as a whole).
    concurrency_key: str | None = Field(default=None, alias="concurrencyKey")
    #: The window of an enqueue made with ``debounce=`` (seconds; None, left out of the
    #: body: an ordinary enqueue). Only a job enqueued with it may be superseded by a later
    #: debounced enqueue of its unique key (see :mod:`glasswork.jobs.debounce`).
    debounce: float | None = None
    #: The tenant its queue's jobs are claimed round-robin by (None, left out of the body:
    #: the group of jobs without one); on SQS, the ``MessageGroupId`` of standard queues.
    fairness_key: str | None = Field(default=None, alias="fairnessKey")
    #: Higher runs first within a queue, on drivers that order by it; None (left out of the
    #: body) is 0.
    priority: int | None = None
    #: The enqueue's trace context (W3C ``traceparent``/``tracestate``), set by tracing. A
    #: value of the wrong JSON type is ignored (its text entries kept): the job still runs.
    trace: Annotated[dict[str, str] | None, _Salvaged()] = None
    #: The workflow this job is a step of (None, left out of the body: none).
    workflow: WorkflowRef | None = None

    @classmethod
    def create(
        cls,
        job_name: str,
        payload: Any,
        *,
        queue: str = "default",
        unique_key: str | None = None,
        group_id: str | None = None,
        job_id: str | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
        debounce: float | None = None,
        fairness_key: str | None = None,
        workflow: WorkflowRef | None = None,
    ) -> JobMessage:
        """Build a new message stamped with a fresh job id and the current time."""
        # What model_construct does (no re-validating of values this library produced
        # itself), minus its lookups of every field's aliases: half of the time an enqueue
        # spends building its message, which a batch enqueue pays per job.
        message = cls.__new__(cls)
        fields = _DEFAULTS.copy()  # every field, in the model's order
        fields.update(
            version=ENVELOPE_VERSION,
            job_name=job_name,
            job_id=job_id or new_job_id(),
            payload=payload,
            queue=queue,
            enqueued_at=datetime.now(UTC),
            unique_key=unique_key,
            group_id=group_id,
            priority=priority or None,
            concurrency_key=concurrency_key,
            debounce=debounce,
            fairness_key=fairness_key,
        )
        if workflow is not None:
            fields["workflow"] = workflow
        _set(message, "__dict__", fields)
        _set(message, "__pydantic_fields_set__", set(_CREATED))
        _set(message, "__pydantic_extra__", None)
        _set(message, "__pydantic_private__", None)
        _set(message, "_body", None)
        return message

    def __eq__(self, other: object) -> bool:
        # Compare fields only: the cached wire text is not part of a message's identity.
        if not isinstance(other, JobMessage):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    @property
    def name(self) -> str:
        """The job name (alias of ``job_name``)."""
        return self.job_name

    def to_json(self) -> str:
        """Serialize to the wire format (optional keys that are unset are left out)."""
        # The serializer itself: what model_dump_json calls, minus its frame and checks.
        return _serialize(self, by_alias=True, exclude_none=True).decode()

    def encode(self, limit: int | None = None) -> str:
        """Serialize and check the size limit; raises :class:`PayloadTooLargeError`.

        ``limit`` is the driver's (see ``QueueDriver.message_limit``). Without one, a message
        already checked (by :class:`~glasswork.jobs.JobService`, against its driver's limit)
        returns its text as it is, and an unchecked one is held to 262,144 bytes."""
        body: str | None = getattr(self, "_body", None)
        if body is None:
            body = self.to_json()
            object.__setattr__(self, "_body", body)
        elif limit is None:
            return body
        if limit is None:
            limit = MAX_MESSAGE_BYTES
        # len() of an ASCII str is its UTF-8 size; only other text needs encoding to measure.
        size = len(body) if body.isascii() else len(body.encode("utf-8"))
        if size > limit:
            raise PayloadTooLargeError(self.job_name, size, limit)
        return body

    @classmethod
    def from_json(cls, body: str | bytes) -> JobMessage:
        """Parse a wire body; raises :class:`MalformedMessageError` with the reason."""
        try:
            # The validator itself: what model_validate_json calls, minus a Python frame.
            message: JobMessage = cls.__pydantic_validator__.validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise MalformedMessageError(f"not a Glasswork job envelope: {problems}") from None
        if message.version != ENVELOPE_VERSION:
            raise MalformedMessageError(
                f"unsupported envelope version {message.version} (this worker reads "
                f"version {ENVELOPE_VERSION})"
            )
        return message


_set = object.__setattr__
_serialize = JobMessage.__pydantic_serializer__.to_json
# The version (4) and variant (RFC 4122) bits of a random UUID.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_job_id() -> str:
    """A new job id: a random UUID (version 4) as 32 hex digits, ``uuid.uuid4().hex`` at
    half its cost (no ``UUID`` object)."""
    return f"{(int.from_bytes(os.urandom(16), 'big') & _UUID4_CLEAR) | _UUID4_SET:032x}"


#: The fields :meth:`JobMessage.create` sets, and every field with its default (None for
#: the required ones, which it always sets).
_CREATED = frozenset(
    ("version", "job_name", "job_id", "payload", "queue", "enqueued_at", "unique_key", "group_id")
)
_DEFAULTS = {
    name: None if field.is_required() else field.get_default(call_default_factory=True)
    for name, field in JobMessage.model_fields.items()
}


def identify(body: str) -> tuple[str | None, str | None, str | None]:
    """Best-effort job name, job id and unique key of a wire body, for labelling dead
    letters and listings; None for each one a malformed body lacks (never raises)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    return text("jobName"), text("jobId"), text("uniqueKey")


def scoped_key(job_name: str, key: str, sep: str = "#") -> str:
    """``key`` of job ``job_name`` as one string no other (job name, key) pair gives.

    ``<job name><sep><key>`` is what earlier releases wrote. It is ambiguous only when the job
    name holds ``sep``: job ``refund`` keyed ``partial#o-17`` and job ``refund#partial`` keyed
    ``o-17`` are both ``refund#partial#o-17``. Such a name is written length-prefixed instead,
    ``<sep><length of the name><sep><name><sep><key>``, which no plain form can be (a job name
    is never empty, so a plain form never starts with ``sep``). Every other key reads as it did,
    so records an earlier release stored (completed idempotency keys, held unique keys) still
    count after an upgrade.
    """
    if sep in job_name:
        return f"{sep}{len(job_name)}{sep}{job_name}{sep}{key}"
    return f"{job_name}{sep}{key}"
