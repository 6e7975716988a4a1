"""Idempotent jobs: a key claimed before the run, completed after it; redeliveries of a
completed key are acknowledged without running; stores keep that across workers."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    BatchRetryError,
    Idempotency,
    JobInProgressError,
    JobMessage,
    JobService,
    MockQueueDriver,
    PermanentJobError,
    bootstrap_worker,
    define_job,
    define_periodic_job,
)
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError
from glasswork.jobs.execution import DeadLetter, Done, Retry
from glasswork.jobs.idempotency import (
    Duplicate,
    IdempotencyStore,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
    idempotency_key,
)
from glasswork.jobs.testing import eventbridge_event, sqs_record
from glasswork.jobs.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from idempotency_support import (
    check_claim_complete_release,
    check_jobs_whose_names_and_keys_run_together_never_share_a_key,
    check_lapsed_records_count_as_absent,
    check_one_of_many_concurrent_claims_wins,
)

# -- stores -------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request, tmp_path: Path):
    if request.param == "memory":
        shared = MemoryIdempotencyStore()
        return lambda: shared
    return lambda: SQLiteIdempotencyStore(tmp_path / "keys.db")


def test_store_claims_completes_and_releases_by_token(make_store) -> None:
    check_claim_complete_release(make_store())


def test_store_treats_lapsed_records_as_absent(make_store) -> None:
    check_lapsed_records_count_as_absent(make_store())


def test_store_lets_one_of_many_concurrent_claims_win(make_store) -> None:
    check_one_of_many_concurrent_claims_wins(make_store)


def test_store_keeps_the_keys_of_two_jobs_apart(make_store) -> None:
    check_jobs_whose_names_and_keys_run_together_never_share_a_key(make_store())


def test_stored_keys_are_unambiguous_and_read_as_before_where_they_were() -> None:
    # As every release wrote them: keys of job names without "#" are unchanged, so a worker
    # upgraded with completed keys in its store does not run those jobs again.
    assert idempotency_key("charge", "o-17") == "charge#o-17"
    assert idempotency_key("refund", "partial#o-17") == "refund#partial#o-17"
    # A name holding "#" made those ambiguous: it is length-prefixed now.
    assert idempotency_key("refund#partial", "o-17") == "#14#refund#partial#o-17"
    # A key that looks like another key's hash is hashed too.
    long_key = "x" * 500
    hashed = idempotency_key("j", long_key)
    assert hashed.startswith("j#sha256:")
    assert idempotency_key("j", hashed.removeprefix("j#")) != hashed
    pairs = [
        ("a", "b#c"),
        ("a#b", "c"),
        ("#a", "b"),
        ("a", "#b"),
        ("#1#a", "b"),
        ("a#", "b"),
        ("3", "#a#b"),
    ]
    assert len({idempotency_key(name, key) for name, key in pairs}) == len(pairs)


def test_a_key_completed_by_the_previous_release_is_still_a_duplicate() -> None:
    runs = Runs()
    driver = MockQueueDriver()
    job = define_job(name="charge", handler=runs, idempotent=Idempotency(key=lambda p: p["id"]))
    handler = lambda_handler(job, driver=driver)
    store = driver.idempotency_store()
    store.claim("charge#o-17", "old-release", time.time() + 60)  # the form it wrote
    store.complete("charge#o-17", "old-release", time.time() + 3600)
    outcome = handler.executor.execute_sync(JobMessage.create("charge", {"id": "o-17"}), 1)
    assert isinstance(outcome, Duplicate) and runs.calls == []


def test_sqlite_worker_runs_jobs_whose_names_and_keys_run_together(tmp_path: Path) -> None:
    ran: list[str] = []

    def job(name: str) -> Any:
        return define_job(
            name=name,
            handler=lambda p: ran.append(name),
            idempotent=Idempotency(key=lambda p: p["order"]),
        )

    jobs = [job("refund"), job("refund#partial")]
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    JobService(driver).enqueue(jobs[0], {"order": "partial#o-17"})
    JobService(driver).enqueue(jobs[1], {"order": "o-17"})
    worker = Worker(module=define_module("app", jobs=jobs), driver=driver)
    assert worker.run_until_empty(timeout=20).done == 2
    assert sorted(ran) == ["refund", "refund#partial"]


def test_sqlite_store_refuses_memory_databases() -> None:
    with pytest.raises(ConfigurationError):
        SQLiteIdempotencyStore(":memory:")


def test_sqlite_store_deletes_lapsed_records_as_it_goes(tmp_path: Path) -> None:
    store = SQLiteIdempotencyStore(tmp_path / "keys.db")
    store.claim("old#1", "a", time.time() - 1)
    store._next_purge = 0.0
    store.claim("new#1", "a", time.time() + 60)
    assert store.get("old#1") is None and store.get("new#1") is not None


# -- the step -----------------------------------------------------------------------------


class Runs:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, payload: Any, ctx: Any) -> None:
        self.calls.append(payload)


def lambda_handler(*jobs: Any, **options: Any) -> Any:
    options.setdefault("driver", MockQueueDriver())
    return bootstrap_worker(module=define_module("app", jobs=list(jobs)), **options)


def test_the_same_message_delivered_twice_runs_once() -> None:
    runs = Runs()
    job = define_job(name="charge", handler=runs, idempotent=True)
    handler = lambda_handler(job)
    body = JobMessage.create("charge", {"cents": 500}).encode()

    first = handler.executor.execute_sync(body, 1)
    again = handler.executor.execute_sync(body, 2)  # e.g. its visibility timeout ran out
    assert type(first) is Done
    assert isinstance(again, Duplicate) and again.kind == "duplicate"
    assert again.key.startswith("charge#")
    assert runs.calls == [{"cents": 500}]
    # The Lambda worker acknowledges a duplicate like any finished job.
    assert handler({"Records": [sqs_record(body)]}, None) == {"batchItemFailures": []}
    assert len(runs.calls) == 1


def test_a_failed_run_frees_its_key_so_the_retry_runs() -> None:
    runs = Runs()

    def flaky(payload: Any, ctx: Any) -> None:
        runs(payload, ctx)
        if ctx.attempt == 1:
            raise RuntimeError("down")

    store = MemoryIdempotencyStore()
    job = define_job(name="flaky", handler=flaky, idempotent=Idempotency(store=store))
    handler = lambda_handler(job)
    message = JobMessage.create("flaky", None)
    assert isinstance(handler.executor.execute_sync(message, 1), Retry)
    assert store.get(idempotency_key("flaky", message.job_id)) is None
    assert type(handler.executor.execute_sync(message, 2)) is Done
    assert store.get(idempotency_key("flaky", message.job_id)).completed
    assert len(runs.calls) == 2


def test_a_run_already_in_progress_elsewhere_is_retried_not_run() -> None:
    runs = Runs()
    store = MemoryIdempotencyStore()
    job = define_job(
        name="slow",
        handler=runs,
        idempotent=Idempotency(store=store),
        retry={"backoff": 5, "jitter": False},
    )
    handler = lambda_handler(job)
    message = JobMessage.create("slow", None)
    key = idempotency_key("slow", message.job_id)
    store.claim(key, "other-worker", time.time() + 3)  # another worker is running it

    outcome = handler.executor.execute_sync(message, 2)
    assert isinstance(outcome, Retry) and isinstance(outcome.error, JobInProgressError)
    assert 2 < outcome.delay <= 3  # when that claim lapses, at the latest
    assert runs.calls == []
    with pytest.raises(BatchRetryError):  # its only record: Lambda returns the batch
        handler({"Records": [sqs_record(message)]}, None)

    store.complete(key, "other-worker", time.time() + 60)  # ...and it finished
    assert isinstance(handler.executor.execute_sync(message, 3), Duplicate)
    assert runs.calls == []


def test_a_claim_whose_worker_died_lapses_and_the_job_then_runs() -> None:
    runs = Runs()
    store = MemoryIdempotencyStore()
    job = define_job(name="j", handler=runs, idempotent=Idempotency(store=store))
    handler = lambda_handler(job)
    message = JobMessage.create("j", None)
    store.claim(idempotency_key("j", message.job_id), "dead-worker", time.time() + 0.2)
    assert isinstance(handler.executor.execute_sync(message, 2), Retry)
    time.sleep(0.25)
    assert type(handler.executor.execute_sync(message, 3)) is Done
    assert len(runs.calls) == 1


def test_completed_keys_are_forgotten_after_expires() -> None:
    runs = Runs()
    job = define_job(name="j", handler=runs, idempotent=Idempotency(expires=0.2))
    handler = lambda_handler(job)
    message = JobMessage.create("j", None)
    handler.executor.execute_sync(message, 1)
    assert isinstance(handler.executor.execute_sync(message, 1), Duplicate)
    time.sleep(0.25)
    assert type(handler.executor.execute_sync(message, 1)) is Done
    assert len(runs.calls) == 2


class Order(BaseModel):
    order_id: str
    cents: int


def test_a_payload_key_makes_two_enqueues_of_one_order_one_run() -> None:
    runs = Runs()
    job = define_job(
        name="ship",
        handler=runs,
        schema=Order,
        idempotent=Idempotency(key=lambda order: order.order_id),
    )
    driver = MockQueueDriver()
    service = JobService(driver)
    service.enqueue(job, {"order_id": "o-1", "cents": 100})
    service.enqueue(job, {"order_id": "o-1", "cents": 100})  # a double-click
    service.enqueue(job, {"order_id": "o-2", "cents": 100})
    result = driver.drain(define_module("shop", jobs=[job]))
    assert result.deliveries == 3
    assert [o.order_id for o in runs.calls] == ["o-1", "o-2"]


def test_a_key_of_none_runs_without_deduplication() -> None:
    runs = Runs()
    job = define_job(name="j", handler=runs, idempotent=Idempotency(key=lambda p: None))
    handler = lambda_handler(job)
    message = JobMessage.create("j", None)
    handler.executor.execute_sync(message, 1)
    handler.executor.execute_sync(message, 1)
    assert len(runs.calls) == 2


def test_an_invalid_payload_is_dead_lettered_without_a_key() -> None:
    store = MemoryIdempotencyStore()
    job = define_job(
        name="ship", handler=Runs(), schema=Order, idempotent=Idempotency(store=store, key=str)
    )
    outcome = lambda_handler(job).executor.execute_sync(JobMessage.create("ship", {"x": 1}), 1)
    assert isinstance(outcome, DeadLetter)
    assert store.records() == []


class FailingStore(IdempotencyStore):
    def __init__(self, fail: str) -> None:
        self.inner = MemoryIdempotencyStore()
        self.fail = fail

    def _maybe_fail(self, name: str) -> None:
        if name == self.fail:
            raise ConnectionError(f"store unreachable during {name}")

    def claim(self, key: str, token: str, until: float) -> Any:
        self._maybe_fail("claim")
        return self.inner.claim(key, token, until)

    def complete(self, key: str, token: str, expires_at: float) -> bool:
        self._maybe_fail("complete")
        return self.inner.complete(key, token, expires_at)

    def release(self, key: str, token: str) -> bool:
        self._maybe_fail("release")
        return self.inner.release(key, token)

    def get(self, key: str) -> Any:
        return self.inner.get(key)


def test_a_store_that_cannot_claim_fails_the_run_for_retry() -> None:
    runs = Runs()
    job = define_job(name="j", handler=runs, idempotent=Idempotency(store=FailingStore("claim")))
    outcome = lambda_handler(job).executor.execute_sync(JobMessage.create("j", None), 1)
    assert isinstance(outcome, Retry) and isinstance(outcome.error, ConnectionError)
    assert runs.calls == []  # whether it ran before is unknown: not run, retried


def test_a_store_that_cannot_complete_keeps_the_run_done(caplog) -> None:
    store = FailingStore("complete")
    job = define_job(name="j", handler=Runs(), idempotent=Idempotency(store=store))
    message = JobMessage.create("j", None)
    assert type(lambda_handler(job).executor.execute_sync(message, 1)) is Done
    assert "could not complete idempotency key" in caplog.text
    held = store.get(idempotency_key("j", message.job_id))
    assert held is not None and not held.completed  # it lapses at the end of the run's time


def test_an_idempotent_job_needs_a_store_at_bootstrap() -> None:
    job = define_job(name="j", handler=Runs(), idempotent=True)
    module = define_module("app", jobs=[job])
    with pytest.raises(ConfigurationError, match="no idempotency store"):
        bootstrap_worker(module=module)  # no driver brings one
    store = MemoryIdempotencyStore()
    handler = bootstrap_worker(module=module, idempotency_store=store)
    handler.executor.execute_sync(JobMessage.create("j", None, job_id="x"), 1)
    assert store.get("j#x").completed


def test_a_claim_lasts_the_jobs_timeout_or_what_is_left_of_the_invocation() -> None:
    store = MemoryIdempotencyStore()
    claims: list[float] = []

    def peek(payload: Any, ctx: Any) -> None:
        claims.append(store.get(idempotency_key("j", ctx.job.job_id)).expires_at - time.time())

    job = define_job(name="j", handler=peek, timeout=30, idempotent=Idempotency(store=store))
    handler = lambda_handler(job)
    handler.executor.execute_sync(JobMessage.create("j", None), 1)

    class LambdaContext:
        def get_remaining_time_in_millis(self) -> int:
            return 5000

    handler.executor.execute_sync(JobMessage.create("j", None), 1, lambda_context=LambdaContext())
    assert 29 < claims[0] <= 30
    assert 4 < claims[1] <= 5


def test_an_eventbridge_event_delivered_twice_runs_once() -> None:
    runs = Runs()
    cleanup = define_periodic_job(name="cleanup", handler=runs, idempotent=True)
    handler = lambda_handler(cleanup)
    event = eventbridge_event("cleanup")
    assert handler(event, None)["status"] == "done"
    # The mock keeps statuses: the run's end, recorded under the event id, stops it first.
    assert handler(event, None)["status"] == "skipped"
    assert len(runs.calls) == 1
    # Without a status store, the idempotency key alone stops it.
    handler = lambda_handler(cleanup, driver=None, idempotency_store=MemoryIdempotencyStore())
    assert handler(event, None)["status"] == "done"
    assert handler(event, None)["status"] == "done"
    assert len(runs.calls) == 2


@pytest.mark.parametrize("option", [{"key": "not callable"}, {"expires": -1}, {"expires": "x"}])
def test_bad_idempotency_options_are_refused(option: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Idempotency(**option)


def test_idempotent_option_values() -> None:
    assert define_job(name="a", handler=Runs()).idempotency is None
    assert define_job(name="b", handler=Runs(), idempotent=True).idempotency.expires == 3600
    with pytest.raises(ConfigurationError):
        define_job(name="c", handler=Runs(), idempotent="yes")  # type: ignore[arg-type]
    assert len(idempotency_key("j", "x" * 500)) < 100  # long keys are hashed


# -- the long-running worker on SQLite ------------------------------------------------------


def test_sqlite_workers_keep_keys_in_the_queue_file(tmp_path: Path) -> None:
    runs = Runs()
    job = define_job(name="j", handler=runs, idempotent=True)
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    message = JobMessage.create("j", {"n": 1})
    driver.enqueue(message)
    driver.enqueue(message)  # the same message sent twice (say, a producer's retry)
    worker = Worker(
        module=define_module("w", jobs=[job]),
        driver=driver,
        concurrency=1,
        install_signal_handlers=False,
    )
    summary = worker.run_until_empty(timeout=20)
    assert (summary.jobs, summary.done, summary.counts["duplicate"]) == (2, 1, 1)
    assert "done=1" in str(summary) and "duplicate=1" in str(summary)
    assert len(runs.calls) == 1
    row = (
        sqlite3.connect(tmp_path / "jobs.db")
        .execute("SELECT key, status FROM glasswork_idempotency")
        .fetchall()
    )
    assert row == [(f"j#{message.job_id}", "completed")]


def test_a_dead_letter_frees_its_key_so_a_redrive_runs_it(tmp_path: Path) -> None:
    attempts: list[int] = []

    def fails_once(payload: Any, ctx: Any) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            raise PermanentJobError("bad config, fixed later")

    job = define_job(name="j", handler=fails_once, idempotent=True)
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    JobService(driver).enqueue(job, None)
    module = define_module("w", jobs=[job])
    Worker(module=module, driver=driver, install_signal_handlers=False).run_until_empty()
    assert len(driver.dead_letters()) == 1
    assert driver.redrive() == 1
    summary = Worker(module=module, driver=driver, install_signal_handlers=False).run_until_empty()
    assert summary.done == 1 and len(attempts) == 2


@pytest.mark.slow
def test_a_timed_out_run_frees_its_key_for_the_retry(tmp_path: Path) -> None:
    attempts: list[int] = []

    async def slow_once(payload: Any, ctx: Any) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.sleep(30)

    job = define_job(
        name="j",
        handler=slow_once,
        timeout=0.1,
        idempotent=True,
        retry={"backoff": 0, "jitter": False},
    )
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    JobService(driver).enqueue(job, None)
    worker = Worker(
        module=define_module("w", jobs=[job]), driver=driver, install_signal_handlers=False
    )
    summary = worker.run_until_empty(include_delayed=True, timeout=20)
    assert (summary.retried, summary.done) == (1, 1)
    assert attempts == [1, 2]


def test_a_run_released_at_shutdown_frees_its_key(tmp_path: Path) -> None:
    started = threading.Event()

    async def long(payload: Any, ctx: Any) -> None:
        started.set()
        await asyncio.sleep(30)

    job = define_job(name="j", handler=long, idempotent=True)
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    JobService(driver).enqueue(job, None)
    worker = Worker(
        module=define_module("w", jobs=[job]),
        driver=driver,
        grace_period=0.1,
        install_signal_handlers=False,
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert started.wait(10)
    worker.stop()
    thread.join(10)
    assert worker.summary.released == 1
    keys = (
        sqlite3.connect(tmp_path / "jobs.db")
        .execute("SELECT COUNT(*) FROM glasswork_idempotency")
        .fetchone()
    )
    assert keys == (0,)  # the next worker runs it at once, not after the claim lapses


def test_a_key_function_that_raises_fails_the_run_not_the_batch() -> None:
    def bad_key(payload: Any) -> str:
        raise KeyError("order_id")

    job = define_job(name="j", handler=Runs(), idempotent=Idempotency(key=bad_key))
    handler = lambda_handler(job)
    record = sqs_record(JobMessage.create("j", {}))
    with pytest.raises(BatchRetryError) as returned:
        handler({"Records": [record, sqs_record(JobMessage.create("j", {}))]}, None)
    assert len(returned.value.retried) == 2  # each retried, no crash of the batch
    outcome = handler.executor.execute_sync(JobMessage.create("j", {}), 3)
    assert isinstance(outcome, DeadLetter) and isinstance(outcome.error, KeyError)
