"""AWS mistakes against a moto server: no credentials, no region, an endpoint that does not
answer, a queue that does not exist. Every command says what to fix on one `error:` line
(exit 2), naming the sqs:// URL's parameter; a worker fails at start-up, not every 5 s."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.cli import main
from glasswork.jobs import ConfigurationError, JobService, Worker, define_job, driver_from_url
from glasswork.jobs.drivers.sqs import SQSQueueDriver

from .conftest import REGION, Aws

TESTS = Path(__file__).resolve().parents[1]
APP = "fixtures_app.app:AppModule"

COMMANDS = {
    "stats": ["stats"],
    "dlq": ["dlq", "list"],
    "enqueue": ["enqueue", "record", '{"key": "k"}', "--app", APP],
    "worker": ["worker", APP, "--until-empty"],
    "dashboard": ["dashboard"],
}


@pytest.fixture(autouse=True)
def no_serving(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`dashboard` returns instead of serving; the worker's jobs record to a temp file."""
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    monkeypatch.setenv("GLASSWORK_TEST_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.syspath_prepend(str(TESTS))


def sqs_url(endpoint: str, queue_url: str, *, region: str | None = REGION, **extra: str) -> str:
    host = region or ""
    query = "&".join(f"{k}={v}" for k, v in {"endpoint_url": endpoint, **extra}.items())
    return f"sqs://{host}?{query}&queue.default={queue_url}"


def one_line_error(capsys: pytest.CaptureFixture[str], command: str, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " botocore." not in line]  # worker's INFO
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"glasswork {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_queue_that_does_not_exist(
    command: str, aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = f"{aws.endpoint}/123456789012/no-such-queue"
    url = sqs_url(aws.endpoint, missing)
    line = one_line_error(capsys, command, [*COMMANDS[command], "--driver", url])
    assert f"queue 'default' does not exist: {missing} (queue.default= in the sqs:// URL)" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_no_credentials(
    command: str, aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask
    monkeypatch.setattr("boto3.DEFAULT_SESSION", None)  # as in a new process: none found yet
    url = sqs_url(aws.endpoint, aws.create_queue("jobs"))
    line = one_line_error(capsys, command, [*COMMANDS[command], "--driver", url])
    assert "no AWS credentials" in line and "AWS_ACCESS_KEY_ID" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_an_endpoint_that_does_not_answer(
    command: str, aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    url = sqs_url(closed, f"{closed}/123456789012/jobs")
    line = one_line_error(capsys, command, [*COMMANDS[command], "--driver", url])
    assert "cannot reach AWS" in line and "check endpoint_url= in the sqs:// URL" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_no_region(
    command: str, aws: Aws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
    line = one_line_error(
        capsys, command, [*COMMANDS[command], "--driver", f"sqs://?queue.default={queue}"]
    )
    assert "no AWS region: set region= in the sqs:// URL" in line


def test_a_worker_on_a_missing_queue_fails_at_start_naming_it(aws: Aws) -> None:
    missing = f"{aws.endpoint}/123456789012/gone"
    driver = SQSQueueDriver(region=REGION, endpoint_url=aws.endpoint, queues={"default": missing})
    job = define_job(name="ping", handler=lambda payload: None)
    worker = Worker(module=define_module(name="t", jobs=[job]), driver=driver)
    with pytest.raises(
        ConfigurationError, match=r"queue 'default' does not exist: .*/gone \(queues\['default'\]\)"
    ):
        worker.run()


@pytest.mark.subprocess
def test_a_worker_process_on_a_missing_queue_exits_at_once(aws: Aws, tmp_path: Path) -> None:
    url = sqs_url(aws.endpoint, f"{aws.endpoint}/123456789012/gone")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "glasswork.cli", "worker", APP, "--driver", url],
        cwd=TESTS,
        env={**os.environ, "GLASSWORK_TEST_RUNS": str(tmp_path / "runs.db")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "queue 'default' does not exist" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30  # not retrying forever


# -- errors name what the user wrote ---------------------------------------------------------


def test_errors_name_the_url_parameter_for_a_driver_from_a_url(aws: Aws) -> None:
    queue = aws.create_queue("jobs")
    ping = define_job(name="ping", handler=lambda payload: None)
    from_url = driver_from_url(sqs_url(aws.endpoint, queue))
    with pytest.raises(
        ConfigurationError, match="add scheduler_table=<DynamoDB table> to the sqs:// URL"
    ):
        JobService(from_url).enqueue_in(ping, {}, "2h")
    with pytest.raises(ConfigurationError, match=r"add queue.emails=<queue url> to the sqs:// URL"):
        from_url.queue_name("emails")  # type: ignore[attr-defined]
    with pytest.raises(
        ConfigurationError, match=r"dlq.emails= in the sqs:// URL names queue 'emails'"
    ):
        driver_from_url(sqs_url(aws.endpoint, queue, **{"dlq.emails": queue}))

    from_python = SQSQueueDriver(
        region=REGION, endpoint_url=aws.endpoint, queues={"default": queue}
    )
    with pytest.raises(ConfigurationError, match=r"set SQSQueueDriver\(scheduler_table="):
        JobService(from_python).enqueue_in(ping, {}, "2h")


def test_unique_table_from_the_url(aws: Aws, caplog: pytest.LogCaptureFixture) -> None:
    queue = aws.create_queue("jobs")
    driver: Any = driver_from_url(sqs_url(aws.endpoint, queue, unique_table="uniques"))
    assert driver.unique_table == "uniques"
    unique = define_job(name="u", handler=lambda payload: None, unique=lambda p: "k")
    plain: Any = driver_from_url(sqs_url(aws.endpoint, queue))
    JobService(plain).enqueue(unique, {})
    assert "add unique_table=<DynamoDB table> to the sqs:// URL" in caplog.text
