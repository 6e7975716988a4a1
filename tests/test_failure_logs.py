"""What a job's failures log, on the Lambda handler and the long-running worker, with plain
``logging`` and with Powertools Logger: one WARNING line per failed attempt, the first with
its traceback (Powertools' ``exception`` key); one ERROR line with the traceback for the dead
letter; and ``ctx.logger`` lines located at the handler that wrote them."""

from __future__ import annotations

import io
import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.jobs import JobContext, JobMessage, MockQueueDriver, TransientJobError, define_job
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.worker import Worker

powertools = pytest.importorskip("aws_lambda_powertools")
from aws_lambda_powertools import Logger  # noqa: E402
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers  # noqa: E402

ATTEMPTS = 3


def flaky(payload: Any, ctx: JobContext) -> None:
    raise ValueError(f"boom {ctx.attempt}")


def deliberate(payload: Any, ctx: JobContext) -> None:
    raise TransientJobError("upstream busy")


RETRY = {"max_attempts": ATTEMPTS, "backoff": 0, "jitter": False}
JOBS = {
    "flaky": define_job(name="flaky", handler=flaky, retry=RETRY),
    "deliberate": define_job(name="deliberate", handler=deliberate, retry=RETRY),
}


def run_every_attempt(worker: str, job_name: str, tmp_path: Path) -> None:
    """Run one job through all its attempts on ``worker`` ("lambda": the Lambda handler, as
    ``MockQueueDriver.drain`` drives it; "worker": the long-running worker on SQLite)."""
    module = define_module(name="m", jobs=list(JOBS.values()))
    message = JobMessage.create(job_name, None)
    if worker == "lambda":
        mock = MockQueueDriver()
        mock.enqueue(message)
        result = mock.drain(module)
    else:
        driver = SQLiteQueueDriver(tmp_path / "jobs.db")
        driver.enqueue(message)
        result = Worker(module=module, driver=driver).run_until_empty(
            include_delayed=True, timeout=30
        )
        driver.close()
    assert result.dead_lettered == 1


# -- plain logging --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["lambda", "worker"])
def test_each_failed_attempt_logs_one_warning_the_first_with_its_traceback(
    worker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="glasswork"):
        run_every_attempt(worker, "flaky", tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.attempt for r in warnings] == [1, 2]  # type: ignore[attr-defined]
    first, second = warnings
    assert first.exc_info is not None and str(first.exc_info[1]) == "boom 1"
    assert second.exc_info is None  # shown once, at the first failure
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.attempt == ATTEMPTS  # type: ignore[attr-defined]
    assert error.exc_info is not None and str(error.exc_info[1]) == f"boom {ATTEMPTS}"


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["lambda", "worker"])
def test_a_deliberate_transient_error_logs_no_traceback(
    worker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="glasswork"):
        run_every_attempt(worker, "deliberate", tmp_path)
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelno, r.attempt) for r in failures] == [  # type: ignore[attr-defined]
        (logging.WARNING, 1),
        (logging.WARNING, 2),
        (logging.ERROR, 3),
    ]
    assert all(r.exc_info is None for r in failures)


# -- Powertools Logger ----------------------------------------------------------------------


@pytest.fixture
def powertools_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Glasswork's loggers writing through a Powertools Logger (as docs/observability.md
    shows), into a buffer; yields a function returning the JSON lines so far. The loggers'
    settings are put back afterwards."""
    stream = io.StringIO()
    logger = Logger(
        service=f"shop-{uuid.uuid4().hex[:8]}",
        level="DEBUG",
        logger_handler=logging.StreamHandler(stream),
    )
    glasswork = logging.getLogger("glasswork")
    saved = (glasswork.handlers[:], glasswork.propagate, glasswork.level)
    copy_config_to_registered_loggers(source_logger=logger, include={"glasswork"})
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        glasswork.handlers, glasswork.propagate = saved[0], saved[1]
        glasswork.setLevel(saved[2])


@pytest.mark.slow
@pytest.mark.parametrize("worker", ["lambda", "worker"])
def test_powertools_gets_the_exception_key_at_the_first_failure(
    worker: str, tmp_path: Path, powertools_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    run_every_attempt(worker, "flaky", tmp_path)
    lines = powertools_lines()
    warnings = [line for line in lines if line["level"] == "WARNING"]
    assert [line["attempt"] for line in warnings] == [1, 2]
    first, second = warnings
    assert first["exception_name"] == "ValueError"
    assert "in flaky" in first["exception"] and "ValueError: boom 1" in first["exception"]
    assert first["job_name"] == "flaky" and "exception" not in second
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert error["attempt"] == ATTEMPTS and "ValueError: boom 3" in error["exception"]


# -- ctx.logger points at the handler -------------------------------------------------------


def here() -> int:
    """The caller's line number."""
    return sys._getframe(1).f_lineno


def chatty(payload: Any, ctx: JobContext) -> None:
    # Each call passes its own line as an extra field, to compare with the record's.
    ctx.logger.debug("debug", extra={"line": here()})
    ctx.logger.info("info", extra={"line": here()})
    ctx.logger.warning("warning", extra={"line": here()})
    ctx.logger.error("error", extra={"line": here()})
    ctx.logger.log(logging.INFO, "log", extra={"line": here()})
    ctx.logger.info({"user_id": 1}, "structured", extra={"line": here()})
    try:
        raise KeyError("k")
    except KeyError:
        ctx.logger.exception("exception", extra={"line": here()})


WHAT = ["debug", "info", "warning", "error", "log", "structured user_id=1", "exception"]


def run_chatty() -> None:
    module = define_module(name="m", jobs=[define_job(name="chatty", handler=chatty)])
    mock = MockQueueDriver()
    mock.enqueue(JobMessage.create("chatty", None))
    mock.drain(module)


def test_ctx_logger_records_point_at_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="glasswork"):
        run_chatty()
    records = [r for r in caplog.records if hasattr(r, "line")]
    assert [r.getMessage().split("] ", 1)[1] for r in records] == WHAT
    for r in records:
        assert (r.pathname, r.funcName, r.lineno) == (__file__, "chatty", r.line)  # type: ignore[attr-defined]
        assert r.filename == Path(__file__).name


def test_powertools_location_is_the_handlers_line(
    powertools_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    run_chatty()
    lines = [line for line in powertools_lines() if "line" in line]
    assert len(lines) == len(WHAT)
    for line in lines:
        assert line["location"] == f"chatty:{line['line']}"
