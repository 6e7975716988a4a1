"""MockQueueDriver as a StatusStore: states read off what it holds, ended jobs kept for their
keep_for, cancellation, and claims by priority."""

from __future__ import annotations

import time

import pytest

from glasswork.jobs import MockQueueDriver
from glasswork.jobs.drivers.contract import capabilities_of
from glasswork.jobs.drivers.records import FinalStatus
from glasswork.jobs.message import JobMessage


def _message(name: str = "work", *, queue: str = "default", priority: int = 0) -> JobMessage:
    return JobMessage.create(name, {"n": 1}, queue=queue, priority=priority)


def test_the_mock_has_the_status_group_and_claims_by_priority() -> None:
    caps = capabilities_of(MockQueueDriver())
    assert caps.status is not None and caps.priorities


def test_live_states_follow_the_delivery() -> None:
    driver = MockQueueDriver()
    now, later = _message(), _message()
    driver.enqueue(now)
    driver.enqueue_in(later, 60)
    assert driver.job_status(now.job_id).state == "pending"  # type: ignore[union-attr]
    assert driver.job_status(later.job_id).state == "scheduled"  # type: ignore[union-attr]
    [received] = driver.receive()
    running = driver.job_status(now.job_id)
    assert running is not None and running.state == "running" and running.attempts == 1
    assert driver.record_start(received)
    driver.record_progress(now.job_id, 0.5, "half")
    driver.record_retry(received, "boom", "Traceback ...")
    driver.nack(received, 30)
    retrying = driver.job_status(now.job_id)
    assert retrying is not None and retrying.state == "retrying"
    assert (retrying.error, retrying.traceback) == ("boom", "Traceback ...")
    assert (retrying.progress, retrying.progress_note) == (0.5, "half")
    assert driver.job_status("no-such-job") is None


def test_finish_acks_and_keeps_the_result_for_keep_for_seconds() -> None:
    driver = MockQueueDriver()
    message = _message()
    driver.enqueue(message)
    [received] = driver.receive()
    driver.finish(received, FinalStatus("done", result={"total": 3}, keep_for=0.05))
    assert driver.pending == []
    done = driver.job_status(message.job_id)
    assert done is not None and done.state == "done" and done.result == {"total": 3}
    assert done.finished and done.attempts == 1
    deadline = time.monotonic() + 5
    while driver.job_status(message.job_id) is not None:
        assert time.monotonic() < deadline, "the ended status was never forgotten"
        time.sleep(0.01)
    assert driver.job_history() == []


def test_finish_with_keep_for_zero_keeps_nothing() -> None:
    driver = MockQueueDriver()
    message = _message()
    driver.enqueue(message)
    [received] = driver.receive()
    driver.finish_many([(received, FinalStatus("done", result=1, keep_for=0))])
    assert driver.pending == [] and driver.job_status(message.job_id) is None


def test_a_dead_job_acked_before_its_finish_is_still_recorded() -> None:
    driver = MockQueueDriver()
    message = _message()
    driver.enqueue(message)
    [received] = driver.receive()
    driver.dead_letter(received.body, "always fails", queue="default")
    driver.ack(received)
    driver.finish(received, FinalStatus("dead", error="always fails", traceback="tb"))
    dead = driver.job_status(message.job_id)
    assert dead is not None and (dead.state, dead.error, dead.traceback) == (
        "dead",
        "always fails",
        "tb",
    )


def test_a_stale_delivery_does_not_overwrite_a_live_job() -> None:
    driver = MockQueueDriver()
    message = _message()
    driver.enqueue(message)
    [stale] = driver.receive()
    driver.nack(stale)
    [current] = driver.receive()
    driver.finish(stale, FinalStatus("done", result="stale"))
    live = driver.job_status(message.job_id)
    assert live is not None and live.state == "running" and live.attempts == 2
    assert not driver.record_start(stale) and driver.record_start(current)


def test_cancelling_a_waiting_job_ends_it_and_it_is_never_received() -> None:
    driver = MockQueueDriver()
    message = _message()
    driver.enqueue_in(message, 60)
    assert driver.cancel(message.job_id, "not needed")
    cancelled = driver.job_status(message.job_id)
    assert cancelled is not None and (cancelled.state, cancelled.error) == (
        "cancelled",
        "not needed",
    )
    assert driver.receive(include_delayed=True) == []
    assert not driver.cancel(message.job_id)  # ended already
    assert not driver.cancel("no-such-job")


