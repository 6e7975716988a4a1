"""The rules of a job's life (StatusStore, priorities) every SQL driver keeps: a class of
tests that tests/test_sqlite_status.py and tests/test_postgres_status.py subclass with an
``open_driver`` fixture (``open_driver(**settings)`` opens another driver on the same file
or schema, closed after the test)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from glasswork import define_module
from glasswork.jobs import JobMessage, JobService, define_job
from glasswork.jobs.drivers.contract import capabilities_of
from glasswork.jobs.drivers.records import FinalStatus, ReceivedMessage
from glasswork.jobs.worker import Worker

Opener = Callable[..., Any]


def msg(name: str = "ping", payload: object = None, **kw: Any) -> JobMessage:
    return JobMessage.create(name, payload, **kw)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``condition`` until it is truthy (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def claim_one(driver: Any, queue: str = "default", wait: float = 0.0) -> ReceivedMessage | None:
    got = driver.receive([queue], max_messages=1, wait_seconds=wait)
    return got[0] if got else None


def job_id_of(received: ReceivedMessage) -> str:
    return JobMessage.from_json(received.body).job_id


class Running:
    """A worker running in a thread until the block ends (then stopped and joined)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, daemon=True)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the worker did not stop"


def worker_for(driver: Any, *jobs: Any, concurrency: int = 2) -> Worker:
    return Worker(
        module=define_module(name="m", jobs=list(jobs)),
        driver=driver,
        install_signal_handlers=False,
        wait_seconds=0.05,
        concurrency=concurrency,
    )


