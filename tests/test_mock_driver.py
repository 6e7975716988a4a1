"""MockQueueDriver: records enqueues, enforces unique keys, drains through the Lambda path."""

import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    DuplicateJobError,
    JobContext,
    JobService,
    MockQueueDriver,
    PermanentJobError,
    bootstrap_worker,
    define_job,
)


class Order(BaseModel):
    order_id: str


class Ledger:
    def __init__(self) -> None:
        self.entries: list[str] = []


attempts: dict[str, int] = {}


def charge(payload: Order, ctx: JobContext) -> None:
    attempts[payload.order_id] = ctx.attempt
    if payload.order_id.startswith("flaky") and ctx.attempt < 2:
        raise RuntimeError("card network timeout")
    if payload.order_id.startswith("broken"):
        raise RuntimeError("always fails")
    if payload.order_id.startswith("fraud"):
        raise PermanentJobError("fraud suspected")
    ctx.services.ledger.entries.append(payload.order_id)
    if payload.order_id == "parent":
        JobService(ctx.services.driver).enqueue(charge_job, {"order_id": "child"})


charge_job = define_job(
    name="charge",
    schema=Order,
    handler=charge,
    unique={"key": lambda p: p.order_id},
    retry={"max_attempts": 3},
)


@pytest.fixture
def driver():
    attempts.clear()
    return MockQueueDriver()


def module_for(driver):
    from glasswork import provide

    return define_module(
        name="billing", jobs=[charge_job], providers=[Ledger, provide("driver", use_value=driver)]
    )


def test_jobs_and_enqueued_expose_what_was_sent(driver):
    service = JobService(driver)
    service.enqueue(charge_job, {"order_id": "1"})
    service.enqueue_in(charge_job, {"order_id": "2"}, "1h")
    assert [m.payload for m in driver.jobs] == [{"order_id": "1"}, {"order_id": "2"}]
    assert [m.job_name for m in driver.jobs] == ["charge", "charge"]
    assert [e.delay_seconds for e in driver.enqueued] == [0, 3600]
    assert driver.enqueued[1].run_at is not None
    assert driver.enqueued[0].payload == {"order_id": "1"}


def test_clear_forgets_jobs_and_unique_keys(driver):
    service = JobService(driver)
    service.enqueue(charge_job, {"order_id": "1"})
    driver.clear()
    assert driver.jobs == [] and driver.enqueued == [] and driver.pending == []
    service.enqueue(charge_job, {"order_id": "1"})


def test_drain_runs_everything_through_the_worker_with_retries_and_dead_letters(driver):
    service = JobService(driver)
    for order_id in ("ok", "flaky", "broken", "fraud", "parent"):
        service.enqueue(charge_job, {"order_id": order_id})
    worker = bootstrap_worker(module=module_for(driver), driver=driver)
    result = driver.drain(worker)
    assert sorted(worker.services.ledger.entries) == ["child", "flaky", "ok", "parent"]
    assert attempts == {"ok": 1, "flaky": 2, "broken": 3, "fraud": 1, "parent": 1, "child": 1}
    assert sorted(d.reason.split(":")[0] for d in driver.dead_letters) == [
        "PermanentJobError",
        "failed 3 of 3 attempts",
    ]
    assert result.deliveries == 9  # ok, flaky x2, broken x3, fraud, parent, child
    assert result.retried == 3
    assert result.dead_lettered == 2
    assert driver.pending == []


def test_drain_accepts_a_module_and_frees_unique_keys_of_finished_jobs(driver):
    service = JobService(driver)
    service.enqueue(charge_job, {"order_id": "1"})
    with pytest.raises(DuplicateJobError):
        service.enqueue(charge_job, {"order_id": "1"})
    driver.drain(module_for(driver))
    service.enqueue(charge_job, {"order_id": "1"})  # done, so the key is free again


def test_drain_can_leave_delayed_jobs_for_later(driver):
    service = JobService(driver)
    service.enqueue(charge_job, {"order_id": "now"})
    service.enqueue_in(charge_job, {"order_id": "later"}, "10m")
    result = driver.drain(module_for(driver), include_delayed=False)
    assert result.deliveries == 1
    assert [m.payload["order_id"] for m in driver.pending] == ["later"]
    assert driver.drain(module_for(driver)).deliveries == 1
    assert driver.pending == []


def test_drain_stops_a_job_that_enqueues_itself_forever(driver):
    def loop(payload, ctx):
        JobService(ctx.services.driver).enqueue(again, None)

    from glasswork import provide

    again = define_job(name="again", handler=loop)
    module = define_module(name="m", jobs=[again], providers=[provide("driver", use_value=driver)])
    JobService(driver).enqueue(again, None)
    with pytest.raises(RuntimeError, match="after 50 deliveries"):
        driver.drain(module, max_deliveries=50)
    assert driver.pending  # nothing was lost by stopping


def test_receive_leases_and_ack_nack_follow_the_lease(driver):
    service = JobService(driver)
    service.enqueue(charge_job, {"order_id": "1"})
    [first] = driver.receive()
    assert driver.receive() == []  # leased: invisible to a second consumer
    driver.nack(first)
    [second] = driver.receive()
    assert second.attempt == 2
    driver.ack(first)  # a stale lease does nothing
    assert len(driver.pending) == 1
    driver.ack(second)
    assert driver.pending == []


def test_receive_filters_by_queue(driver):
    other = define_job(name="other", queue="emails", handler=lambda p, c: None)
    service = JobService(driver)
    service.enqueue(charge_job, {"order_id": "1"})
    service.enqueue(other, None)
    assert [r.queue for r in driver.receive(queues=["emails"])] == ["emails"]


def test_the_mock_has_a_readable_repr() -> None:
    assert repr(MockQueueDriver()) == "MockQueueDriver(pending=0, dead_letters=0)"