def test_cancelling_a_running_job_asks_its_worker_to_stop() -> None:
    driver = MockQueueDriver()
    first, second = _message(), _message()
    driver.enqueue_many([first, second])
    received = driver.receive()
    assert driver.cancel(first.job_id)
    assert driver.cancel_requested([first.job_id, second.job_id]) == {first.job_id}
    assert driver.job_status(first.job_id).state == "running"  # type: ignore[union-attr]
    # Cancelled between its claim and its start: it does not run, and it ends cancelled.
    assert not driver.record_start(received[0]) and driver.record_start(received[1])
    assert driver.job_status(first.job_id).state == "cancelled"  # type: ignore[union-attr]
    assert [m.job_id for m in driver.pending] == [second.job_id]


def test_a_running_job_cancelled_then_released_ends_cancelled_and_never_runs_again() -> None:
    # A worker that stops (shutdown) hands back a job it was asked to stop: it must not run
    # on the next worker.
    driver = MockQueueDriver()
    message = _message()
    driver.enqueue(message)
    [received] = driver.receive()
    assert driver.record_start(received)
    assert driver.cancel(message.job_id, "no longer wanted")
    driver.nack(received, 0)
    assert driver.receive() == []
    status = driver.job_status(message.job_id)
    assert status is not None and (status.state, status.error) == ("cancelled", "no longer wanted")


def test_receive_takes_higher_priorities_first_and_fifo_among_equals() -> None:
    driver = MockQueueDriver()
    low1, high1, low2, high2 = (
        _message("low1"),
        _message("high1", priority=5),
        _message("low2"),
        _message("high2", priority=5),
    )
    urgent = _message("urgent", priority=9)
    for m in (low1, high1, low2, high2, urgent):
        driver.enqueue(m)
    names = [JobMessage.from_json(r.body).job_name for r in driver.receive(max_messages=10)]
    assert names == ["urgent", "high1", "high2", "low1", "low2"]
    assert driver.job_status(urgent.job_id).priority == 9  # type: ignore[union-attr]


def test_history_is_newest_first_filtered_and_paged() -> None:
    driver = MockQueueDriver()
    messages = [_message(f"job{i}", queue="a" if i % 2 else "b") for i in range(5)]
    for m in messages:
        driver.enqueue(m)
    for received in driver.receive(max_messages=3):
        driver.finish(received, FinalStatus("done"))
    assert {s.state for s in driver.job_history()} == {"done", "pending"}
    done = driver.job_history(state="done")
    assert [s.job_name for s in done] == ["job2", "job1", "job0"]
    first = driver.job_history(state="done", limit=2)
    rest = driver.job_history(state="done", before=first[-1].job_id)
    assert [s.job_name for s in first + rest] == ["job2", "job1", "job0"]
    assert [s.job_name for s in driver.job_history(queue="a", job_name="job3")] == ["job3"]


def test_a_drain_records_how_each_job_ended_and_wait_returns_the_result() -> None:
    from pydantic import BaseModel

    from glasswork import define_module
    from glasswork.jobs import JobService, define_job
    from glasswork.jobs.errors import JobFailedError

    class Text(BaseModel):
        text: str

    def count(payload: Text) -> int:
        return len(payload.text.split())

    def refuse(payload: Text) -> None:
        raise ValueError(f"no: {payload.text}")

    counted = define_job(name="count", schema=Text, handler=count)
    refused = define_job(
        name="refuse", schema=Text, handler=refuse, retry={"max_attempts": 2, "backoff": 0}
    )
    driver = MockQueueDriver()
    service = JobService(driver)
    ok = service.enqueue(counted, Text(text="a b c"))
    bad = service.enqueue(refused, Text(text="x"))
    driver.drain(define_module(name="app", jobs=[counted, refused]))
    assert ok.wait(timeout=1) == 3
    done = ok.status()
    assert done is not None and (done.state, done.attempts, done.result) == ("done", 1, 3)
    with pytest.raises(JobFailedError) as failed:
        bad.wait(timeout=1)
    assert failed.value.state == "dead" and "no: x" in (failed.value.error or "")
    assert failed.value.traceback is not None and "ValueError" in failed.value.traceback
    dead = bad.status()
    assert dead is not None and dead.attempts == 2


def test_history_refuses_a_state_that_does_not_exist() -> None:
    with pytest.raises(ValueError, match="unknown job state 'bogus'"):
        MockQueueDriver().job_history(state="bogus")