class StatusRules:
    """The rules; the subclass provides ``open_driver``."""

    def test_the_driver_declares_the_status_store_and_priorities(self, open_driver: Opener) -> None:
        caps = capabilities_of(open_driver())
        assert caps.status is not None and caps.priorities

    def test_an_id_or_filter_no_job_can_have_finds_nothing_and_a_bad_state_is_refused(
        self, open_driver: Opener
    ) -> None:
        driver = open_driver()
        driver.enqueue(msg())
        for job_id in ("", "a\x00b", "x" * 10_000, "'; DROP TABLE glasswork_jobs; --"):
            assert driver.job_status(job_id) is None
            assert driver.cancel(job_id) is False
        assert driver.job_history(job_name="p\x00ng") == []
        assert driver.job_history(queue="\x00") == []
        assert driver.job_history(before="\x00") == []
        assert len(driver.job_history()) == 1  # nothing was harmed
        with pytest.raises(ValueError, match="unknown job state 'bogus'"):
            driver.job_history(state="bogus")

    def test_a_queued_job_shows_scheduled_pending_running_and_retrying(
        self, open_driver: Opener
    ) -> None:
        driver = open_driver()
        later = msg()
        driver.enqueue_at(later, datetime.now(UTC) + timedelta(hours=1))
        assert driver.job_status(later.job_id).state == "scheduled"
        now = msg("work", {"n": 1}, queue="q", priority=3)
        driver.enqueue(now)
        status = driver.job_status(now.job_id)
        assert (status.state, status.attempts, status.job_name, status.queue) == (
            "pending",
            0,
            "work",
            "q",
        )
        assert status.priority == 3 and status.enqueued_at is not None
        received = claim_one(driver, "q")
        assert received is not None
        assert (driver.job_status(now.job_id).state, driver.job_status(now.job_id).attempts) == (
            "running",
            1,
        )
        driver.record_progress(now.job_id, 0.5, "half")
        running = driver.job_status(now.job_id)
        assert (running.progress, running.progress_note) == (0.5, "half")
        driver.record_retry(received, "boom", "Traceback: boom\n")
        driver.nack(received, 3600)
        retrying = driver.job_status(now.job_id)
        assert (retrying.state, retrying.attempts, retrying.error, retrying.traceback) == (
            "retrying",
            1,
            "boom",
            "Traceback: boom\n",
        )
        assert driver.job_status("no-such-job") is None

    def test_finish_keeps_the_result_and_removes_the_job(self, open_driver: Opener) -> None:
        driver = open_driver()
        message = msg()
        driver.enqueue(message)
        received = claim_one(driver)
        driver.finish(received, FinalStatus("done", result={"total": 3}, progress=1.0))
        status = driver.job_status(message.job_id)
        assert (status.state, status.result, status.attempts, status.progress) == (
            "done",
            {"total": 3},
            1,
            1.0,
        )
        assert status.finished and driver.pending_count() == 0
        assert claim_one(driver) is None

    def test_finish_with_nothing_to_keep_only_acknowledges(self, open_driver: Opener) -> None:
        driver = open_driver()
        message = msg()
        driver.enqueue(message)
        driver.finish_many([(claim_one(driver), FinalStatus("done", result=1, keep_for=0))])
        assert driver.pending_count() == 0
        assert driver.job_status(message.job_id) is None
        assert driver.job_history() == []

    def test_status_never_says_done_for_a_delivery_that_was_not_the_workers_anymore(
        self, open_driver: Opener
    ) -> None:
        # Worker A's lease ran out and worker B claimed the job again: A's finish must not
        # record an end, since B is running the job now.
        driver = open_driver(visibility_timeout=0.2)
        message = msg()
        driver.enqueue(message)
        first = claim_one(driver)
        second = wait_for(lambda: claim_one(driver))
        driver.finish(first, FinalStatus("done", result="stale"))
        status = driver.job_status(message.job_id)
        assert (status.state, status.attempts) == ("running", 2)
        driver.finish(second, FinalStatus("done", result="fresh"))
        assert driver.job_status(message.job_id).result == "fresh"

    def test_a_job_killed_mid_run_never_shows_done(self, open_driver: Opener) -> None:
        driver = open_driver(visibility_timeout=0.2)
        message = msg()
        driver.enqueue(message)
        assert claim_one(driver) is not None  # its worker dies here, never finishing it
        assert driver.job_status(message.job_id).state == "running"
        again = wait_for(lambda: claim_one(driver))
        assert driver.job_status(message.job_id).attempts == 2
        driver.record_retry(again, "lost", None)
        driver.nack(again, 3600)
        assert driver.job_status(message.job_id).state == "retrying"

    def test_a_dead_job_shows_its_dead_letter_or_its_kept_end(self, open_driver: Opener) -> None:
        driver = open_driver()
        plain, kept = msg("a"), msg("b")
        driver.enqueue_many([plain, kept])
        for received in driver.receive(max_messages=2):
            driver.dead_letter(received.body, "too many failures", traceback="Traceback: x\n")
            driver.ack(received)
            keep = 0 if job_id_of(received) == plain.job_id else 60
            driver.finish(received, FinalStatus("dead", error="too many failures", keep_for=keep))
        from_dead_letter = driver.job_status(plain.job_id)
        assert (from_dead_letter.state, from_dead_letter.error, from_dead_letter.traceback) == (
            "dead",
            "too many failures",
            "Traceback: x\n",
        )
        from_end = driver.job_status(kept.job_id)
        assert (from_end.state, from_end.job_name, from_end.attempts) == ("dead", "b", 1)
        assert {s.job_id for s in driver.job_history(state="dead")} == {
            plain.job_id,
            kept.job_id,
        }

    def test_a_dead_finish_before_the_acknowledgement_still_removes_the_job(
        self, open_driver: Opener
    ) -> None:
        driver = open_driver(visibility_timeout=0.2)
        message = msg()
        driver.enqueue(message)
        received = claim_one(driver)
        driver.dead_letter(received.body, "bad", traceback=None)
        driver.finish(received, FinalStatus("dead", error="bad", traceback="tb"))
        assert driver.pending_count() == 0  # its lease running out cannot bring it back
        assert driver.job_status(message.job_id).state == "dead"

    def test_an_expired_end_is_forgotten(self, open_driver: Opener) -> None:
        driver = open_driver()
        message = msg()
        driver.enqueue(message)
        driver.finish(claim_one(driver), FinalStatus("done", keep_for=0.2))
        assert driver.job_status(message.job_id).state == "done"
        wait_for(lambda: driver.job_status(message.job_id) is None)

    # -- cancellation ----------------------------------------------------------------------

    def test_a_cancelled_waiting_job_never_runs_even_after_a_restart(
        self, open_driver: Opener
    ) -> None:
        driver = open_driver()
        pending, scheduled, other = msg(), msg(), msg()
        driver.enqueue(pending)
        driver.enqueue_in(scheduled, 3600)
        driver.enqueue(other)
        assert driver.cancel(pending.job_id) and driver.cancel(scheduled.job_id, "not needed")
        assert driver.job_status(pending.job_id).state == "cancelled"
        assert driver.job_status(scheduled.job_id).error == "not needed"
        driver.close()
        reopened = open_driver()
        assert reopened.pending_count() == 1  # their rows are gone: nothing can claim them
        claimed = reopened.receive(max_messages=10)
        assert [job_id_of(r) for r in claimed] == [other.job_id]
        assert reopened.job_status(pending.job_id).state == "cancelled"
        assert not reopened.cancel(pending.job_id)  # it has ended
        assert not reopened.cancel("no-such-job")

    def test_a_cancelled_retrying_job_never_runs_again(self, open_driver: Opener) -> None:
        driver = open_driver()
        message = msg()
        driver.enqueue(message)
        received = claim_one(driver)
        driver.nack(received, 0)
        assert driver.job_status(message.job_id).state == "retrying"
        assert driver.cancel(message.job_id)
        assert claim_one(driver) is None
        status = driver.job_status(message.job_id)
        assert (status.state, status.attempts) == ("cancelled", 1)

    def test_a_running_job_is_asked_to_stop(self, open_driver: Opener) -> None:
        driver = open_driver()
        message, other = msg(), msg()
        driver.enqueue_many([message, other])
        [a, b] = driver.receive(max_messages=2)
        assert driver.cancel_requested([job_id_of(a), job_id_of(b)]) == set()
        assert driver.cancel(message.job_id)
        assert driver.cancel_requested([message.job_id, other.job_id]) == {message.job_id}
        assert driver.job_status(message.job_id).state == "running"
        assert driver.record_start(a) is True
        mine = a if job_id_of(a) == message.job_id else b
        driver.finish(mine, FinalStatus("cancelled", error="cancelled"))
        assert driver.job_status(message.job_id).state == "cancelled"

    def test_a_job_whose_worker_died_after_cancel_was_asked_ends_cancelled_unrun(
        self, open_driver: Opener
    ) -> None:
        driver = open_driver(visibility_timeout=0.3)
        message = msg()
        driver.enqueue(message)
        assert claim_one(driver) is not None  # this worker dies holding it
        assert driver.cancel(message.job_id)
        ran: list[str] = []
        job = define_job(name="ping", handler=lambda _: ran.append("ran"))
        wait_for(lambda: driver.stats()["default"].ready == 1)  # its lease ran out
        worker = Worker(module=define_module(name="m", jobs=[job]), driver=open_driver())
        worker.run_until_empty(timeout=10)
        assert ran == []
        status = driver.job_status(message.job_id)
        assert (status.state, status.attempts) == ("cancelled", 1)
        assert driver.pending_count() == 0

    def test_cancel_racing_claims_never_lets_a_cancelled_job_run(self, open_driver: Opener) -> None:
        jobs = [msg(payload={"n": n}) for n in range(200)]
        open_driver().enqueue_many(jobs)
        claimed: list[str] = []
        cancelled: dict[str, bool] = {}
        start = threading.Barrier(2)

        def claim() -> None:
            driver = open_driver(visibility_timeout=60)
            start.wait()
            while len(claimed) < len(jobs):
                got = driver.receive(max_messages=5)
                claimed.extend(job_id_of(r) for r in got)
                if not got:
                    break

        def cancel() -> None:
            driver = open_driver()
            start.wait()
            for message in jobs:
                cancelled[message.job_id] = driver.cancel(message.job_id)

        threads = [threading.Thread(target=claim), threading.Thread(target=cancel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        check = open_driver()
        asked = check.cancel_requested([m.job_id for m in jobs])
        for message in jobs:
            status = check.job_status(message.job_id)
            assert cancelled[message.job_id], "every job was waiting or running"
            if message.job_id in claimed:
                assert status.state == "running" and message.job_id in asked
            else:
                assert status.state == "cancelled" and message.job_id not in asked
        assert len(set(claimed)) == len(claimed)

    # -- priorities ------------------------------------------------------------------------

    def test_higher_priority_jobs_are_claimed_first_and_equal_ones_in_order(
        self, open_driver: Opener
    ) -> None:
        driver = open_driver()
        order = [0, 5, -1, 5, 10, 0, -3]
        messages = [msg(payload={"n": n}, priority=p) for n, p in enumerate(order)]
        for m in messages:
            driver.enqueue(m)
        claimed = [job_id_of(claim_one(driver)) for _ in messages]
        ranked = sorted(range(len(order)), key=lambda n: (-order[n], n))
        assert claimed == [messages[n].job_id for n in ranked]

    def test_a_batch_keeps_its_priorities_and_one_claim_returns_them_in_order(
        self, open_driver: Opener
    ) -> None:
        driver = open_driver()
        messages = [msg(payload={"n": n}, priority=p) for n, p in enumerate([1, 0, 7, 1, -2])]
        driver.enqueue_many(messages)
        claimed = [job_id_of(r) for r in driver.receive(max_messages=10)]
        assert claimed == [messages[n].job_id for n in (2, 0, 3, 1, 4)]
        assert [driver.job_status(m.job_id).priority for m in messages] == [1, 0, 7, 1, -2]

    def test_many_distinct_priorities_are_still_claimed_in_order(self, open_driver: Opener) -> None:
        driver = open_driver()
        levels = [(n * 7) % 41 - 20 for n in range(41)]  # -20..20, shuffled
        messages = [msg(payload={"n": n}, priority=p) for n, p in enumerate(levels)]
        driver.enqueue_many(messages)
        claimed = [job_id_of(r) for r in driver.receive(max_messages=50)]
        ranked = sorted(range(len(levels)), key=lambda n: -levels[n])
        assert claimed == [messages[n].job_id for n in ranked]

    def test_a_delayed_high_priority_job_waits_for_its_time(self, open_driver: Opener) -> None:
        driver = open_driver()
        urgent_later, plain = msg(priority=9), msg()
        driver.enqueue_in(urgent_later, 3600)
        driver.enqueue(plain)
        assert job_id_of(claim_one(driver)) == plain.job_id
        assert claim_one(driver) is None

    # -- history ---------------------------------------------------------------------------

    def test_history_lists_newest_first_with_filters_and_pages(self, open_driver: Opener) -> None:
        driver = open_driver()
        done = [msg("a", payload=n) for n in range(3)]
        for m in done:
            driver.enqueue(m)
            driver.finish(claim_one(driver), FinalStatus("done", result=m.payload))
            time.sleep(0.01)
        waiting = msg("b", queue="other")
        driver.enqueue(waiting)
        everything = driver.job_history()
        assert [s.job_id for s in everything] == [waiting.job_id] + [
            m.job_id for m in reversed(done)
        ]
        assert [s.job_id for s in driver.job_history(state="done", limit=2)] == [
            done[2].job_id,
            done[1].job_id,
        ]
        second_page = driver.job_history(state="done", limit=2, before=done[1].job_id)
        assert [s.job_id for s in second_page] == [done[0].job_id]
        assert [s.job_id for s in driver.job_history(job_name="b")] == [waiting.job_id]
        assert [s.job_id for s in driver.job_history(queue="other")] == [waiting.job_id]
        assert [s.state for s in driver.job_history(state="pending")] == ["pending"]
        assert driver.job_history(state="running") == []

    # -- through the service and the worker -------------------------------------------------

    def test_through_the_service_a_result_is_waited_for_and_a_cancelled_job_never_runs(
        self, open_driver: Opener
    ) -> None:
        ran: list[int] = []

        def add(payload: Any) -> int:
            ran.append(payload["a"])
            return int(payload["a"] + payload["b"])

        job = define_job(name="add", handler=add)
        driver = open_driver()
        service = JobService(driver)
        handle = service.enqueue(job, {"a": 1, "b": 2})
        urgent = service.enqueue(job, {"a": 10, "b": 0}, priority=5)
        dropped = service.enqueue(job, {"a": 99, "b": 0})
        assert service.cancel(dropped.job_id)
        worker_for(driver, job, concurrency=1).run_until_empty(timeout=30)  # one at a time
        assert service.wait(handle.job_id, timeout=10) == 3
        assert service.status(urgent.job_id).result == 10
        assert ran == [10, 1]  # the urgent one first; the cancelled one never
        assert service.status(dropped.job_id).state == "cancelled"

    def test_through_the_worker_a_running_job_stops_when_cancelled(
        self, open_driver: Opener
    ) -> None:
        started = threading.Event()

        def handler(payload: Any, ctx: Any) -> None:
            started.set()
            ctx.progress(0.25, "started")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                ctx.raise_if_cancelled()
                time.sleep(0.01)
            raise AssertionError("never asked to stop")

        job = define_job(name="long", handler=handler)
        driver = open_driver()
        job_id = JobService(driver).enqueue(job, None).job_id
        with Running(worker_for(driver, job)):
            assert started.wait(30)
            wait_for(lambda: driver.job_status(job_id).progress == 0.25)
            assert driver.cancel(job_id)
            ended = wait_for(lambda: (s := driver.job_status(job_id)).finished and s)
        assert ended.state == "cancelled" and driver.pending_count() == 0

    def test_through_the_worker_a_failing_job_is_retrying_then_dead_with_its_traceback(
        self, open_driver: Opener
    ) -> None:
        def fail(payload: Any) -> None:
            raise ValueError("broken input")

        job = define_job(name="fail", handler=fail, retry={"max_attempts": 2, "backoff": 0})
        driver = open_driver()
        job_id = JobService(driver).enqueue(job, None).job_id
        worker_for(driver, job).run_until_empty(timeout=30, retries_within=5)
        dead = driver.job_status(job_id)
        assert (dead.state, dead.attempts) == ("dead", 2)
        assert "broken input" in (dead.error or "") and "ValueError" in (dead.traceback or "")
