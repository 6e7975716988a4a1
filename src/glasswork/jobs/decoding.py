"""Decode a wire body and validate its job's payload in one pydantic call.

:meth:`JobMessage.from_json <glasswork.jobs.JobMessage.from_json>` followed by
:meth:`JobDefinition.validate <glasswork.jobs.JobDefinition.validate>` is the reference
path; it parses the body into a message, then validates the payload as a second step. This
module is a shortcut for the common case: one validator, a tagged union over the registry's
jobs keyed by ``jobName``, reads the envelope and validates the payload from the JSON text
in one pass, without building the :class:`JobMessage` (callers build it from the body when
someone asks for it).

The shortcut only ever *accepts*: any body it does not take (malformed, unknown job,
invalid payload, another envelope version) is left to the reference path, which produces
the same errors as before. Its envelope fields are those of :class:`JobMessage` itself, so
what it accepts the reference path accepts too. Payloads are validated from the JSON text
(pydantic's JSON mode), as :meth:`JobDefinition.validate` would validate the parsed value,
except that strict models also take what strict JSON mode allows (an ISO date string for a
``datetime``, say).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaError, SchemaValidator, core_schema

from .message import ENVELOPE_VERSION, JobMessage

if TYPE_CHECKING:
    from .definition import JobDefinition

#: What pydantic's string cache keeps while decoding bodies (see :class:`BodyDecoder`).
StringCache = Literal["all", "keys"]

logger = logging.getLogger("glasswork.jobs")


class BodyDecoder:
    """``validator.validate_json(body)`` → the envelope's fields (``job_name``, ``job_id``,
    ``payload`` validated by the job's schema, ``queue``, ...) for a body naming one of
    ``jobs``. A ``ValidationError``, or a ``version`` other than ``ENVELOPE_VERSION``, means
    the reference path decides (see :meth:`decode`). ``jobs[name]`` is (the definition, its
    ``retry.max_attempts`` or None).

    ``cache_strings``: pydantic's string cache, for every string (``"all"``, the fastest,
    as job names and queues repeat) or only keys (``"keys"``: a long-running worker
    would otherwise hold about 1.5 MiB of job ids and timestamps seen once; measured
    with bench/memory.py and bench/lambda_dispatch.py)."""

    __slots__ = ("jobs", "validator")

    def __init__(
        self, jobs: Iterable[JobDefinition[Any]], cache_strings: StringCache = "all"
    ) -> None:
        definitions = list(jobs)
        self.jobs = {
            job.name: (job, job.retry.max_attempts if job.retry is not None else None)
            for job in definitions
        }
        self.validator = _union_validator(definitions, cache_strings)

    def decode(self, body: str | bytes) -> dict[str, Any] | None:
        """The fields of ``body``, or None when the reference path must decide.
        (:meth:`Executor.prepare <glasswork.jobs.Executor.prepare>` does the same inline.)"""
        try:
            fields: dict[str, Any] = self.validator.validate_json(body)
        except ValidationError:
            return None
        return fields if fields["version"] == ENVELOPE_VERSION else None


def _union_validator(jobs: list[JobDefinition[Any]], cache_strings: StringCache) -> SchemaValidator:
    envelope = _envelope_fields()
    definitions: dict[str, core_schema.CoreSchema] = {}
    choices: dict[str, dict[str, core_schema.TypedDictField]] = {}
    for job in jobs:
        payload = _payload_schema(job, definitions)
        if payload is None:
            continue
        fields = choices[job.name] = dict(envelope)
        fields["payload"] = core_schema.typed_dict_field(payload)  # required: absent → slow
    schema: core_schema.CoreSchema
    if len(choices) == 1:
        # One job (a common Lambda): its envelope, the name a literal, checks the bodies a
        # tagged union of one checks, without the union's look-up of the name first.
        [(name, fields)] = choices.items()
        fields["job_name"] = core_schema.typed_dict_field(
            core_schema.literal_schema([name]), validation_alias="jobName"
        )
        schema = core_schema.typed_dict_schema(fields, extra_behavior="ignore")
    elif choices:
        schema = core_schema.tagged_union_schema(
            {
                name: core_schema.typed_dict_schema(fields, extra_behavior="ignore")
                for name, fields in choices.items()
            },
            discriminator="jobName",
        )
    else:
        return _NOTHING  # every body takes the two-step path
    try:
        return SchemaValidator(
            core_schema.definitions_schema(schema, list(definitions.values())),
            config={"cache_strings": cache_strings},
        )
    except SchemaError:  # pragma: no cover - pydantic refused the combination
        logger.debug("one-pass decoding unavailable; using the two-step path", exc_info=True)
    return _NOTHING


# Accepts nothing: an empty tagged union.
_NOTHING = SchemaValidator(core_schema.tagged_union_schema({}, discriminator="jobName"))


def _envelope_fields() -> dict[str, core_schema.TypedDictField]:
    """:class:`JobMessage`'s own field schemas and aliases, as typed-dict fields."""
    model = JobMessage.__pydantic_core_schema__
    while model["type"] != "model-fields":
        model = model["schema"]
    return {
        name: core_schema.typed_dict_field(
            field["schema"], validation_alias=field.get("validation_alias", name)
        )
        for name, field in model["fields"].items()
    }


def _payload_schema(
    job: JobDefinition[Any], definitions: dict[str, core_schema.CoreSchema]
) -> core_schema.CoreSchema | None:
    if job.schema is None:
        return core_schema.any_schema()
    try:
        schema = TypeAdapter(job.schema).core_schema
    except Exception:  # pragma: no cover - the definition already built this adapter
        return None
    if schema["type"] == "definitions":
        # Models shared by several jobs carry the same refs: keep each definition once.
        for definition in schema["definitions"]:
            definitions.setdefault(definition["ref"], definition)
        schema = schema["schema"]
    return schema
