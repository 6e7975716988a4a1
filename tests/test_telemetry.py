"""Tracing with the real OpenTelemetry SDK: a job's run is a CONSUMER span in the trace of
the PRODUCER span that enqueued it, through every worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from glasswork import define_module
from glasswork.jobs import (
    AsyncJobService,
    DuplicateJobError,
    JobMessage,
    JobService,
    MockQueueDriver,
    PayloadTooLargeError,
    bootstrap_worker,
    define_job,
    set_tracing,
)
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.message import MAX_MESSAGE_BYTES
from glasswork.jobs.telemetry import parse_xray_header, sqs_message_attributes
from glasswork.jobs.testing import sqs_record
from glasswork.jobs.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from otel_support import assert_child_of, attrs, only, span_exporter, spans

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def exporter():
    set_tracing(None)
    return span_exporter()


def noop(payload: Any, ctx: Any) -> None:
    return None


ping = define_job(name="ping", queue="emails", handler=noop)
App = define_module("app", jobs=[ping])


def test_async_enqueues_are_producer_spans_too(exporter) -> None:
    driver = MockQueueDriver()

    async def enqueue() -> Any:
        async with AsyncJobService(driver) as jobs:
            one = await jobs.enqueue(ping, {"n": 1})
            await jobs.enqueue_many(ping, [{"n": 2}, {"n": 3}])
            return one

    result = asyncio.run(enqueue())
    assert all(m.trace and m.trace["traceparent"].startswith("00-") for m in driver.jobs)
    sends = [s for s in exporter.get_finished_spans() if s.name == "send emails"]
    assert [s.kind for s in sends] == [SpanKind.PRODUCER, SpanKind.PRODUCER]
    assert attrs(sends[0])["messaging.message.id"] == result.message_id
    assert attrs(sends[1])["messaging.batch.message_count"] == 2
    driver.drain(App)
    runs = [s for s in exporter.get_finished_spans() if s.name == "process ping"]
    assert len(runs) == 3
    assert_child_of(runs[0], sends[0])
    for run in runs[1:]:
        assert_child_of(run, sends[1])


def test_mock_drain_runs_each_job_in_a_consumer_span_under_its_enqueue(exporter) -> None:
    driver = MockQueueDriver()
    result = JobService(driver).enqueue(ping, {"n": 1})
    [message] = driver.jobs
    assert message.trace is not None and message.trace["traceparent"].startswith("00-")

    driver.drain(App)

    send = only(exporter, "send emails")
    assert send.kind is SpanKind.PRODUCER
    assert attrs(send) == {
        "messaging.system": "mock",
        "messaging.destination.name": "emails",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": result.message_id,
        "glasswork.job.name": "ping",
        "glasswork.job.id": result.job_id,
    }
    run = only(exporter, "process ping")
    assert run.kind is SpanKind.CONSUMER
    assert_child_of(run, send)
    assert attrs(run)["glasswork.job.attempt"] == 1
    assert attrs(run)["glasswork.job.outcome"] == "done"
    assert attrs(run)["messaging.operation.type"] == "process"
    assert run.status.status_code is StatusCode.UNSET


def test_an_enqueue_inside_a_request_continues_the_request_trace(exporter) -> None:
    driver = MockQueueDriver()
    with trace.get_tracer("test").start_as_current_span("POST /signup") as request:
        JobService(driver).enqueue(ping, None)
    driver.drain(App)
    send = only(exporter, "send emails")
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert only(exporter, "process ping").context.trace_id == request.get_span_context().trace_id


def test_a_retry_and_a_dead_letter_mark_the_span_as_an_error(exporter) -> None:
    def always_fails(payload: Any, ctx: Any) -> None:
        raise RuntimeError("mail server busy")

    flaky = define_job(
        name="flaky", handler=always_fails, retry={"max_attempts": 2, "backoff": 0, "jitter": False}
    )
    driver = MockQueueDriver()
    JobService(driver).enqueue(flaky, None)
    driver.drain(define_module("flaky", jobs=[flaky]))

    first, second = spans(exporter, "process flaky")
    send = only(exporter, "send default")
    assert_child_of(first, send)
    assert_child_of(second, send)  # the retry is in the same trace, under the enqueue
    assert attrs(first)["glasswork.job.outcome"] == "retry"
    assert attrs(first)["glasswork.job.retry_delay"] == 0.0
    assert attrs(first)["error.type"] == "RuntimeError"
    assert first.status.status_code is StatusCode.ERROR
    assert "mail server busy" in (first.status.description or "")
    assert [e.name for e in first.events] == ["exception"]
    assert attrs(second)["glasswork.job.attempt"] == 2
    assert attrs(second)["glasswork.job.outcome"] == "dead_letter"
    assert second.status.status_code is StatusCode.ERROR
    assert "failed 2 of 2 attempts" in (second.status.description or "")


def test_enqueue_many_sends_in_one_span_and_each_run_is_its_child(exporter) -> None:
    driver = MockQueueDriver()
    JobService(driver).enqueue_many(ping, [{"n": i} for i in range(3)])
    driver.drain(App)
    send = only(exporter, "send emails")
    assert attrs(send)["messaging.batch.message_count"] == 3
    runs = spans(exporter, "process ping")
    assert len(runs) == 3
    for run in runs:
        assert_child_of(run, send)


def test_sqlite_worker_runs_in_the_enqueue_trace_and_handlers_see_its_span(
    exporter, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def sync_handler(payload: Any, ctx: Any) -> None:
        seen["sync"] = trace.get_current_span().get_span_context()

    async def async_handler(payload: Any, ctx: Any) -> None:
        seen["async"] = trace.get_current_span().get_span_context()

    sync_job = define_job(name="sync-job", handler=sync_handler)
    async_job = define_job(name="async-job", handler=async_handler)
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    service = JobService(driver)
    service.enqueue(sync_job, None)
    service.enqueue(async_job, None)
    worker = Worker(
        module=define_module("w", jobs=[sync_job, async_job]),
        driver=driver,
        install_signal_handlers=False,
    )
    assert worker.run_until_empty(timeout=20).done == 2

    sends = spans(exporter, "send default")
    assert len(sends) == 2
    for name, key in (("process sync-job", "sync"), ("process async-job", "async")):
        run = only(exporter, name)
        assert attrs(run)["messaging.system"] == "sqlite"
        assert any(run.parent and run.parent.span_id == s.context.span_id for s in sends)
        # The handler's own spans (an HTTP call, a query) would be children of this one.
        assert seen[key].span_id == run.context.span_id


def test_a_sync_job_taken_from_its_thread_at_its_timeout_ends_its_span_in_its_own_context(
    exporter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    seen: list[Any] = []

    def hangs(payload: Any, ctx: Any) -> None:
        seen.append(trace.get_current_span().get_span_context())
        release.wait(30)

    def quick(payload: Any, ctx: Any) -> None:
        seen.append(trace.get_current_span().get_span_context())

    hang = define_job(name="hang", handler=hangs, timeout=0.2, retry=False)
    after = define_job(name="after", handler=quick)
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    JobService(driver).enqueue(hang, None)
    worker = Worker(
        module=define_module("w", jobs=[hang, after]),
        driver=driver,
        concurrency=1,
        install_signal_handlers=False,
    )
    try:
        summary = worker.run_until_empty(timeout=20)
        # The thread that took the hung one's place runs the next job in a span of its own.
        JobService(driver).enqueue(after, None)
        assert worker.run_until_empty(timeout=20).done == 1
    finally:
        release.set()
    assert summary.counts["discarded"] == 1
    run = only(exporter, "process hang")
    assert attrs(run)["glasswork.job.outcome"] == "discarded"
    assert run.status.status_code is StatusCode.ERROR
    assert seen[0].span_id == run.context.span_id
    assert seen[1].span_id == only(exporter, "process after").context.span_id
    # The run's span was detached in the context it was attached in, on the new thread.
    assert "Failed to detach context" not in caplog.text


def test_a_lambda_record_with_an_xray_header_links_to_that_trace(exporter) -> None:
    handler = bootstrap_worker(module=App)
    untraced = JobMessage.create("ping", None)
    record = sqs_record(untraced)
    record["attributes"]["AWSTraceHeader"] = (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    )
    assert handler({"Records": [record]}, None) == {"batchItemFailures": []}
    run = only(exporter, "process ping")
    assert run.parent is None  # no traceparent: a trace of its own, linked to X-Ray's
    [link] = run.links
    assert link.context.trace_id == 0x5759E988BD862E3FE1BE46A994272793
    assert link.context.span_id == 0x53995C3F42CD8AD8
    assert link.context.trace_flags.sampled


def test_a_traceparent_wins_over_the_xray_header(exporter) -> None:
    driver = MockQueueDriver()
    JobService(driver).enqueue(ping, None)
    [message] = driver.jobs
    record = sqs_record(message)
    record["attributes"]["AWSTraceHeader"] = (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    )
    bootstrap_worker(module=App)({"Records": [record]}, None)
    run = only(exporter, "process ping")
    assert_child_of(run, only(exporter, "send emails"))
    assert not run.links


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
            (0x5759E988BD862E3FE1BE46A994272793, 0x53995C3F42CD8AD8, False),
        ),
        ("Root=1-5759e988-bd862e3fe1be46a994272793", None),  # no parent: nothing to link to
        ("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", None),
        ("Root=1-zzzzzzzz-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", None),
        ("Self=1-5759e988-bd862e3fe1be46a994272793", None),
        ("garbage", None),
    ],
)
def test_parse_xray_header(header: str, expected: Any) -> None:
    assert parse_xray_header(header) == expected


MALFORMED_TRACES = [
    {"traceparent": "00-nonsense"},
    {"traceparent": "00-nonsense", "tracestate": None},
    {"tracestate": 5},
    5,
    ["00-nonsense"],
    "00-nonsense",
]


@pytest.mark.parametrize("context", MALFORMED_TRACES)
def test_a_malformed_trace_context_starts_a_new_trace(exporter, context: Any) -> None:
    body = json.dumps({"version": 1, "jobName": "ping", "jobId": "j1", "trace": context})
    handler = bootstrap_worker(module=App)
    assert handler({"Records": [sqs_record(body)]}, None) == {"batchItemFailures": []}
    run = only(exporter, "process ping")
    assert run.parent is None
    assert attrs(run)["glasswork.job.outcome"] == "done"


@pytest.mark.parametrize("context", MALFORMED_TRACES)
def test_the_sqlite_worker_runs_a_job_whose_trace_context_is_malformed(
    exporter, tmp_path: Path, context: Any
) -> None:
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    body = json.dumps({"version": 1, "jobName": "ping", "jobId": "j1", "trace": context})
    driver._conn().execute(
        "INSERT INTO glasswork_jobs (queue, job_name, job_id, body, visible_at, enqueued_at) "
        "VALUES ('emails', 'ping', 'j1', ?, 0, 0)",
        (body,),
    )
    worker = Worker(module=App, driver=driver, install_signal_handlers=False)
    assert worker.run_until_empty(timeout=20).done == 1
    assert driver.dead_letters() == []
    assert attrs(only(exporter, "process ping"))["glasswork.job.outcome"] == "done"


def test_a_refused_enqueue_marks_the_producer_span(exporter) -> None:
    unique = define_job(name="unique", handler=noop, unique=lambda p: "same")
    service = JobService(MockQueueDriver())
    service.enqueue(unique, None)
    with pytest.raises(DuplicateJobError):
        service.enqueue(unique, None)
    ok, refused = spans(exporter, "send default")
    assert ok.status.status_code is StatusCode.UNSET
    assert refused.status.status_code is StatusCode.ERROR
    assert attrs(refused)["error.type"] == "DuplicateJobError"


def test_the_trace_context_counts_toward_the_size_limit(exporter) -> None:
    big = define_job(name="big", handler=noop)
    empty = JobMessage.create("big", "").encode()
    room = MAX_MESSAGE_BYTES - len(empty)
    # Fits without the trace context, not with it: refused, nothing sent.
    driver = MockQueueDriver()
    with pytest.raises(PayloadTooLargeError):
        JobService(driver).enqueue(big, "x" * (room - 10))
    assert driver.jobs == []
    assert only(exporter, "send default").status.status_code is StatusCode.ERROR


def test_sqs_attributes_carry_the_context_unless_they_would_break_the_size_limit() -> None:
    trace_context = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "tracestate": "k=v"}
    small = JobMessage.create("ping", {"n": 1}).model_copy(update={"trace": trace_context})
    assert sqs_message_attributes(small) == {
        name: {"DataType": "String", "StringValue": value} for name, value in trace_context.items()
    }
    body = JobMessage.create("ping", "").encode()
    full = JobMessage.create("ping", "x" * (MAX_MESSAGE_BYTES - len(body) - 150))
    full = full.model_copy(update={"trace": trace_context})
    assert len(full.encode()) <= MAX_MESSAGE_BYTES
    assert sqs_message_attributes(full) == {}  # the envelope alone carries it
    odd = small.model_copy(update={"trace": {"AWS.reserved": "x", "bad name": "y", "empty": ""}})
    assert sqs_message_attributes(odd) == {}


def test_tracing_off_sends_no_context_and_makes_no_spans(exporter) -> None:
    set_tracing(False)
    try:
        driver = MockQueueDriver()
        JobService(driver).enqueue(ping, None)
        driver.drain(App)
        assert driver.jobs[0].trace is None
    finally:
        set_tracing(None)
    assert exporter.get_finished_spans() == ()


def _run_isolated(prelude: str, env: dict[str, str]) -> dict[str, Any]:
    script = textwrap.dedent(
        """
        import json, sys, tempfile, os
        PRELUDE
        from glasswork import define_module
        from glasswork.jobs import (
            EMFMetrics, JobService, MockQueueDriver, SQLiteQueueDriver, Worker,
            bootstrap_worker, define_job, telemetry,
        )
        from glasswork.jobs.testing import sqs_event

        job = define_job(name="j", handler=lambda p, ctx: None, idempotent=True)
        App = define_module("app", jobs=[job])
        mock = MockQueueDriver()
        JobService(mock).enqueue_many(job, [1, 2, 3])
        mock.drain(App)
        handler = bootstrap_worker(
            module=App, driver=mock, metrics=EMFMetrics(write=lambda line: None)
        )
        handler(sqs_event([m for m in mock.jobs]), None)
        with tempfile.TemporaryDirectory() as tmp:
            driver = SQLiteQueueDriver(os.path.join(tmp, "jobs.db"))
            JobService(driver).enqueue(job, 4)
            done = Worker(module=App, driver=driver, install_signal_handlers=False)
            summary = done.run_until_empty(timeout=20)
        loaded = sorted(
            m for m, v in sys.modules.items()
            if v is not None and m.split(".")[0] in ("opentelemetry", "prometheus_client")
        )
        print(json.dumps({"loaded": loaded, "done": summary.done,
                          "tracing": telemetry.tracing_enabled()}))
        """
    ).replace("PRELUDE", prelude)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.subprocess
def test_with_tracing_off_running_jobs_loads_no_opentelemetry_or_prometheus() -> None:
    result = _run_isolated("", {"GLASSWORK_TRACING": "off"})
    assert result == {"loaded": [], "done": 1, "tracing": False}


@pytest.mark.subprocess
def test_without_the_otel_extra_nothing_is_imported_and_jobs_run() -> None:
    # What an environment without opentelemetry-api looks like to the import system.
    hide = "sys.modules['opentelemetry'] = None; sys.modules['prometheus_client'] = None"
    env = {k: v for k, v in os.environ.items() if k != "GLASSWORK_TRACING"}
    result = _run_isolated(hide, {**env, "GLASSWORK_TRACING": ""})
    assert result == {"loaded": [], "done": 1, "tracing": False}


@pytest.mark.subprocess
def test_with_the_api_installed_tracing_is_on_by_itself() -> None:
    result = _run_isolated("", {"GLASSWORK_TRACING": ""})
    assert result["tracing"] is True
    assert "opentelemetry.trace" in result["loaded"]
    assert not [
        m for m in result["loaded"] if m.startswith(("prometheus_client", "opentelemetry.sdk"))
    ]


class BrokenPropagator:
    """A propagator that fails on every call, as a misconfigured one might."""

    fields: set[str] = {"x-broken"}

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        raise RuntimeError("propagator bug")

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        raise RuntimeError("propagator bug")


def test_a_broken_propagator_neither_stops_an_enqueue_nor_a_run(exporter, caplog) -> None:
    from opentelemetry import propagate

    driver = MockQueueDriver()
    JobService(driver).enqueue(ping, None)  # sent with a context, before the breakage
    original = propagate.get_global_textmap()
    propagate.set_global_textmap(BrokenPropagator())  # type: ignore[arg-type]
    try:
        JobService(driver).enqueue(ping, {"n": 2})
        result = driver.drain(App)
    finally:
        propagate.set_global_textmap(original)
    assert (result.deliveries, result.retried, result.dead_lettered) == (2, 0, 0)
    assert driver.jobs[1].trace is None
    assert "a propagator failed" in caplog.text
    assert "could not start the span of a run; running untraced" in caplog.text


@pytest.mark.subprocess
def test_before_an_sdk_is_configured_no_span_is_made_and_after_it_spans_flow() -> None:
    script = textwrap.dedent(
        """
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from glasswork import define_module
        from glasswork.jobs import JobService, MockQueueDriver, bootstrap_worker, define_job

        job = define_job(name="j", handler=lambda p, ctx: None)
        driver = MockQueueDriver()
        handler = bootstrap_worker(module=define_module("app", jobs=[job]), driver=driver)
        JobService(driver).enqueue(job, None)
        driver.drain(handler)
        before = driver.jobs[0].trace

        # The application configures its SDK only now, after building service and worker.
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        JobService(driver).enqueue(job, None)
        driver.drain(handler)
        spans = [s.name for s in exporter.get_finished_spans()]
        print(json.dumps({"before": before, "spans": spans}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "GLASSWORK_TRACING"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"before": None, "spans": ["send default", "process j"]}


def test_a_lambda_worker_imports_opentelemetry_only_once_the_application_does() -> None:
    # A cold start pays nothing for tracing while no SDK can be configured; once the
    # application imports OpenTelemetry and sets its SDK, the next batch is traced.
    script = textwrap.dedent(
        """
        import json, sys
        from glasswork import define_module
        from glasswork.jobs import JobMessage, bootstrap_worker, define_job
        from glasswork.jobs.testing import sqs_event

        job = define_job(name="j", handler=lambda p, ctx: None)
        handler = bootstrap_worker(module=define_module("app", jobs=[job]))
        event = sqs_event([JobMessage.create("j", None).to_json()])
        assert handler(event, None) == {"batchItemFailures": []}
        untouched = not [m for m in sys.modules if m.startswith("opentelemetry")]

        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        assert handler(event, None) == {"batchItemFailures": []}
        spans = [s.name for s in exporter.get_finished_spans()]
        print(json.dumps({"untouched": untouched, "spans": spans}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "GLASSWORK_TRACING"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"untouched": True, "spans": ["process j"]}


class FailingOnEnd(SpanProcessor):
    """A span processor whose ``on_end`` raises (the SDK calls it unguarded)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: Any) -> None:
        self.ended += 1
        raise RuntimeError("exporter bug")


@pytest.fixture
def broken_processor(monkeypatch: pytest.MonkeyPatch):
    from opentelemetry.sdk.trace import TracerProvider

    from glasswork.jobs import telemetry

    monkeypatch.setattr(telemetry, "_next_warning", 0.0)  # as in a fresh process
    processor = FailingOnEnd()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    set_tracing(True, tracer_provider=provider)
    yield processor
    set_tracing(None)


def broken_processor_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "tracing failed" in r.getMessage()
    ]


