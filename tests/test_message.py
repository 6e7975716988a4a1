import json
import uuid
from datetime import UTC, datetime

import pytest

from glasswork.jobs import JobMessage, MalformedMessageError, PayloadTooLargeError
from glasswork.jobs.message import MAX_MESSAGE_BYTES


def test_wire_format_is_camel_case_json_with_version():
    message = JobMessage.create(
        "send-welcome-email", {"userId": "123"}, queue="emails", unique_key="123"
    )
    wire = json.loads(message.encode())
    assert wire["version"] == 1
    assert wire["jobName"] == "send-welcome-email"
    assert wire["jobId"] == message.job_id
    assert wire["payload"] == {"userId": "123"}
    assert wire["queue"] == "emails"
    assert wire["uniqueKey"] == "123"
    assert datetime.fromisoformat(wire["enqueuedAt"]).tzinfo is not None
    assert "groupId" not in wire  # unset optional keys stay off the wire


def test_round_trip_keeps_every_field():
    message = JobMessage.create("a", [1, {"x": None}], queue="q", unique_key="k", group_id="g")
    again = JobMessage.from_json(message.encode())
    assert again == message
    assert again.name == "a"


def test_minimal_message_written_by_another_producer_is_accepted():
    body = json.dumps({"version": 1, "jobName": "ping", "jobId": "abc", "extra": "ignored"})
    message = JobMessage.from_json(body)
    assert (message.job_name, message.job_id, message.payload, message.queue) == (
        "ping",
        "abc",
        None,
        "default",
    )
    assert message.enqueued_at is None


@pytest.mark.parametrize(
    ("trace", "kept"),
    [
        ({"traceparent": "00-x", "tracestate": None}, {"traceparent": "00-x"}),
        ({"traceparent": "00-x", "tracestate": ["a"]}, {"traceparent": "00-x"}),
        ({"tracestate": 5}, None),
        (5, None),
        ([{"traceparent": "00-x"}], None),
        ("00-x", None),
    ],
)
def test_a_trace_context_of_the_wrong_type_is_ignored_not_refused(trace, kept):
    body = json.dumps({"version": 1, "jobName": "ping", "jobId": "abc", "trace": trace})
    message = JobMessage.from_json(body)
    assert (message.job_name, message.trace) == ("ping", kept)
    assert JobMessage.from_json(message.encode()) == message  # and it is written back clean


def test_job_ids_are_unique_and_enqueued_at_is_aware_utc():
    a, b = JobMessage.create("a", None), JobMessage.create("a", None)
    assert a.job_id != b.job_id
    assert a.enqueued_at is not None and a.enqueued_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "Invalid JSON"),
        ("[]", "should be an object"),
        ('{"version": 1, "jobId": "x"}', "jobName"),
        ('{"version": 1, "jobName": "a"}', "jobId"),
        ('{"version": 1, "jobName": "", "jobId": "x"}', "jobName"),
        ('{"version": "one", "jobName": "a", "jobId": "x"}', "version"),
        ('{"version": 2, "jobName": "a", "jobId": "x"}', "unsupported envelope version 2"),
    ],
)
def test_malformed_bodies_raise_malformed_message_error_with_the_reason(body, problem):
    with pytest.raises(MalformedMessageError, match=problem):
        JobMessage.from_json(body)


def test_size_limit_is_262144_bytes_of_utf8():
    assert MAX_MESSAGE_BYTES == 262_144
    overhead = len(JobMessage.create("j", "", job_id="x").encode())
    fits = JobMessage.create("j", "a" * (MAX_MESSAGE_BYTES - overhead), job_id="x")
    assert len(fits.encode().encode()) == MAX_MESSAGE_BYTES
    over = JobMessage.create("j", "a" * (MAX_MESSAGE_BYTES - overhead + 1), job_id="x")
    with pytest.raises(PayloadTooLargeError) as caught:
        over.encode()
    assert caught.value.size == MAX_MESSAGE_BYTES + 1
    assert caught.value.limit == MAX_MESSAGE_BYTES


def test_size_limit_counts_bytes_not_characters():
    overhead = len(JobMessage.create("j", "", job_id="x").encode())
    # "é" is two bytes in UTF-8 (and JSON keeps it unescaped), so half as many characters fit.
    chars = (MAX_MESSAGE_BYTES - overhead) // 2 + 1
    with pytest.raises(PayloadTooLargeError):
        JobMessage.create("j", "é" * chars, job_id="x").encode()


def test_job_ids_are_random_uuids():
    ids = [JobMessage.create("a", None).job_id for _ in range(200)]
    for job_id in ids:
        parsed = uuid.UUID(hex=job_id)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, job_id)
    assert len(set(ids)) == 200


def test_create_builds_what_model_construct_would():
    message = JobMessage.create("a", {"x": [1]}, queue="q", unique_key="k", job_id="id-1")
    constructed = JobMessage.model_construct(
        version=1,
        job_name="a",
        job_id="id-1",
        payload={"x": [1]},
        queue="q",
        enqueued_at=message.enqueued_at,
        unique_key="k",
        group_id=None,
    )
    assert message == constructed
    assert list(message.__dict__) == list(constructed.__dict__)  # fields in the model's order
    assert message.model_fields_set == constructed.model_fields_set
    assert message.encode() == constructed.encode()
    assert repr(message) == repr(constructed)
    copy = message.model_copy(update={"trace": {"traceparent": "00-x"}})
    assert copy.trace == {"traceparent": "00-x"} and message.trace is None
