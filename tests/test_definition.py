import pytest
from pydantic import BaseModel

from glasswork.jobs import (
    ConfigurationError,
    InvalidJobPayloadError,
    RetryPolicy,
    define_job,
    define_periodic_job,
)


class Signup(BaseModel):
    user_id: str
    plan: str = "free"


def noop(payload, ctx):
    return None


def test_model_schema_validates_into_a_model_instance():
    job = define_job(name="signup", schema=Signup, handler=noop)
    value = job.validate({"user_id": "1"})
    assert value == Signup(user_id="1", plan="free")
    assert job.to_wire(value) == {"user_id": "1", "plan": "free"}


def test_any_type_pydantic_accepts_is_a_schema():
    job = define_job(name="ids", schema=list[int], handler=noop)
    assert job.validate(["1", 2]) == [1, 2]


def test_invalid_payload_error_carries_pydantic_details_and_job_name():
    job = define_job(name="signup", schema=Signup, handler=noop)
    with pytest.raises(InvalidJobPayloadError) as caught:
        job.validate({"plan": 3})
    err = caught.value
    assert err.job_name == "signup"
    assert {tuple(e["loc"]) for e in err.errors} == {("user_id",), ("plan",)}
    assert "user_id: Field required" in str(err)


def test_without_schema_payload_passes_through_but_must_be_json():
    job = define_job(name="free", handler=noop)
    assert job.to_wire(job.validate({"a": [1]})) == {"a": [1]}
    with pytest.raises(InvalidJobPayloadError, match="JSON-serializable"):
        job.to_wire({"a": object()})


def test_unique_key_accepts_mapping_or_function():
    by_map = define_job(name="a", schema=Signup, unique={"key": lambda p: p.user_id}, handler=noop)
    by_fn = define_job(name="b", schema=Signup, unique=lambda p: p.user_id, handler=noop)
    value = Signup(user_id="42")
    assert by_map.unique_key_for(value) == "42"
    assert by_fn.unique_key_for(value) == "42"
    assert define_job(name="c", handler=noop).unique_key_for(value) is None


@pytest.mark.parametrize("bad", [{"keys": lambda p: p}, {"key": "user_id"}, 42])
def test_bad_unique_option_is_a_configuration_error(bad):
    with pytest.raises(ConfigurationError, match="unique"):
        define_job(name="a", handler=noop, unique=bad)


def test_retry_options():
    assert define_job(name="a", handler=noop).retry == RetryPolicy()
    assert define_job(name="b", handler=noop, retry=False).retry is None
    assert define_job(name="c", handler=noop, retry={"max_attempts": 5}).retry.max_attempts == 5
    with pytest.raises(ConfigurationError, match="max_attemps"):
        define_job(name="d", handler=noop, retry={"max_attemps": 5})
    with pytest.raises(ConfigurationError, match="at least 1"):
        define_job(name="e", handler=noop, retry={"max_attempts": 0})


def test_backoff_grows_exponentially_is_capped_and_jittered():
    policy = RetryPolicy(backoff=10, max_backoff=60, jitter=False)
    assert [policy.delay_for(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    jittered = RetryPolicy(backoff=10, max_backoff=60)
    delays = {jittered.delay_for(3) for _ in range(50)}
    assert all(20 <= d <= 40 for d in delays)
    assert len(delays) > 1


def test_handlers_may_take_payload_only_or_nothing_and_async_is_detected():
    async def handler(payload, ctx):
        return payload

    one_arg = define_job(name="one", handler=lambda payload: payload * 2)
    assert one_arg.run(21, None) == 42
    assert define_job(name="async", handler=handler).is_async
    assert not one_arg.is_async
    calls = []
    no_args = define_job(name="none", handler=lambda: calls.append("ran"))  # the seeds' style
    no_args.run({"ok": True}, None)
    assert calls == ["ran"]

    def needs_keyword(*, flag):
        pass

    with pytest.raises(ConfigurationError, match=r"\(payload, ctx\), \(payload\) or nothing"):
        define_job(name="kw", handler=needs_keyword)


@pytest.mark.parametrize("name", ["", "   ", None])
def test_job_needs_a_name(name):
    with pytest.raises(ConfigurationError, match="name"):
        define_job(name=name, handler=noop)


def test_handler_must_be_callable():
    with pytest.raises(ConfigurationError, match="callable"):
        define_job(name="a", handler="not a function")


def test_periodic_job_keeps_its_schedule():
    job = define_periodic_job(name="daily-cleanup", handler=noop, schedule="cron(0 3 * * ? *)")
    assert job.periodic and job.schedule == "cron(0 3 * * ? *)"
    assert "periodic job 'daily-cleanup'" in repr(job)


def test_group_id_from_string_or_payload():
    job = define_job(name="g", schema=Signup, handler=noop, group_id=lambda p: f"user-{p.user_id}")
    assert job.group_id_for(Signup(user_id="7")) == "user-7"
    assert define_job(name="h", handler=noop, group_id="all").group_id_for({}) == "all"
