"""The Lambda worker's batches: concurrency, FIFO groups, the invocation's deadline, failures
a partial batch response cannot carry, BaseExceptions and malformed events.

Concurrency is checked by what the jobs record (overlapping intervals, a barrier several
threads must reach together), never by how long a batch took."""

import asyncio
import logging
import threading
import time

import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    BatchRetryError,
    ConfigurationError,
    DeadLetterUnavailableError,
    JobContext,
    JobMessage,
    JobTimeoutError,
    MockQueueDriver,
    PermanentJobError,
    bootstrap_worker,
    define_job,
    define_periodic_job,
)
from glasswork.jobs.testing import FakeLambdaContext, sqs_record


class Item(BaseModel):
    n: int
    group: str = "g"


class Log:
    """A service the jobs write to: (n, event, time) and the threads they ran on."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, float]] = []
        self.threads: list[int] = []
        self.lock = threading.Lock()

    def add(self, n: int, what: str) -> None:
        with self.lock:
            self.events.append((n, what, time.monotonic()))

    def ran(self) -> list[int]:
        return [n for n, what, _ in self.events if what == "start"]

    def interval(self, n: int) -> tuple[float, float]:
        times = {what: at for m, what, at in self.events if m == n}
        return times["start"], times["end"]


def worker(*jobs, driver=None, **options):
    module = define_module(name="w", providers=[Log], jobs=list(jobs))
    return bootstrap_worker(module=module, driver=driver, **options)


def record(n, *, job="work", message_id=None, queue="jobs", group=None, receive_count=1):
    body = JobMessage.create(job, {"n": n, "group": group or "g"})
    return sqs_record(
        body,
        message_id=message_id or f"m-{n}",
        queue=queue,
        group_id=group,
        receive_count=receive_count,
    )


def failures(response):
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


# -- concurrency ----------------------------------------------------------------------------


def test_async_handlers_of_a_batch_run_concurrently():
    async def io(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        await asyncio.sleep(0.05)
        ctx.services.log.add(payload.n, "end")

    handler = worker(define_job(name="work", schema=Item, handler=io))
    assert handler({"Records": [record(n) for n in range(10)]}) == {"batchItemFailures": []}
    log = handler.services.log
    intervals = [log.interval(n) for n in range(10)]
    # Every job started before any finished: all ten were waiting at once.
    assert max(start for start, _ in intervals) < min(end for _, end in intervals)


def test_batch_concurrency_bounds_how_many_records_run_at_once():
    running, peak = 0, 0

    async def io(payload: Item, ctx: JobContext):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    handler = worker(define_job(name="work", schema=Item, handler=io), batch_concurrency=3)
    assert handler({"Records": [record(n) for n in range(9)]}) == {"batchItemFailures": []}
    assert peak == 3


def test_sync_handlers_run_in_order_on_the_handlers_thread_by_default():
    def job(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        ctx.services.log.threads.append(threading.get_ident())

    handler = worker(define_job(name="work", schema=Item, handler=job))
    handler({"Records": [record(n) for n in range(5)]})
    assert handler.services.log.ran() == [0, 1, 2, 3, 4]
    assert set(handler.services.log.threads) == {threading.get_ident()}


def test_sync_concurrency_runs_sync_handlers_on_that_many_threads():
    barrier = threading.Barrier(3, timeout=10)

    def job(payload: Item, ctx: JobContext):
        ctx.services.log.threads.append(threading.get_ident())
        barrier.wait()  # only returns once three jobs are running at the same time

    handler = worker(define_job(name="work", schema=Item, handler=job), sync_concurrency=3)
    assert handler({"Records": [record(n) for n in range(6)]}) == {"batchItemFailures": []}
    assert len(set(handler.services.log.threads)) == 3
    assert threading.get_ident() not in handler.services.log.threads


def test_a_batch_mixing_sync_and_async_jobs_runs_both():
    async def io(payload: Item, ctx: JobContext):
        await asyncio.sleep(0.01)
        ctx.services.log.add(payload.n, "start")

    def plain(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")

    handler = worker(
        define_job(name="work", schema=Item, handler=io),
        define_job(name="plain", schema=Item, handler=plain),
    )
    event = {"Records": [record(1), record(2, job="plain"), record(3), record(4, job="plain")]}
    assert handler(event) == {"batchItemFailures": []}
    assert sorted(handler.services.log.ran()) == [1, 2, 3, 4]


def test_hooks_and_job_loggers_stay_per_record_under_concurrency(caplog):
    seen: list[tuple[str, str]] = []

    async def io(payload: Item, ctx: JobContext):
        for step in range(3):
            ctx.logger.info("step %d of %d", step, payload.n)
            await asyncio.sleep(0.001 * (5 - payload.n))

    def hook(kind):
        return lambda job, ctx: seen.append((kind, job.job_id, ctx.job.job_id))

    handler = worker(
        define_job(name="work", schema=Item, handler=io),
        hooks={"on_job_start": hook("start"), "on_job_complete": hook("complete")},
    )
    event = {"Records": [record(n) for n in range(5)]}
    ids = {n: JobMessage.from_json(r["body"]).job_id for n, r in enumerate(event["Records"])}
    with caplog.at_level(logging.INFO, logger="glasswork.jobs"):
        handler(event)
    lines = [r for r in caplog.records if "step" in r.getMessage()]
    assert len(lines) == 15
    for line in lines:
        n = int(line.getMessage().rsplit(" ", 1)[1])
        assert line.job_id == ids[n] and f"[work {ids[n]}]" in line.getMessage()
    assert all(job_id == ctx_id for _, job_id, ctx_id in seen)
    assert sorted(j for k, j, _ in seen if k == "complete") == sorted(ids.values())


def test_async_jobs_run_concurrently_when_the_handler_is_called_from_async_code():
    async def io(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        await asyncio.sleep(0.02)
        ctx.services.log.add(payload.n, "end")

    handler = worker(define_job(name="work", schema=Item, handler=io))

    async def main():
        return handler({"Records": [record(1), record(2)]})

    assert asyncio.run(main()) == {"batchItemFailures": []}
    (s1, e1), (s2, e2) = handler.services.log.interval(1), handler.services.log.interval(2)
    assert max(s1, s2) < min(e1, e2)


# -- FIFO -----------------------------------------------------------------------------------


def fifo(n, group):
    return record(n, queue="orders.fifo", group=group)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_fifo_groups_keep_their_order_and_only_the_failing_group_is_held_back(kind):
    def body(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        if payload.n == 3:
            raise RuntimeError("group a must wait")

    async def async_body(payload: Item, ctx: JobContext):
        await asyncio.sleep(0.001)
        body(payload, ctx)

    job = define_job(name="work", schema=Item, handler=body if kind == "sync" else async_body)
    handler = worker(job)
    event = {
        "Records": [
            fifo(1, "a"),
            fifo(2, "b"),
            fifo(3, "a"),
            fifo(4, "b"),
            fifo(5, "a"),
            fifo(6, "b"),
        ]
    }
    response = handler(event)
    assert failures(response) == ["m-3", "m-5"]  # the failed record, then the rest of "a"
    ran = handler.services.log.ran()
    assert sorted(ran) == [1, 2, 3, 4, 6]
    assert [n for n in ran if n in (2, 4, 6)] == [2, 4, 6]  # group b, in order
    assert [n for n in ran if n in (1, 3)] == [1, 3]


def test_fifo_groups_run_side_by_side_each_in_order():
    async def io(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        await asyncio.sleep(0.02)
        ctx.services.log.add(payload.n, "end")

    handler = worker(define_job(name="work", schema=Item, handler=io))
    event = {"Records": [fifo(1, "a"), fifo(2, "a"), fifo(3, "b"), fifo(4, "b")]}
    assert handler(event) == {"batchItemFailures": []}
    log = handler.services.log
    a1, a2, b1, b2 = (log.interval(n) for n in (1, 2, 3, 4))
    assert a1[1] <= a2[0] and b1[1] <= b2[0]  # within a group: one after the other
    assert max(a1[0], b1[0]) < min(a1[1], b1[1])  # across groups: at the same time


def test_fifo_a_failed_dead_letter_send_holds_back_the_rest_of_its_group():
    class BrokenDLQ(MockQueueDriver):
        def dead_letter(self, body, reason, *, queue=None):
            raise ConnectionError("DLQ unreachable")

    def job(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        if payload.n == 1:
            raise PermanentJobError("never")

    handler = worker(define_job(name="work", schema=Item, handler=job), driver=BrokenDLQ())
    event = {"Records": [fifo(1, "a"), fifo(2, "a"), fifo(3, "b")]}
    assert failures(handler(event)) == ["m-1", "m-2"]
    assert handler.services.log.ran() == [1, 3]


# -- the invocation's deadline ------------------------------------------------------------


def test_records_that_cannot_finish_in_the_time_left_are_not_started(caplog):
    def slow(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        time.sleep(0.1)
        ctx.services.log.add(payload.n, "end")

    handler = worker(define_job(name="work", schema=Item, handler=slow), deadline_margin=0.05)
    event = {"Records": [record(n) for n in range(10)]}
    with caplog.at_level(logging.WARNING, logger="glasswork.jobs"):
        response = handler(event, FakeLambdaContext(remaining_ms=400))

    ran = handler.services.log.ran()
    assert 1 <= len(ran) < 10
    assert ran == list(range(len(ran)))
    assert all(end for _, end in map(handler.services.log.interval, ran))
    # Every record not run is reported, and never a finished one.
    assert failures(response) == [f"m-{n}" for n in range(len(ran), 10)]
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"{10 - len(ran)} record(s) did not run to the end")


def test_a_job_timeout_longer_than_the_time_left_is_not_started():
    def job(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")

    bounded = define_job(name="work", schema=Item, handler=job, timeout="5s")
    quick = define_job(name="quick", schema=Item, handler=job)
    handler = worker(bounded, quick)
    event = {"Records": [record(1), record(2, job="quick")]}
    response = handler(event, FakeLambdaContext(remaining_ms=2000))
    assert failures(response) == ["m-1"]
    assert handler.services.log.ran() == [2]


def test_async_records_still_running_at_the_deadline_are_stopped_and_reported():
    async def job(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        await asyncio.sleep(0.01 if payload.n == 1 else 30)
        ctx.services.log.add(payload.n, "end")

    handler = worker(define_job(name="work", schema=Item, handler=job), deadline_margin=0.1)
    response = handler({"Records": [record(1), record(2)]}, FakeLambdaContext(remaining_ms=300))
    assert failures(response) == ["m-2"]
    assert [n for n, what, _ in handler.services.log.events if what == "end"] == [1]


def test_an_async_job_is_cancelled_at_its_timeout_as_a_transient_failure():
    failed = []

    async def job(payload: Item, ctx: JobContext):
        if payload.n == 1:
            await asyncio.sleep(30)

    handler = worker(
        define_job(name="work", schema=Item, handler=job, timeout=0.05),
        hooks={"on_job_failed": lambda job, ctx, err: failed.append(err)},
    )
    response = handler({"Records": [record(1), record(2)]}, FakeLambdaContext(remaining_ms=10_000))
    assert failures(response) == ["m-1"]
    [error] = failed
    assert isinstance(error, JobTimeoutError) and error.seconds == 0.05


# -- what a partial batch response cannot carry ------------------------------------------


def test_report_batch_item_failures_false_raises_on_any_retry_after_acking_finished_ones():
    def job(payload: Item, ctx: JobContext):
        if payload.n == 2:
            raise RuntimeError("retry me")

    driver = MockQueueDriver()
    definition = define_job(name="work", schema=Item, handler=job)
    from glasswork.jobs import JobService

    JobService(driver).enqueue_many(definition, [{"n": 1}, {"n": 2}, {"n": 3}])
    received = driver.receive()
    event = {
        "Records": [
            sqs_record(r.body, message_id=r.message_id, receipt_handle=r.receipt) for r in received
        ]
    }
    handler = worker(definition, driver=driver, report_batch_item_failures=False)
    with pytest.raises(BatchRetryError, match="report_batch_item_failures=False") as raised:
        handler(event)
    assert raised.value.retried == [received[1].message_id]
    # The finished jobs were deleted before raising; only the retry is left.
    assert [m.payload for m in driver.pending] == [{"n": 2, "group": "g"}]


def test_drain_treats_a_raised_batch_as_returned_to_the_queue():
    attempts = []

    def job(payload: Item, ctx: JobContext):
        attempts.append(ctx.attempt)
        if ctx.attempt < 2:
            raise RuntimeError("once")

    driver = MockQueueDriver()
    from glasswork.jobs import JobService

    definition = define_job(name="work", schema=Item, handler=job, retry={"backoff": 0})
    JobService(driver).enqueue(definition, {"n": 1})
    result = driver.drain(worker(definition, driver=driver))
    assert attempts == [1, 2]
    assert (result.deliveries, result.retried, result.dead_lettered) == (2, 1, 0)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_fault_while_settling_a_record_reports_it_and_the_batch_goes_on(kind, caplog):
    class Unanswerable:
        def __bool__(self):
            raise RuntimeError("driver bug")

    class OddDriver(MockQueueDriver):
        def dead_letter(self, body, reason, *, queue=None):
            return Unanswerable()

    def body(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        if payload.n == 1:
            raise PermanentJobError("no")

    async def async_body(payload: Item, ctx: JobContext):
        body(payload, ctx)

    job = define_job(name="work", schema=Item, handler=body if kind == "sync" else async_body)
    handler = worker(job, driver=OddDriver())
    assert failures(handler({"Records": [record(1), record(2)]})) == ["m-1"]
    assert sorted(handler.services.log.ran()) == [1, 2]
    assert "could not settle message m-1" in caplog.text


# -- malformed events and records ----------------------------------------------------------


def test_records_that_are_not_a_list_are_a_clear_error():
    handler = worker(define_job(name="work", schema=Item, handler=lambda p, c: None))
    with pytest.raises(ValueError, match="'Records' must be a list"):
        handler({"Records": {"messageId": "x"}})
    assert handler({"Records": []}) == {"batchItemFailures": []}


def test_a_receive_count_that_is_not_a_number_counts_as_attempt_one(caplog):
    attempts = []

    def job(payload: Item, ctx: JobContext):
        attempts.append(ctx.attempt)

    handler = worker(define_job(name="work", schema=Item, handler=job))
    odd = record(1)
    odd["attributes"]["ApproximateReceiveCount"] = "many"
    missing = record(2)
    del missing["attributes"]
    assert handler({"Records": [odd, missing, record(3, receive_count=2)]}) == {
        "batchItemFailures": []
    }
    assert attempts == [1, 1, 2]
    assert "ApproximateReceiveCount 'many' is not an integer" in caplog.text


@pytest.mark.parametrize("count", ["1", "9", "10", "100", "101", "4096", "007", " 3", 5])
def test_a_receive_count_is_read_as_its_integer(count):
    attempts = []

    def job(payload: Item, ctx: JobContext):
        attempts.append(ctx.attempt)

    handler = worker(define_job(name="work", schema=Item, handler=job))
    first = record(1)
    first["attributes"]["ApproximateReceiveCount"] = count
    assert handler({"Records": [first, record(2, receive_count=2)]}) == {"batchItemFailures": []}
    assert attempts == [int(count), 2]


@pytest.mark.slow
def test_a_record_without_a_message_id_runs_and_only_an_unreportable_retry_raises():
    def job(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        if payload.n == 2:
            raise RuntimeError("retry")

    handler = worker(define_job(name="work", schema=Item, handler=job))
    fine = record(1)
    del fine["messageId"]
    assert handler({"Records": [fine, record(3)]}) == {"batchItemFailures": []}

    anonymous_failure = record(2)
    del anonymous_failure["messageId"]
    with pytest.raises(BatchRetryError, match="has no messageId"):
        handler({"Records": [anonymous_failure, record(4)]})
    assert handler.services.log.ran() == [1, 3, 2, 4]


def test_a_record_that_is_not_an_object_is_dead_lettered_and_the_rest_runs(caplog):
    driver = MockQueueDriver()

    def job(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")

    handler = worker(define_job(name="work", schema=Item, handler=job), driver=driver)
    assert handler({"Records": [record(1), "junk", record(2)]}) == {"batchItemFailures": []}
    assert handler.services.log.ran() == [1, 2]
    [dead] = driver.dead_letters
    assert dead.body == "junk" and dead.reason.startswith("not a Glasswork job envelope")
    assert "an SQS record is not an object" in caplog.text


# -- BaseException from a job ---------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [SystemExit(1), KeyboardInterrupt(), GeneratorExit(), asyncio.CancelledError()]
)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_base_exception_fails_only_its_job_and_the_batch_goes_on(kind, error):
    dead = []

    def body(payload: Item, ctx: JobContext):
        ctx.services.log.add(payload.n, "start")
        if payload.n == 1:
            raise error

    async def async_body(payload: Item, ctx: JobContext):
        body(payload, ctx)

    driver = MockQueueDriver()
    handler = worker(
        define_job(
            name="work",
            schema=Item,
            handler=body if kind == "sync" else async_body,
            retry={"max_attempts": 2},
        ),
        driver=driver,
        hooks={"on_job_dead_letter": lambda job, ctx, err: dead.append(type(err))},
    )
    assert failures(handler({"Records": [record(1), record(2)]})) == ["m-1"]
    assert handler.services.log.ran() == [1, 2]
    # The last attempt is dead-lettered like any other transient failure.
    last = {"Records": [record(1, receive_count=2), record(3)]}
    assert handler(last) == {"batchItemFailures": []}
    assert dead == [type(error)]
    assert driver.dead_letters[0].reason.startswith(
        f"failed 2 of 2 attempts: {type(error).__name__}"
    )


# -- EventBridge ----------------------------------------------------------------------------


def test_eventbridge_raises_when_a_dead_letter_cannot_be_kept():
    class NoPeriodicQueue(MockQueueDriver):
        def dead_letter(self, body, reason, *, queue=None):
            raise ConfigurationError(f"unknown queue {queue!r}")

    def cleanup(payload, ctx):
        raise PermanentJobError("config missing")

    job = define_periodic_job(name="cleanup", handler=cleanup)
    with pytest.raises(DeadLetterUnavailableError, match="unknown queue 'periodic'") as raised:
        worker(job, driver=NoPeriodicQueue())({"jobName": "cleanup"})
    assert isinstance(raised.value.__cause__, PermanentJobError)

    with pytest.raises(DeadLetterUnavailableError, match="no driver is configured"):
        worker(job)({"jobName": "cleanup"})


def test_eventbridge_async_jobs_are_bounded_by_their_timeout():
    async def cleanup(payload, ctx):
        await asyncio.sleep(30)

    job = define_periodic_job(name="cleanup", handler=cleanup, timeout=0.05, retry=False)
    assert worker(job)({"jobName": "cleanup"})["status"] == "discarded"


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("batch_concurrency", 0),
        ("batch_concurrency", "all"),
        ("sync_concurrency", 0),
        ("deadline_margin", -1),
    ],
)
def test_bad_options_are_refused_at_bootstrap(option, value):
    with pytest.raises(ConfigurationError, match=option):
        worker(define_job(name="work", handler=lambda p, c: None), **{option: value})
