"""Following a job through the services: ``status``, ``wait``, ``cancel`` and priorities, on
every driver that keeps statuses (the mock; SQLite and PostgreSQL once their stores are
there), and the clear errors of a driver that cannot.

A job's end is recorded here as a worker records it (``receive``, then ``finish`` with its
:class:`FinalStatus`), from a thread of its own while the caller waits."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from glasswork.jobs import (
    AsyncJobService,
    EnqueueResult,
    JobService,
    MockQueueDriver,
    QueueDriver,
    define_job,
)
from glasswork.jobs.drivers.contract import capabilities_of
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.records import DEFAULT_RESULT_TTL, FinalStatus, ReceivedMessage
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import (
    ConfigurationError,
    JobFailedError,
    JobNotFoundError,
    PriorityUnsupportedError,
    StatusUnavailableError,
)
from glasswork.jobs.following import AsyncJobHandle, JobHandle
from glasswork.jobs.message import JobMessage
from pgtest import POSTGRESQL, dsn, fresh_schema


class Order(BaseModel):
    order_id: str


class Receipt(BaseModel):
    order_id: str
    total: int


def make_receipt(payload: Order) -> Receipt:
    return Receipt(order_id=payload.order_id, total=3)


async def count_async(payload: Order) -> int:
    return 1


receipt_job = define_job(name="receipt", schema=Order, handler=make_receipt)
count_job = define_job(name="count", schema=Order, handler=count_async, result_ttl="1h")
urgent_job = define_job(name="urgent", schema=Order, handler=make_receipt, priority=5)
ORDER = Order(order_id="o1")


@pytest.fixture(params=["mock", "sqlite", POSTGRESQL])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each driver that keeps statuses; a driver whose store is not there yet is skipped."""
    made: Any
    if request.param == "mock":
        yield MockQueueDriver()
        return
    if request.param == "sqlite":
        made = SQLiteQueueDriver(tmp_path / "jobs.db")
        try:
            _needs_status(made)
            yield made
        finally:
            made.close()
        return
    with fresh_schema() as schema, PostgresQueueDriver(dsn(), schema=schema) as made:
        _needs_status(made)
        yield made


def _needs_status(driver: Any) -> None:
    if capabilities_of(driver).status is None:
        pytest.skip(f"{type(driver).__name__} keeps no statuses yet (its StatusStore comes later)")


def _receive_one(driver: Any, deadline: float = 5.0) -> ReceivedMessage:
    end = time.monotonic() + deadline
    while True:
        got = driver.receive(max_messages=1)
        if got:
            return got[0]  # type: ignore[no-any-return]
        assert time.monotonic() < end, "the job never became receivable"
        time.sleep(0.01)


def _finish_later(driver: Any, final: FinalStatus) -> threading.Thread:
    """A worker on a thread of its own: it takes the job, then ends it as ``final`` says."""

    def run() -> None:
        received = _receive_one(driver)
        time.sleep(0.05)  # the caller is waiting by now; it must poll to see the end
        driver.finish(received, final)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# -- status ----------------------------------------------------------------------------------


def test_enqueue_returns_a_handle_that_is_still_the_enqueue_result(driver: Any) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(receipt_job, ORDER)
    assert isinstance(handle, JobHandle) and isinstance(handle, EnqueueResult)
    plain = EnqueueResult(handle.message_id, handle.job_id, handle.queue, handle.scheduled_at)
    assert handle == plain and plain == handle and hash(handle) == hash(plain)
    assert {handle: 1}[plain] == 1
    assert repr(handle).startswith(f"JobHandle(message_id={handle.message_id!r}")
    assert pickle.loads(pickle.dumps(handle)) == plain  # pickles as the plain result


def test_status_of_a_new_job_says_pending_or_scheduled(driver: Any) -> None:
    jobs = JobService(driver)
    now = jobs.enqueue(receipt_job, ORDER)
    later = jobs.enqueue_in(receipt_job, ORDER, "1h")
    status = now.status()
    assert status is not None and status.state == "pending" and status.attempts == 0
    assert (status.job_id, status.job_name, status.queue) == (now.job_id, "receipt", "default")
    assert status.enqueued_at is not None and not status.finished
    assert jobs.status(later.job_id).state == "scheduled"  # type: ignore[union-attr]
    assert jobs.status("no-such-job") is None


def test_wait_returns_the_result_typed_as_the_handler_returns_it(driver: Any) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(receipt_job, ORDER)
    worker = _finish_later(
        driver, FinalStatus("done", result={"order_id": "o1", "total": 3}, progress=1.0)
    )
    try:
        receipt = handle.wait(timeout=10)
    finally:
        worker.join()
    assert receipt == Receipt(order_id="o1", total=3)  # the model, rebuilt from its JSON
    assert jobs.wait(handle.job_id, timeout=0) == {"order_id": "o1", "total": 3}  # as stored
    done = handle.status()
    assert done is not None and done.state == "done" and done.finished and done.progress == 1.0


