"""Job metrics: EMF lines for Lambda (schema-checked), Prometheus series, the metrics server
with its liveness check, and the sink interface."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from glasswork import define_module
from glasswork.jobs import (
    EMFMetrics,
    JobService,
    JobTimeoutError,
    MockQueueDriver,
    PermanentJobError,
    bootstrap_worker,
    define_job,
)
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError
from glasswork.jobs.metrics import MetricsServer, PrometheusMetrics, metric_sinks
from glasswork.jobs.testing import sqs_event, sqs_record
from glasswork.jobs.worker import Worker

# The EMF document structure, from CloudWatch's specification ("Embedded metric format
# document structure"): what CloudWatch Logs accepts and turns into metrics.
UNITS = [
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
]  # fmt: skip
EMF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "LogGroupName": {"type": "string", "minLength": 1},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 250},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": 1024,
                                        },
                                        "Unit": {"enum": UNITS},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def assert_emf(line: str) -> dict[str, Any]:
    """``line`` is one EMF document: the schema, plus the rule the schema cannot state:
    every dimension and metric it declares is a member of the root with a valid value."""
    assert "\n" not in line
    document = json.loads(line)
    jsonschema.validate(document, EMF_SCHEMA)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert isinstance(document.get(key), str) and document[key], key
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return document


def test_the_emf_schema_check_accepts_powertools_and_refuses_broken_documents() -> None:
    # The checker agrees with Powertools' own output...
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    lines: list[str] = []
    metrics = Metrics(namespace="Shop", service="orders")
    metrics.add_metric(name="Orders", unit=MetricUnit.Count, value=1)
    lines.append(json.dumps(metrics.serialize_metric_set()))
    assert_emf(lines[0])
    # ...and refuses what CloudWatch would drop.
    good = json.loads(lines[0])
    missing_member = {**good}
    del missing_member["service"]
    with pytest.raises(AssertionError):
        assert_emf(json.dumps(missing_member))
    bad_unit = json.loads(lines[0])
    bad_unit["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = "Jobs"
    with pytest.raises(jsonschema.ValidationError):
        assert_emf(json.dumps(bad_unit))


def done(payload: Any, ctx: Any) -> None:
    return None


def flaky(payload: Any, ctx: Any) -> None:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")


def refuse(payload: Any, ctx: Any) -> None:
    raise PermanentJobError("never")


def too_slow(payload: Any, ctx: Any) -> None:
    raise JobTimeoutError("slow", 0.5)


ok_job = define_job(name="ok", queue="work", handler=done)
flaky_job = define_job(name="flaky", queue="work", handler=flaky)
refused_job = define_job(name="refused", queue="work", handler=refuse)
slow_job = define_job(name="slow", queue="work", handler=too_slow, retry=False)
App = define_module("app", jobs=[ok_job, flaky_job, refused_job, slow_job])


def lambda_with_emf(**options: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    driver = MockQueueDriver()
    handler = bootstrap_worker(
        module=App, driver=driver, metrics=EMFMetrics(write=lines.append, **options)
    )
    return handler, lines


def by_job(lines: list[str]) -> dict[str, dict[str, Any]]:
    documents = [assert_emf(line) for line in lines]
    return {d["JobName"]: d for d in documents}


def test_a_lambda_batch_becomes_one_valid_emf_line_per_job(monkeypatch) -> None:
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    handler, lines = lambda_with_emf(namespace="Shop", dimensions={"service": "orders"})
    jobs = (ok_job, ok_job, flaky_job, refused_job, slow_job)
    bodies = [_message(job).encode() for job in jobs]
    response = handler(sqs_event(bodies, queue="work"), None)
    assert len(response["batchItemFailures"]) == 1  # the flaky one, for retry

    documents = by_job(lines)
    assert len(lines) == 4 and set(documents) == {"ok", "flaky", "refused", "slow"}
    ok = documents["ok"]
    assert ok["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop"
    assert ok["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "JobName"]]
    assert (ok["service"], ok["Queue"]) == ("orders", "work")
    assert ok["JobsDone"] == 2 and ok["JobsRetried"] == 0 and len(ok["JobDuration"]) == 2
    assert abs(ok["_aws"]["Timestamp"] / 1000 - time.time()) < 60
    assert documents["flaky"]["JobsRetried"] == 1
    assert documents["refused"]["JobsDeadLettered"] == 1
    assert documents["slow"]["JobsDiscarded"] == 1 and documents["slow"]["JobsTimedOut"] == 1

    # The next invocation reports only its own runs.
    lines.clear()
    handler(sqs_event([_message(flaky_job).encode()], queue="work", receive_count=2), None)
    assert by_job(lines)["flaky"]["JobsDone"] == 1
    assert by_job(lines)["flaky"]["JobsRetried"] == 0
    lines.clear()
    handler({"Records": []}, None)
    assert lines == []  # nothing ran, nothing to say


def test_more_than_100_runs_of_a_job_split_their_durations_over_lines() -> None:
    handler, lines = lambda_with_emf()
    records = [sqs_record(_message(ok_job), queue="work") for _ in range(150)]
    handler({"Records": records}, None)
    first, second = (assert_emf(line) for line in lines)
    assert first["JobsDone"] == 150 and len(first["JobDuration"]) == 100
    assert "JobsDone" not in second and len(second["JobDuration"]) == 50


def test_emf_defaults_sit_beside_powertools_metrics(monkeypatch, capsys) -> None:
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shop")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "orders")
    metrics = Metrics()
    worker = bootstrap_worker(module=App, driver=MockQueueDriver(), metrics=EMFMetrics())

    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        metrics.add_metric(name="Orders", unit=MetricUnit.Count, value=1)
        return worker(event, context)

    handler(sqs_event([_message(ok_job).encode()], queue="work"), None)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    documents = [assert_emf(line) for line in lines]
    assert len(documents) == 2  # Powertools' own line, and ours: neither swallowed the other
    ours = next(d for d in documents if "JobName" in d)
    theirs = next(d for d in documents if "Orders" in d)
    for document in (ours, theirs):
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop"
        assert document["service"] == "orders"
    assert ours["JobsDone"] == 1


@pytest.mark.parametrize(
    "dimensions",
    [{"JobName": "x"}, {"": "x"}, {"service": ""}, {f"d{i}": "v" for i in range(30)}],
)
def test_emf_refuses_dimensions_cloudwatch_would_drop(dimensions: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        EMFMetrics(dimensions=dimensions)


def _message(job: Any) -> Any:
    from glasswork.jobs import JobMessage

    return JobMessage.create(job.name, None, queue=job.queue or "default")


# -- Prometheus ---------------------------------------------------------------------------


def samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_prometheus_counts_outcomes_durations_and_timeouts(tmp_path: Path) -> None:
    async def hangs(payload: Any, ctx: Any) -> None:
        await asyncio.sleep(30)

    hanging = define_job(name="hangs", handler=hangs, timeout=0.05, retry=False)
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    service = JobService(driver)
    service.enqueue_many(ok_job, [1, 2, 3])
    service.enqueue(refused_job, None)
    service.enqueue(hanging, None)
    metrics = PrometheusMetrics()
    worker = Worker(
        module=define_module("m", jobs=[ok_job, refused_job, hanging]),
        driver=driver,
        metrics=metrics,
        install_signal_handlers=False,
    )
    worker.run_until_empty(timeout=20)

    found = samples(metrics.registry)
    assert (
        found[("glasswork_jobs_total", (("job", "ok"), ("outcome", "done"), ("queue", "work")))]
        == 3
    )
    refused = (("job", "refused"), ("outcome", "dead_letter"), ("queue", "work"))
    assert found[("glasswork_jobs_total", refused)] == 1
    hung = (("job", "hangs"), ("outcome", "discarded"), ("queue", "default"))
    assert found[("glasswork_jobs_total", hung)] == 1
    assert found[("glasswork_job_timeouts_total", (("job", "hangs"), ("queue", "default")))] == 1
    assert found[("glasswork_job_duration_seconds_count", (("job", "ok"), ("queue", "work")))] == 3
    assert (
        0.05
        <= found[("glasswork_job_duration_seconds_sum", (("job", "hangs"), ("queue", "default")))]
        < 5
    )


def test_prometheus_reports_queue_depth_from_the_driver(tmp_path: Path) -> None:
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    JobService(driver).enqueue_many(ok_job, [1, 2])
    JobService(driver).enqueue_in(ok_job, 3, "1h")
    driver.dead_letter(_message(ok_job).encode(), "test", queue="work")
    metrics = PrometheusMetrics(stats_interval=0)
    metrics.watch(driver)
    found = samples(metrics.registry)
    depth = lambda state: found[("glasswork_queue_messages", (("queue", "work"), ("state", state)))]  # noqa: E731
    assert (depth("ready"), depth("delayed"), depth("in_flight"), depth("dead")) == (2, 1, 0, 1)


class Recorder:
    """A sink of its own, as a dashboard's per-minute counter would be."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, float]] = []
        self.flushes = 0

    def record(self, run: Any, outcome: Any, seconds: float) -> None:
        self.runs.append((run.message.job_name, outcome.kind, seconds))

    def flush(self) -> None:
        self.flushes += 1