def test_a_span_processor_failing_on_end_changes_no_enqueue_and_no_run(
    broken_processor, caplog
) -> None:
    runs: list[int] = []
    job = define_job(name="counted", handler=lambda p: runs.append(p["n"]))
    failing = define_job(name="failing", handler=lambda p: 1 / 0, retry=False)
    driver = MockQueueDriver()
    service = JobService(driver)
    results = [service.enqueue(job, {"n": n}) for n in range(3)]
    service.enqueue_many(job, [{"n": 3}, {"n": 4}])
    service.enqueue(failing, None)

    async def enqueue_async() -> None:
        async with AsyncJobService(driver) as jobs:
            await jobs.enqueue(job, {"n": 5})

    asyncio.run(enqueue_async())
    assert [r.job_id for r in results] == [m.job_id for m in driver.jobs[:3]]
    assert len(driver.jobs) == 7  # each stored once: no enqueue raised after storing it
    result = driver.drain(define_module("app", jobs=[job, failing]))
    assert (result.deliveries, result.retried, result.dead_lettered) == (7, 0, 0)
    assert sorted(runs) == [0, 1, 2, 3, 4, 5]
    assert broken_processor.ended >= 12  # every span ended, through the processor
    # Logged, with the traceback, once rather than for each of the 12 spans.
    assert len(broken_processor_warnings(caplog)) == 1


