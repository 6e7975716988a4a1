from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from glasswork.jobs import (
    DuplicateJobError,
    EnqueueResult,
    InvalidJobPayloadError,
    JobService,
    MockQueueDriver,
    PayloadTooLargeError,
    define_job,
)


class Welcome(BaseModel):
    user_id: str


welcome = define_job(
    name="send-welcome-email",
    queue="emails",
    schema=Welcome,
    unique={"key": lambda p: p.user_id},
    handler=lambda payload, ctx: None,
)
ping = define_job(name="ping", handler=lambda payload, ctx: None)
blob = define_job(name="blob", schema=str, handler=lambda payload, ctx: None)


@pytest.fixture
def driver():
    return MockQueueDriver()


@pytest.fixture
def service(driver):
    return JobService(driver)


def test_enqueue_sends_validated_payload_and_returns_result(service, driver):
    result = service.enqueue(welcome, {"user_id": "123"})
    assert isinstance(result, EnqueueResult)
    assert result.queue == "emails"
    assert result.scheduled_at is None
    [message] = driver.jobs
    assert message.job_name == "send-welcome-email"
    assert message.payload == {"user_id": "123"}
    assert message.job_id == result.job_id
    assert message.unique_key == "123"
    assert driver.enqueued[0].message is message


def test_enqueue_accepts_a_model_instance(service, driver):
    service.enqueue(welcome, Welcome(user_id="9"))
    assert driver.jobs[0].payload == {"user_id": "9"}


def test_job_without_queue_uses_the_service_default(driver):
    JobService(driver, default_queue="background").enqueue(ping, {"ok": True})
    assert driver.jobs[0].queue == "background"
    assert driver.jobs[0].payload == {"ok": True}


def test_invalid_payload_is_refused_before_sending(service, driver):
    with pytest.raises(InvalidJobPayloadError) as caught:
        service.enqueue(welcome, {"userId": "123"})
    assert caught.value.errors[0]["loc"] == ("user_id",)
    assert driver.jobs == []


def test_oversize_payload_is_refused_before_sending(service, driver):
    with pytest.raises(PayloadTooLargeError, match="262,144-byte limit"):
        service.enqueue(blob, "x" * 262_144)
    assert driver.jobs == []


def test_duplicate_unique_key_is_refused_while_pending(service, driver):
    first = service.enqueue(welcome, {"user_id": "1"})
    with pytest.raises(DuplicateJobError) as caught:
        service.enqueue(welcome, {"user_id": "1"})
    assert caught.value.existing_job_id == first.job_id
    service.enqueue(welcome, {"user_id": "2"})  # another key is fine
    assert len(driver.jobs) == 2


@pytest.mark.parametrize(("delay", "seconds"), [("10m", 600), (90, 90), (timedelta(hours=2), 7200)])
def test_enqueue_in_passes_the_delay_in_seconds(service, driver, delay, seconds):
    before = datetime.now(UTC)
    result = service.enqueue_in(welcome, {"user_id": "1"}, delay)
    assert driver.enqueued[0].delay_seconds == seconds
    assert result.scheduled_at is not None
    assert (
        timedelta(seconds=seconds - 1)
        < result.scheduled_at - before
        < timedelta(seconds=seconds + 1)
    )


def test_enqueue_in_zero_is_immediate(service, driver):
    assert service.enqueue_in(ping, None, "0s").scheduled_at is None
    assert driver.enqueued[0].delay_seconds == 0


def test_enqueue_at_future_aware_datetime(service, driver):
    when = datetime.now(timezone(timedelta(hours=2))) + timedelta(hours=1)
    result = service.enqueue_at(welcome, {"user_id": "1"}, when)
    assert 3590 < driver.enqueued[0].delay_seconds <= 3600
    assert result.scheduled_at is not None


def test_enqueue_at_past_time_runs_now(service, driver):
    service.enqueue_at(ping, None, datetime.now(UTC) - timedelta(days=1))
    assert driver.enqueued[0].delay_seconds == 0


def test_enqueue_at_naive_datetime_is_an_error(service, driver):
    with pytest.raises(ValueError, match="aware datetime"):
        service.enqueue_at(ping, None, datetime.now() + timedelta(hours=1))
    with pytest.raises(TypeError):
        service.enqueue_at(ping, None, "2030-01-01T00:00:00Z")
    assert driver.jobs == []


def test_enqueue_many_validates_everything_first(service, driver):
    with pytest.raises(InvalidJobPayloadError):
        service.enqueue_many(welcome, [{"user_id": "1"}, {"nope": 1}])
    assert driver.jobs == []
    results = service.enqueue_many(welcome, [{"user_id": str(i)} for i in range(25)])
    assert len(results) == 25
    assert len({r.job_id for r in results}) == 25
    assert [m.payload["user_id"] for m in driver.jobs] == [str(i) for i in range(25)]
    assert service.enqueue_many(welcome, []) == []


def test_enqueue_many_with_duplicate_keys_sends_nothing(service, driver):
    with pytest.raises(DuplicateJobError):
        service.enqueue_many(welcome, [{"user_id": "1"}, {"user_id": "1"}])
    assert driver.jobs == []
    service.enqueue_many(welcome, [{"user_id": "1"}])  # the refused batch held no key


def test_enqueue_many_with_delay(service, driver):
    service.enqueue_many(ping, [1, 2], delay="5m")
    assert [e.delay_seconds for e in driver.enqueued] == [300, 300]


def test_service_refuses_things_that_are_not_jobs_or_drivers(service):
    with pytest.raises(TypeError, match="define_job"):
        service.enqueue(lambda p, c: None, {})
    with pytest.raises(TypeError, match="QueueDriver"):
        JobService(object())


def test_enqueue_many_holds_off_the_garbage_collector_while_it_builds(driver):
    # Thousands of new messages that all live on make the cyclic collector run over them
    # again and again; it waits until the batch is sent, and is left as it was found.
    import gc

    from pydantic import field_validator

    seen = []

    class Watched(BaseModel):
        n: int

        @field_validator("n")
        @classmethod
        def note(cls, value: int) -> int:
            seen.append(gc.isenabled())
            return value

    watched = define_job(name="watched", schema=Watched, handler=lambda payload, ctx: None)
    service = JobService(driver)
    service.enqueue_many(watched, [{"n": 1}, {"n": 2}, {"n": 3}])
    assert seen == [False, False, False] and gc.isenabled()
    with pytest.raises(InvalidJobPayloadError):
        service.enqueue_many(welcome, [{"user_id": "1"}, {"nope": 1}])
    assert gc.isenabled()  # after a failure too
    gc.disable()
    try:
        service.enqueue_many(watched, [{"n": 4}])
        assert not gc.isenabled()  # one the application turned off stays off
    finally:
        gc.enable()