class Broken:
    def record(self, run: Any, outcome: Any, seconds: float) -> None:
        raise RuntimeError("sink down")

    def flush(self) -> None:
        raise RuntimeError("sink down")


def test_any_sink_gets_every_run_and_a_failing_sink_changes_nothing(caplog) -> None:
    recorder = Recorder()
    driver = MockQueueDriver()
    JobService(driver).enqueue_many(ok_job, [1, 2])
    JobService(driver).enqueue(refused_job, None)
    handler = bootstrap_worker(module=App, driver=driver, metrics=[Broken(), recorder])
    result = driver.drain(handler)
    assert (result.deliveries, result.dead_lettered) == (3, 1)
    assert sorted((name, kind) for name, kind, _ in recorder.runs) == [
        ("ok", "done"),
        ("ok", "done"),
        ("refused", "dead_letter"),
    ]
    assert all(seconds >= 0 for _, _, seconds in recorder.runs)
    assert recorder.flushes == 1  # once per invocation (one batch here)
    assert "failed to record a run" in caplog.text and "failed to flush" in caplog.text


def test_metrics_option_must_be_sinks() -> None:
    with pytest.raises(ConfigurationError):
        metric_sinks([object()])  # type: ignore[list-item]
    assert metric_sinks(None) == ()
    sinks = metric_sinks(None, prometheus=True)
    assert len(sinks) == 1 and isinstance(sinks[0], PrometheusMetrics)