@pytest.mark.parametrize(
    ("state", "error", "traceback"),
    [
        ("dead", "card declined", "Traceback (most recent call last): ..."),
        ("failed", "bad input", None),
        ("cancelled", "not needed", None),
    ],
)
def test_wait_raises_job_failed_error_for_a_job_that_ended_without_a_result(
    driver: Any, state: Any, error: str, traceback: str | None
) -> None:
    handle = JobService(driver).enqueue(receipt_job, ORDER)
    received = _receive_one(driver)
    if state == "dead":  # dead-lettered first, as the worker does; finish only records it
        driver.dead_letter(received.body, error, queue=received.queue, traceback=traceback)
    driver.finish(received, FinalStatus(state, error=error, traceback=traceback))
    with pytest.raises(JobFailedError) as raised:
        handle.wait(timeout=5)
    failed = raised.value
    assert (failed.job_id, failed.state, failed.error, failed.traceback) == (
        handle.job_id,
        state,
        error,
        traceback,
    )
    assert str(failed) == f"job {handle.job_id} ended {state}: {error}"


def test_wait_times_out_on_a_job_that_does_not_end(driver: Any) -> None:
    handle = JobService(driver).enqueue(receipt_job, ORDER)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"job {handle.job_id} has not ended after 0.2s"):
        handle.wait(timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 5


def test_wait_for_a_job_the_driver_does_not_know_raises_job_not_found(driver: Any) -> None:
    jobs = JobService(driver)
    with pytest.raises(JobNotFoundError, match="no status for job nope") as raised:
        jobs.wait("nope", timeout=1)
    assert isinstance(raised.value, LookupError) and raised.value.job_id == "nope"


def test_a_result_ttl_of_zero_keeps_nothing_to_wait_for(driver: Any) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(receipt_job, ORDER)
    driver.finish(_receive_one(driver), FinalStatus("done", result={"x": 1}, keep_for=0))
    assert handle.status() is None
    with pytest.raises(JobNotFoundError):
        handle.wait(timeout=1)


def test_wait_refuses_a_negative_timeout_or_a_poll_of_zero(driver: Any) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(receipt_job, ORDER)
    with pytest.raises(ValueError, match="timeout must be 0 or more"):
        handle.wait(timeout=-1)
    with pytest.raises(ValueError, match="poll must be positive"):
        jobs.wait(handle.job_id, poll=0)


# -- cancel ----------------------------------------------------------------------------------


def test_a_cancelled_waiting_job_never_runs_and_waiting_for_it_raises(driver: Any) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(receipt_job, ORDER)
    later = jobs.enqueue_in(receipt_job, ORDER, "1h")
    assert handle.cancel() and later.cancel()
    status = handle.status()
    assert status is not None and status.state == "cancelled" and status.error == "cancelled"
    assert not handle.cancel()  # it has ended
    assert not jobs.cancel("no-such-job")
    with pytest.raises(JobFailedError) as raised:
        handle.wait(timeout=5)
    assert raised.value.state == "cancelled"
    assert jobs.status(later.job_id).state == "cancelled"  # type: ignore[union-attr]
    assert driver.receive(max_messages=10) == []  # due now, and not handed to a worker


def test_cancelling_a_running_job_asks_its_worker_to_stop(driver: Any) -> None:
    jobs = JobService(driver)
    handle = jobs.enqueue(receipt_job, ORDER)
    received = _receive_one(driver)
    assert jobs.cancel(handle.job_id, reason="user asked")
    assert driver.cancel_requested([handle.job_id]) == {handle.job_id}
    driver.finish(received, FinalStatus("cancelled", error="user asked"))
    with pytest.raises(JobFailedError, match="ended cancelled: user asked"):
        handle.wait(timeout=5)


# -- priorities ------------------------------------------------------------------------------


def test_higher_priorities_are_received_first_within_a_queue(driver: Any) -> None:
    if not capabilities_of(driver).priorities:
        pytest.skip(f"{type(driver).__name__} does not claim by priority yet")
    jobs = JobService(driver)
    plain = jobs.enqueue(receipt_job, Order(order_id="plain"))
    urgent = jobs.enqueue(urgent_job, Order(order_id="urgent"))  # the job's own priority, 5
    lowered = jobs.enqueue(urgent_job, Order(order_id="lowered"), priority=0)
    top = jobs.enqueue(receipt_job, Order(order_id="top"), priority=9)
    order = [JobMessage.from_json(_receive_one(driver).body).job_id for _ in range(4)]
    assert order == [top.job_id, urgent.job_id, plain.job_id, lowered.job_id]
    assert jobs.status(urgent.job_id).priority == 5  # type: ignore[union-attr]


class PlainDriver(QueueDriver):
    """A driver of the user's own: it sends jobs, and keeps neither statuses nor an order."""

    def __init__(self) -> None:
        self.sent: list[JobMessage] = []

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        self.sent.append(message)
        return EnqueueResult(f"m{len(self.sent)}", message.job_id, message.queue)

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self.enqueue(message)


def test_a_priority_on_a_driver_that_does_not_claim_by_it_is_refused_and_nothing_is_sent() -> None:
    plain = PlainDriver()
    jobs = JobService(plain)
    with pytest.raises(PriorityUnsupportedError) as raised:
        jobs.enqueue(receipt_job, ORDER, priority=3)
    message = str(raised.value)
    assert "PlainDriver does not claim jobs by priority" in message
    assert (
        'a queue of their own, with its own workers or concurrency (define_job(..., queue="urgent"'
        in message
    )
    with pytest.raises(PriorityUnsupportedError):
        jobs.enqueue(urgent_job, ORDER)  # the job's own priority
    with pytest.raises(PriorityUnsupportedError):
        jobs.enqueue_many(receipt_job, [ORDER], priority=1)
    assert plain.sent == []
    jobs.enqueue(urgent_job, ORDER, priority=0)  # 0 is no priority: sent
    jobs.enqueue(receipt_job, ORDER)
    assert [m.priority for m in plain.sent] == [None, None]


def test_priorities_that_are_not_integers_are_refused() -> None:
    jobs = JobService(MockQueueDriver())
    with pytest.raises(ConfigurationError, match="priority must be an integer"):
        jobs.enqueue(receipt_job, ORDER, priority="high")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="priority must be from"):
        jobs.enqueue(receipt_job, ORDER, priority=2**40)
    with pytest.raises(ConfigurationError, match="'bad': priority must be an integer"):
        define_job(name="bad", handler=make_receipt, priority=True)


