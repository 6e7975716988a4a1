"""The Lambda worker: SQS batches, partial batch failures, dead letters, hooks, EventBridge."""

import asyncio
import json
import logging
import os
import subprocess
import sys

import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    BatchRetryError,
    ConfigurationError,
    JobContext,
    JobMessage,
    MockQueueDriver,
    PermanentJobError,
    TransientJobError,
    bootstrap_worker,
    define_job,
    define_periodic_job,
)
from glasswork.jobs.execution import JobHooks
from glasswork.jobs.testing import eventbridge_event, sqs_event, sqs_record


class Payload(BaseModel):
    n: int


class Recorder:
    """A service that records what jobs did."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []


def make_handler(behaviour, **job_options):
    def handler(payload: Payload, ctx: JobContext):
        ctx.services.recorder.calls.append(("run", payload.n))
        return behaviour(payload, ctx)

    return define_job(name="work", schema=Payload, handler=handler, **job_options)


def message(n=1, job="work"):
    return JobMessage.create(job, {"n": n})


class HookLog:
    def __init__(self):
        self.events: list[tuple] = []

    def hooks(self):
        return {
            "on_job_start": lambda job, ctx: self.events.append(("start", job.job_id)),
            "on_job_complete": lambda job, ctx: self.events.append(("complete", job.job_id)),
            "on_job_failed": lambda job, ctx, err: self.events.append(
                ("failed", job.job_id, type(err).__name__)
            ),
            "on_job_dead_letter": lambda job, ctx, err: self.events.append(
                ("dead_letter", job.job_id, type(err).__name__)
            ),
        }

    def kinds(self):
        return [e[0] for e in self.events]


def build(job, *, driver=None, hooks=None, extra_jobs=()):
    module = define_module(name="worker", providers=[Recorder], jobs=[job, *extra_jobs])
    return bootstrap_worker(module=module, driver=driver, hooks=hooks)


def test_success_runs_handler_with_validated_payload_and_reports_no_failures():
    seen = {}

    def behaviour(payload, ctx):
        seen.update(
            type=type(payload),
            attempt=ctx.attempt,
            job=ctx.job.job_name,
            max_attempts=ctx.max_attempts,
            lambda_context=ctx.lambda_context,
        )

    handler = build(make_handler(behaviour))
    context = object()
    assert handler(sqs_event([message(1), message(2)]), context) == {"batchItemFailures": []}
    assert handler.services.recorder.calls == [("run", 1), ("run", 2)]
    assert seen == {
        "type": Payload,
        "attempt": 1,
        "job": "work",
        "max_attempts": 3,
        "lambda_context": context,
    }


def test_transient_errors_are_reported_until_max_attempts_then_dead_lettered():
    def behaviour(payload, ctx):
        if payload.n == 1:
            raise RuntimeError("flaky downstream")

    driver, log = MockQueueDriver(), HookLog()
    handler = build(
        make_handler(behaviour, retry={"max_attempts": 3}), driver=driver, hooks=log.hooks()
    )
    body = message(1).encode()
    for attempt in (1, 2):
        event = {
            "Records": [
                sqs_record(body, message_id="m-1", receive_count=attempt),
                sqs_record(message(2), message_id="ok"),
            ]
        }
        assert handler(event) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
        assert driver.dead_letters == []
    final = sqs_record(body, message_id="m-1", receive_count=3)
    assert handler({"Records": [final]}) == {"batchItemFailures": []}
    [dead] = driver.dead_letters
    assert dead.body == body
    assert dead.reason == "failed 3 of 3 attempts: RuntimeError: flaky downstream"
    assert dead.queue == "default"
    kinds = [e[0] for e in log.events if e[1] == json.loads(body)["jobId"]]
    assert kinds == ["start", "failed"] * 3 + ["dead_letter"]


def test_a_batch_whose_every_record_is_to_be_retried_raises_so_lambda_returns_it():
    def behaviour(payload, ctx):
        raise TransientJobError("rate limited")

    handler = build(make_handler(behaviour))
    event = {"Records": [sqs_record(message(n), message_id=f"m-{n}") for n in (1, 2)]}
    with pytest.raises(BatchRetryError, match="all 2 records") as raised:
        handler(event)
    assert raised.value.retried == ["m-1", "m-2"]
    assert [c[1] for c in handler.services.recorder.calls] == [1, 2]


def test_transient_job_error_retries_like_any_exception():
    def behaviour(payload, ctx):
        if payload.n == 9:
            raise TransientJobError("rate limited")

    handler = build(make_handler(behaviour))
    event = {"Records": [sqs_record(message(9), message_id="m-9"), sqs_record(message(1))]}
    assert handler(event) == {"batchItemFailures": [{"itemIdentifier": "m-9"}]}


def test_retry_delay_is_applied_through_the_driver():
    def behaviour(payload, ctx):
        raise TransientJobError("slow down", retry_after=120)

    driver = MockQueueDriver()
    from glasswork.jobs import JobService

    JobService(driver).enqueue(make_handler(behaviour), {"n": 1})
    [received] = driver.receive()
    record = sqs_record(
        received.body,
        message_id=received.message_id,
        receipt_handle=received.receipt,
        receive_count=received.attempt,
    )
    handler = build(make_handler(behaviour), driver=driver)
    with pytest.raises(BatchRetryError) as raised:
        handler({"Records": [record]})
    assert raised.value.retried == [received.message_id]
    # The worker pushed the retry out by retry_after: nothing is due now.
    assert driver.receive() == []
    assert len(driver.pending) == 1


def test_permanent_error_goes_to_dead_letter_once_and_is_not_reported():
    def behaviour(payload, ctx):
        raise PermanentJobError(f"User not found: {payload.n}")

    driver, log = MockQueueDriver(), HookLog()
    handler = build(make_handler(behaviour), driver=driver, hooks=log.hooks())
    assert handler(sqs_event([message(7)])) == {"batchItemFailures": []}
    assert [d.reason for d in driver.dead_letters] == ["PermanentJobError: User not found: 7"]
    assert log.kinds() == ["start", "failed", "dead_letter"]
    assert handler.services.recorder.calls == [("run", 7)]


def test_invalid_payload_in_message_is_dead_lettered_without_running():
    driver, log = MockQueueDriver(), HookLog()
    handler = build(make_handler(lambda p, c: None), driver=driver, hooks=log.hooks())
    bad = JobMessage.create("work", {"n": "not a number"})
    assert handler(sqs_event([bad])) == {"batchItemFailures": []}
    [dead] = driver.dead_letters
    assert dead.reason.startswith("InvalidJobPayloadError: invalid payload for job 'work': n:")
    assert handler.services.recorder.calls == []
    assert log.kinds() == ["failed", "dead_letter"]


def test_unknown_job_name_is_dead_lettered_with_the_known_names():
    driver, log = MockQueueDriver(), HookLog()
    handler = build(make_handler(lambda p, c: None), driver=driver, hooks=log.hooks())
    assert handler(sqs_event([message(job="no-such-job")])) == {"batchItemFailures": []}
    [dead] = driver.dead_letters
    assert dead.reason == "UnknownJobError: unknown job 'no-such-job'; registered jobs: work"
    assert log.kinds() == ["dead_letter"]


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[1, 2]",
        '{"jobName": "work"}',
        '{"version": 9, "jobName": "w", "jobId": "1"}',
    ],
)
def test_malformed_body_is_dead_lettered_and_the_rest_of_the_batch_runs(body):
    driver = MockQueueDriver()
    handler = build(make_handler(lambda p, c: None), driver=driver)
    event = {"Records": [sqs_record(body, queue="jobs-queue"), sqs_record(message(5))]}
    assert handler(event) == {"batchItemFailures": []}
    [dead] = driver.dead_letters
    assert dead.body == body
    assert dead.queue == "jobs-queue"  # the physical queue, since the envelope is unreadable
    assert dead.reason.startswith("not a Glasswork job envelope") or "version" in dead.reason
    assert handler.services.recorder.calls == [("run", 5)]


def test_record_without_body_does_not_crash_the_batch():
    driver = MockQueueDriver()
    handler = build(make_handler(lambda p, c: None), driver=driver)
    record = sqs_record(message(1))
    del record["body"]
    assert handler({"Records": [record, sqs_record(message(2))]}) == {"batchItemFailures": []}
    assert len(driver.dead_letters) == 1
    assert handler.services.recorder.calls == [("run", 2)]


def test_retry_false_discards_after_first_failure_but_failed_hook_runs():
    def behaviour(payload, ctx):
        raise RuntimeError("analytics down")

    driver, log = MockQueueDriver(), HookLog()
    handler = build(make_handler(behaviour, retry=False), driver=driver, hooks=log.hooks())
    assert handler(sqs_event([message()])) == {"batchItemFailures": []}
    assert driver.dead_letters == []
    assert log.kinds() == ["start", "failed"]


def test_dead_letter_send_failure_keeps_the_message_for_retry(caplog):
    class BrokenDLQ(MockQueueDriver):
        def dead_letter(self, body, reason, *, queue=None):
            raise ConnectionError("DLQ unreachable")

    def behaviour(payload, ctx):
        if payload.n == 1:
            raise PermanentJobError("bad")

    handler = build(make_handler(behaviour), driver=BrokenDLQ())
    event = {"Records": [sqs_record(message(1), message_id="m-2"), sqs_record(message(2))]}
    assert handler(event) == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert "the dead-letter send failed: ConnectionError: DLQ unreachable" in caplog.text


def test_a_driver_without_a_dead_letter_keeps_the_message_on_its_queue(caplog):
    class NoDLQ(MockQueueDriver):
        def dead_letter(self, body, reason, *, queue=None):
            return False

    def behaviour(payload, ctx):
        if payload.n == 3:
            raise PermanentJobError("bad")

    handler = build(make_handler(behaviour), driver=NoDLQ())
    m = message(3)
    event = {"Records": [sqs_record(m, message_id="m-3"), sqs_record(message(4))]}
    with caplog.at_level(logging.ERROR, logger="glasswork.jobs"):
        assert handler(event) == {"batchItemFailures": [{"itemIdentifier": "m-3"}]}
    assert "the mock driver has no dead letter for queue 'default'" in caplog.text
    assert m.job_id in caplog.text and '"payload":{"n":3}' in caplog.text


def test_without_a_driver_outside_lambda_a_dead_letter_is_reported_not_dropped(caplog, monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)

    def behaviour(payload, ctx):
        if payload.n == 3:
            raise PermanentJobError("bad")

    handler = build(make_handler(behaviour))  # no driver
    m = message(3)
    event = {"Records": [sqs_record(m, message_id="m-3"), sqs_record(message(4))]}
    with caplog.at_level(logging.ERROR, logger="glasswork.jobs"):
        assert handler(event) == {"batchItemFailures": [{"itemIdentifier": "m-3"}]}
    assert "outside Lambda the worker does not look up DLQs" in caplog.text
    assert m.job_id in caplog.text and '"payload":{"n":3}' in caplog.text


def test_fifo_batch_stops_at_first_retry_and_reports_the_rest():
    def behaviour(payload, ctx):
        if payload.n == 2:
            raise RuntimeError("out of order would be bad")

    handler = build(make_handler(behaviour))
    event = {
        "Records": [
            sqs_record(message(n), message_id=f"m-{n}", queue="orders.fifo") for n in (1, 2, 3, 4)
        ]
    }
    response = handler(event)
    assert response == {"batchItemFailures": [{"itemIdentifier": f"m-{n}"} for n in (2, 3, 4)]}
    assert handler.services.recorder.calls == [("run", 1), ("run", 2)]


def test_standard_queue_batch_continues_after_a_failure():
    def behaviour(payload, ctx):
        if payload.n == 2:
            raise RuntimeError("boom")

    handler = build(make_handler(behaviour))
    event = {"Records": [sqs_record(message(n), message_id=f"m-{n}") for n in (1, 2, 3)]}
    assert handler(event) == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert [c[1] for c in handler.services.recorder.calls] == [1, 2, 3]


def test_hooks_that_raise_are_logged_and_never_lose_the_job(caplog):
    def explode(*args):
        raise ValueError("hook bug")

    names = ("on_job_start", "on_job_complete", "on_job_failed", "on_job_dead_letter")
    hooks = dict.fromkeys(names, explode)
    handler = build(make_handler(lambda p, c: None), hooks=hooks)
    assert handler(sqs_event([message(1)])) == {"batchItemFailures": []}
    assert handler.services.recorder.calls == [("run", 1)]
    assert caplog.text.count("raised; the job's outcome is unchanged") == 2

    def fail(payload, ctx):
        if payload.n == 1:
            raise RuntimeError("x")

    failing = build(make_handler(fail), hooks=hooks)
    event = {"Records": [sqs_record(message(1), message_id="m-1"), sqs_record(message(2))]}
    assert failing(event) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}


def test_async_handlers_and_async_hooks_run():
    log = HookLog()

    async def behaviour_async(payload: Payload, ctx: JobContext):
        await asyncio.sleep(0.001)
        ctx.services.recorder.calls.append(("async", payload.n))

    async def on_start(job, ctx):
        await asyncio.sleep(0)
        log.events.append(("start", job.job_id))

    job = define_job(name="work", schema=Payload, handler=behaviour_async)
    handler = build(job, hooks=JobHooks(on_job_start=on_start))
    assert handler(sqs_event([message(1), message(2)])) == {"batchItemFailures": []}
    assert handler.services.recorder.calls == [("async", 1), ("async", 2)]
    assert log.kinds() == ["start", "start"]


def test_async_handler_failure_is_classified_like_a_sync_one():
    async def behaviour(payload, ctx):
        await asyncio.sleep(0)
        raise PermanentJobError("nope")

    driver = MockQueueDriver()
    handler = build(define_job(name="work", schema=Payload, handler=behaviour), driver=driver)
    assert handler(sqs_event([message()])) == {"batchItemFailures": []}
    assert driver.dead_letters[0].reason == "PermanentJobError: nope"


def test_handler_can_be_called_from_async_code():
    async def behaviour(payload, ctx):
        await asyncio.sleep(0)
        ctx.services.recorder.calls.append(("async", payload.n))

    handler = build(define_job(name="work", schema=Payload, handler=behaviour))

    async def main():
        return handler(sqs_event([message(4)]))

    assert asyncio.run(main()) == {"batchItemFailures": []}
    assert handler.services.recorder.calls == [("async", 4)]


def test_logger_puts_job_name_and_id_on_every_line(caplog):
    def behaviour(payload, ctx):
        ctx.logger.info("sending %s", payload.n, extra={"user_id": "u1"})

    handler = build(make_handler(behaviour))
    m = message(8)
    with caplog.at_level(logging.INFO, logger="glasswork.jobs"):
        handler(sqs_event([m]))
    [line] = [r for r in caplog.records if "sending" in r.getMessage()]
    assert line.getMessage() == f"[work {m.job_id}] sending 8"
    assert (line.job_name, line.job_id, line.attempt, line.user_id) == ("work", m.job_id, 1, "u1")


def test_eventbridge_runs_the_named_periodic_job_with_detail_or_top_level_name():
    def cleanup(payload, ctx):
        ctx.services.recorder.calls.append(("cleanup", payload))

    job = define_periodic_job(name="daily-cleanup", handler=cleanup, schedule="rate(1 day)")
    handler = build(make_handler(lambda p, c: None), extra_jobs=[job])
    result = handler(eventbridge_event("daily-cleanup", {"days": 30}), None)
    assert result["status"] == "done" and result["jobName"] == "daily-cleanup"
    assert handler({"jobName": "daily-cleanup"}, None)["status"] == "done"
    assert handler.services.recorder.calls == [("cleanup", {"days": 30}), ("cleanup", None)]


def test_eventbridge_transient_failure_raises_so_lambda_retries():
    def cleanup(payload, ctx):
        raise RuntimeError("db down")

    handler = build(
        make_handler(lambda p, c: None),
        extra_jobs=[define_periodic_job(name="cleanup", handler=cleanup)],
    )
    with pytest.raises(TransientJobError, match="Lambda retries") as caught:
        handler({"jobName": "cleanup"}, None)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_eventbridge_permanent_failure_and_unknown_job_are_dead_lettered():
    def cleanup(payload, ctx):
        raise PermanentJobError("config missing")

    driver = MockQueueDriver()
    handler = build(
        make_handler(lambda p, c: None),
        driver=driver,
        extra_jobs=[define_periodic_job(name="cleanup", handler=cleanup)],
    )
    assert handler({"jobName": "cleanup"})["status"] == "dead_letter"
    assert handler({"detail": {"jobName": "nope"}})["status"] == "dead_letter"
    assert [json.loads(d.body)["jobName"] for d in driver.dead_letters] == ["cleanup", "nope"]


def test_unrecognised_event_is_a_clear_error():
    handler = build(make_handler(lambda p, c: None))
    with pytest.raises(ValueError, match="unrecognised event"):
        handler({"hello": "world"}, None)
    with pytest.raises(TypeError):
        handler("not an event", None)


def test_bad_hooks_and_modules_are_refused_at_bootstrap():
    job = make_handler(lambda p, c: None)
    with pytest.raises(ConfigurationError, match="on_job_finish"):
        build(job, hooks={"on_job_finish": print})
    with pytest.raises(ConfigurationError, match="callable"):
        build(job, hooks={"on_job_start": "print"})
    with pytest.raises(TypeError, match="define_module"):
        bootstrap_worker(module=[job])


# What a Lambda worker never uses, kept out of its cold start (bench/cold_start.py).
NOT_AT_COLD_START = (
    "glasswork.jobs.service",
    "glasswork.jobs.async_service",
    "glasswork.jobs.drivers.aio",
    "glasswork.jobs.drivers.mock.driver",
    "glasswork.jobs.drivers.reports",
    "glasswork.jobs.drivers.urls",
    "glasswork.jobs.idempotency.memory",
    "glasswork.jobs.metrics.emf",
    "glasswork.jobs.testing",
    "opentelemetry.trace",
    "boto3",
)


def test_a_lambda_cold_start_loads_nothing_the_worker_does_not_use() -> None:
    code = (
        "import sys\n"
        "from glasswork import define_module\n"
        "from glasswork.jobs import bootstrap_worker, define_job\n"
        "job = define_job(name='j', handler=lambda payload, ctx: None)\n"
        "bootstrap_worker(module=define_module('app', jobs=[job]))\n"
        f"print(sorted(m for m in {NOT_AT_COLD_START!r} if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GLASSWORK_TRACING"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