# -- the metrics server -------------------------------------------------------------------


@pytest.fixture
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_healthz_answers_while_the_loop_runs_and_503_when_it_hangs(running_loop) -> None:
    metrics = PrometheusMetrics()
    server = MetricsServer(metrics, 0, "127.0.0.1", liveness_timeout=0.3)
    server.start(running_loop)
    try:
        url = server.url
        assert get(f"{url}/healthz") == (200, "ok\n")
        # A handler blocking the loop (the bug a liveness probe is for):
        running_loop.call_soon_threadsafe(time.sleep, 1.5)
        time.sleep(0.05)
        status, text = get(f"{url}/healthz")
        assert status == 503 and "did not answer within 0.3s" in text
        time.sleep(1.5)
        assert get(f"{url}/healthz")[0] == 200
        status, text = get(f"{url}/metrics")
        assert status == 200 and "glasswork_jobs_total" in text
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/healthz", timeout=2)


@pytest.mark.slow
def test_a_workers_healthz_follows_its_control_loop(tmp_path: Path) -> None:
    """The worker's control loop is a thread: /healthz is 200 while it turns, 503 while it
    is stuck (here, in a driver call that hangs), and gone once the worker stopped."""
    stuck = threading.Event()
    go_on = threading.Event()

    class Hanging(SQLiteQueueDriver):
        def receive(self, *args: Any, **kwargs: Any) -> Any:
            if stuck.is_set():
                go_on.wait(10)
            return super().receive(*args, **kwargs)

    worker = Worker(
        module=define_module("m", jobs=[ok_job]),
        driver=Hanging(tmp_path / "jobs.db"),
        metrics_port=0,
        metrics_host="127.0.0.1",
        wait_seconds=0.1,
        install_signal_handlers=False,
    )
    server = worker.metrics_server
    assert server is not None
    server.liveness_timeout = 0.3
    running = threading.Thread(target=worker.run)
    running.start()
    try:
        wait = time.monotonic() + 10
        while server._server is None and time.monotonic() < wait:
            time.sleep(0.01)
        url = server.url
        assert get(f"{url}/healthz") == (200, "ok\n")
        stuck.set()
        time.sleep(1.0)  # a turn may last wait_seconds + poll_interval; then 0.3 s late
        assert get(f"{url}/healthz")[0] == 503
        stuck.clear()
        go_on.set()
        time.sleep(0.3)
        assert get(f"{url}/healthz")[0] == 200
    finally:
        go_on.set()
        worker.stop()
        running.join(10)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/healthz", timeout=2)


def test_healthz_is_503_once_the_loop_has_stopped() -> None:
    loop = asyncio.new_event_loop()
    server = MetricsServer(PrometheusMetrics(), 0, "127.0.0.1")
    server.start(loop)  # never run
    try:
        assert get(f"{server.url}/healthz")[0] == 503
    finally:
        server.close()
        loop.close()
