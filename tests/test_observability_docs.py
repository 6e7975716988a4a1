"""docs/observability.md's "Logs as JSON" examples run as written (Powertools Logger, and plain
``logging`` with a JSON formatter) and log what the page says: JSON lines, the first failed
attempt with its traceback, ``ctx.logger`` lines located at the handler."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "observability.md"

# What the examples take as given: a module whose job logs a line, then fails; a driver.
PRELUDE = """\
from glasswork import define_module
from glasswork.jobs import MockQueueDriver, define_job


def send_welcome_email(payload, ctx):
    ctx.logger.info("sending")
    raise ConnectionError("smtp down")


WorkerModule = define_module(
    name="worker", jobs=[define_job(name="send-welcome-email", handler=send_welcome_email)]
)
driver = MockQueueDriver()
"""
SENDING_LINE = 6  # of the ctx.logger call in PRELUDE

# One SQS batch through the example's `handler`, as Lambda would call it.
INVOKE = """
from glasswork.jobs import BatchRetryError, JobMessage
from glasswork.jobs.testing import FakeLambdaContext, sqs_event

try:
    handler(sqs_event([JobMessage.create("send-welcome-email", None)]), FakeLambdaContext())
except BatchRetryError:
    pass  # the one record is to be retried: Lambda returns the batch
"""


def blocks() -> list[str]:
    text = DOC.read_text()
    section = text.split("## Logs as JSON", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def run_example(block: str, tmp_path: Path) -> list[dict[str, Any]]:
    script = tmp_path / "example.py"
    script.write_text(PRELUDE + block + INVOKE)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines
    return [json.loads(line) for line in lines]


def test_the_section_has_the_two_examples() -> None:
    assert len(blocks()) == 2


@pytest.mark.subprocess
@pytest.mark.parametrize("which", ["powertools", "plain"])
def test_the_logs_as_json_examples_run_and_log_as_documented(which: str, tmp_path: Path) -> None:
    if which == "powertools":
        pytest.importorskip("aws_lambda_powertools")
    block = blocks()[0 if which == "powertools" else 1]
    lines = run_example(block, tmp_path)
    [sending] = [line for line in lines if line["message"].endswith("] sending")]
    [failed] = [line for line in lines if line["level"] == "WARNING"]
    assert "attempt 1 of 3 failed" in failed["message"]
    assert (failed["job_name"], failed["attempt"]) == ("send-welcome-email", 1)
    assert "in send_welcome_email" in failed["exception"]
    assert failed["exception"].endswith("ConnectionError: smtp down")
    if which == "powertools":
        assert sending["location"] == f"send_welcome_email:{SENDING_LINE}"
        assert failed["exception_name"] == "ConnectionError"
        assert failed["service"] == "shop" and failed["cold_start"] is True
        assert failed["name"] == "glasswork.jobs"
    else:
        assert sending["location"] == f"example.py:{SENDING_LINE}"
        assert failed["logger"] == "glasswork.jobs"
