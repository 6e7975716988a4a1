"""One-pass decoding: it only ever takes bodies the reference path (JobMessage.from_json,
then JobDefinition.validate) takes too, with the same payload, and it takes the usual ones."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import BaseModel, ConfigDict

from glasswork import define_module
from glasswork.jobs import JobMessage, MalformedMessageError, define_job
from glasswork.jobs.decoding import BodyDecoder
from glasswork.jobs.execution import Executor


class Address(BaseModel):
    city: str


class Customer(BaseModel):
    name: str
    address: Address
    referred_by: Customer | None = None


class Strict(BaseModel):
    model_config = ConfigDict(strict=True)
    at: datetime


customer = define_job(name="customer", schema=Customer, handler=lambda p: None)
address = define_job(name="address", schema=Address, handler=lambda p: None)  # shares a model
strict = define_job(name="strict", schema=Strict, handler=lambda p: None)
untyped = define_job(name="untyped", handler=lambda p: None)
numbers = define_job(name="numbers", schema=list[int], handler=lambda p: None)
JOBS = [customer, address, strict, untyped, numbers]

GOOD = {
    "version": 1,
    "jobName": "customer",
    "jobId": "j1",
    "payload": {
        "name": "Ada",
        "address": {"city": "London"},
        "referred_by": {"name": "Bob", "address": {"city": "Paris"}},
    },
    "queue": "default",
    "enqueuedAt": "2026-11-28T10:00:00Z",
}


def body(**changes) -> str:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...})


BODIES = [
    body(),
    body(jobName="address", payload={"city": "Rome"}),
    body(jobName="untyped", payload=[1, "two", None]),
    body(jobName="untyped", payload=...),
    body(jobName="numbers", payload=[1, 2, 3]),
    body(jobName="numbers", payload=["1", 2]),
    body(jobName="strict", payload={"at": "2026-11-28T10:00:00Z"}),
    body(extra_key="ignored", queue="emails", uniqueKey="k", groupId="g"),
    body(version=2),
    body(version="1"),
    body(version=True),
    body(jobName=""),
    body(jobName="nope"),
    body(jobId=""),
    body(jobId=...),
    body(queue=5),
    body(queue=None),
    body(enqueuedAt="yesterday"),
    body(enqueuedAt=None),
    body(uniqueKey=7),
    body(payload={"name": "Ada"}),
    body(payload=...),
    body(payload=None),
    # A trace context of the wrong JSON type is ignored (its text entries kept): the job runs.
    body(trace={"traceparent": "00-nonsense"}),
    body(trace={"traceparent": "00-nonsense", "tracestate": None}),
    body(trace={"tracestate": 5}),
    body(trace=5),
    body(trace=[]),
    body(trace="00-nonsense"),
    body(trace=None),
    json.dumps({**GOOD, "jobName": ..., "job_name": "customer"}, default=str),
    "not json",
    "[]",
    "",
]


@pytest.mark.parametrize("text", BODIES)
def test_what_the_decoder_takes_the_reference_path_takes_with_the_same_payload(text):
    fields = BodyDecoder(JOBS).decode(text)
    if fields is None:
        return
    message = JobMessage.from_json(text)  # never raises for a body the decoder took
    definition = {job.name: job for job in JOBS}[message.job_name]
    assert fields["job_name"] == message.job_name
    assert fields["job_id"] == message.job_id
    assert fields["queue"] == message.queue
    assert fields["trace"] == message.trace
    if definition is strict:  # strict models take the JSON form of a datetime in JSON mode
        assert fields["payload"] == Strict(at=datetime.fromisoformat("2026-11-28T10:00:00+00:00"))
    else:
        assert fields["payload"] == definition.validate(message.payload)


@pytest.mark.parametrize(
    "text",
    [
        body(),
        body(jobName="address", payload={"city": "Rome"}),
        body(jobName="untyped", payload=[1, "two", None]),
        body(jobName="numbers", payload=["1", 2]),
        body(extra_key="ignored", queue="emails", uniqueKey="k", groupId="g"),
        body(enqueuedAt=None),
        body(trace={"traceparent": "00-nonsense", "tracestate": None}),
        body(trace=[]),
    ],
)
def test_the_usual_bodies_take_the_one_pass_path(text):
    assert BodyDecoder(JOBS).decode(text) is not None


@pytest.mark.parametrize("text", BODIES)
def test_the_executor_reads_every_body_as_the_reference_path_would(text):
    executor = Executor.for_module(define_module("m", jobs=JOBS))
    ctx = executor.prepare(text)
    try:
        message = JobMessage.from_json(text)
    except MalformedMessageError:
        assert ctx.kind == "dead_letter" and ctx.message is None
        return
    assert ctx.job == message
    assert ctx.definition is {job.name: job for job in JOBS}.get(message.job_name)


@pytest.mark.parametrize("job", JOBS, ids=lambda job: job.name)
@pytest.mark.parametrize("text", [*BODIES, body(jobName=5), body(jobName=None)])
def test_a_one_job_decoder_takes_what_the_union_takes_for_that_job(text, job):
    """One job is decoded without a tagged union (its name a literal): the same bodies,
    the same fields, as the union of several jobs gives for that job."""
    fields = BodyDecoder(JOBS).decode(text)
    expected = fields if fields is not None and fields["job_name"] == job.name else None
    assert BodyDecoder([job]).decode(text) == expected


def test_a_registry_without_jobs_decodes_nothing():
    assert BodyDecoder([]).decode(body()) is None


@pytest.mark.parametrize("text", BODIES)
def test_both_string_caches_decode_alike(text):
    """The long-running worker caches keys only (flat memory), Lambda every string (speed):
    the fields must not depend on it."""
    assert BodyDecoder(JOBS, "keys").decode(text) == BodyDecoder(JOBS, "all").decode(text)


def test_the_long_running_worker_caches_keys_only_in_every_executor(tmp_path):
    from glasswork.jobs import SQLiteQueueDriver, Worker

    worker = Worker(
        module=define_module("m", jobs=JOBS), driver=SQLiteQueueDriver(str(tmp_path / "q.db"))
    )
    assert worker.executor.string_cache == "keys"
    assert worker._new_executor().string_cache == "keys"
    assert Executor.for_module(define_module("m", jobs=JOBS)).string_cache == "all"