def test_a_span_processor_failing_on_end_leaves_the_lambda_batch_alone(
    broken_processor, caplog
) -> None:
    runs: list[str] = []
    job = define_job(name="counted", handler=lambda p: runs.append(p))
    handler = bootstrap_worker(module=define_module("app", jobs=[job]))
    records = [sqs_record(JobMessage.create("counted", str(n))) for n in range(3)]
    assert handler({"Records": records}, None) == {"batchItemFailures": []}
    assert sorted(runs) == ["0", "1", "2"]
    assert broken_processor.ended == 3


def test_a_span_processor_failing_on_end_leaves_the_sqlite_worker_alone(
    broken_processor, tmp_path: Path, caplog
) -> None:
    runs: list[int] = []
    job = define_job(name="counted", handler=lambda p: runs.append(p), retry=False)

    async def async_handler(payload: Any) -> None:
        runs.append(payload)

    async_job = define_job(name="async-counted", handler=async_handler)
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    driver.enqueue(JobMessage.create("counted", 1))  # straight to the driver: untraced
    driver.enqueue(JobMessage.create("async-counted", 2))
    worker = Worker(
        module=define_module("w", jobs=[job, async_job]),
        driver=driver,
        install_signal_handlers=False,
    )
    summary = worker.run_until_empty(timeout=20)
    assert (summary.done, summary.retried, summary.dead_lettered) == (2, 0, 0)
    assert sorted(runs) == [1, 2]  # each ran once
    assert driver.dead_letters() == [] and driver.pending_count() == 0
    assert broken_processor.ended == 2