# -- a driver without statuses ---------------------------------------------------------------


def test_a_driver_without_statuses_says_so_and_how_to_get_them() -> None:
    jobs = JobService(PlainDriver())
    handle = jobs.enqueue(receipt_job, ORDER)
    for ask in (handle.status, handle.wait, handle.cancel):
        with pytest.raises(StatusUnavailableError, match="PlainDriver keeps no job statuses") as e:
            ask()
        assert "implement the StatusStore methods" in str(e.value)


def test_sqs_without_a_status_table_says_to_pass_one() -> None:
    from glasswork.jobs.drivers.sqs import SQSQueueDriver

    sqs = SQSQueueDriver(region="us-east-1", queues={"default": "https://sqs.example/1/jobs"})
    with pytest.raises(StatusUnavailableError, match="status_table"):
        JobService(sqs).status("some-job")


# -- the async service -----------------------------------------------------------------------


def test_the_async_service_follows_jobs_without_blocking_the_loop(driver: Any) -> None:
    async def scenario() -> None:
        async with AsyncJobService(driver) as jobs:
            handle = await jobs.enqueue(count_job, ORDER)
            assert isinstance(handle, AsyncJobHandle) and isinstance(handle, EnqueueResult)
            assert (await handle.status()).state == "pending"  # type: ignore[union-attr]
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.005)

            ticker = asyncio.create_task(tick())
            worker = _finish_later(driver, FinalStatus("done", result=7))
            try:
                assert await handle.wait(timeout=10) == 7
            finally:
                ticker.cancel()
                worker.join()
            assert ticks >= 5  # the loop ran on while the service waited
            other = await jobs.enqueue(count_job, ORDER)
            assert await other.cancel()
            with pytest.raises(JobFailedError):
                await jobs.wait(other.job_id, timeout=5)
            with pytest.raises(TimeoutError):
                await jobs.wait((await jobs.enqueue(count_job, ORDER)).job_id, timeout=0.05)

    asyncio.run(scenario())


def test_the_async_service_refuses_what_the_sync_one_refuses() -> None:
    async def scenario() -> None:
        async with AsyncJobService(PlainDriver()) as jobs:
            with pytest.raises(PriorityUnsupportedError):
                await jobs.enqueue(receipt_job, ORDER, priority=2)
            with pytest.raises(StatusUnavailableError):
                await jobs.status("x")

    asyncio.run(scenario())


# -- define_job --------------------------------------------------------------------------------


def test_result_ttl_takes_durations_and_zero() -> None:
    assert receipt_job.result_ttl == DEFAULT_RESULT_TTL == 86400
    assert count_job.result_ttl == 3600
    assert define_job(name="none", handler=make_receipt, result_ttl=0).result_ttl == 0
    with pytest.raises(ConfigurationError, match="'bad': result_ttl: a delay cannot be negative"):
        define_job(name="bad", handler=make_receipt, result_ttl=-1)
    with pytest.raises(ConfigurationError, match="'bad': result_ttl must be finite"):
        define_job(name="bad", handler=make_receipt, result_ttl=float("inf"))
    with pytest.raises(ConfigurationError, match="'bad': result_ttl: cannot read delay"):
        define_job(name="bad", handler=make_receipt, result_ttl="soon")
