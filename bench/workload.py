"""The job every benchmark runs: a no-op handler behind a realistic pydantic schema.

Glasswork and every peer run the same payload through the same :class:`Payload` model, so
the numbers compare the libraries' own overhead, not the work.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    """A typical small job payload: an id, an address, a few flags."""

    user_id: str
    email: str
    plan: str = "free"
    seats: int = 1
    tags: list[str] = Field(default_factory=list)


class Envelope(BaseModel):
    """What a peer's record handler parses from the same SQS body Glasswork reads: the
    envelope's name and id, and the payload validated by :class:`Payload`."""

    model_config = ConfigDict(extra="ignore")

    job_name: str = Field(alias="jobName")
    job_id: str = Field(alias="jobId")
    payload: Payload


PAYLOAD: dict[str, Any] = {
    "user_id": "user-0001",
    "email": "someone@example.com",
    "plan": "team",
    "seats": 5,
    "tags": ["beta", "eu"],
}


def noop(payload: Any, ctx: Any = None) -> None:
    """The job: does nothing, so only the library's overhead is measured."""
    return None


#: How long the I/O-bound job waits: a typical downstream call (an HTTP API, a database).
IO_SECONDS = 0.05


async def simulated_io(payload: Any, ctx: Any = None) -> None:
    """The I/O-bound job: awaits :data:`IO_SECONDS` as a call to another service would."""
    import asyncio

    await asyncio.sleep(IO_SECONDS)


def sqs_bench_event(n: int = 10, queue: str = "bench", job: str = "bench-noop") -> dict[str, Any]:
    """An SQS → Lambda event of ``n`` records, each a Glasswork envelope of :data:`PAYLOAD`
    for the job named ``job``."""
    from glasswork.jobs import JobMessage
    from glasswork.jobs.testing import sqs_event

    bodies = [JobMessage.create(job, PAYLOAD, queue=queue).encode() for _ in range(n)]
    return sqs_event(bodies, queue=queue)


def validate_payload(payload: Any) -> None:
    """The peers' task body: validate the payload with the same model Glasswork uses, then
    do nothing (Glasswork validates before it calls the no-op handler)."""
    Payload.model_validate(payload)


def wire_payload() -> dict[str, Any]:
    """What every library enqueues: :data:`PAYLOAD` validated and dumped to JSON types, the
    work Glasswork's ``JobService`` does before it sends."""
    return Payload.model_validate(PAYLOAD).model_dump(mode="json")
