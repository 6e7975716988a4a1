"""The job context (glasswork.jobs.context): ``ctx.logger`` in the TypeScript seeds' style,
fields first, keeping the line; the cancel flag and progress, what a handler calls and what
workers read."""

from __future__ import annotations

import logging
import threading

import pytest

import glasswork
from glasswork import define_module
from glasswork.jobs import JobMessage, JobService, MockQueueDriver, define_job
from glasswork.jobs.errors import JobCancelledError
from glasswork.jobs.execution import Executor


def test_seeds_style_structured_logging_keeps_the_line(caplog: pytest.LogCaptureFixture) -> None:
    def handler(payload: object, ctx: glasswork.JobContext) -> None:
        ctx.logger.info({"user_id": "u1", "name": "clash"}, "Welcome email sent")
        ctx.logger.error({"err": "boom"}, "Job failed: %s", "details")

    job = define_job(name="welcome", handler=handler)
    driver = MockQueueDriver()
    JobService(driver).enqueue(job, None)
    with caplog.at_level(logging.INFO, logger="glasswork.jobs"):
        driver.drain(define_module(name="app", jobs=[job]))
    sent = next(r for r in caplog.records if "Welcome email sent" in r.getMessage())
    assert sent.user_id == "u1"  # type: ignore[attr-defined]
    assert sent.name_ == "clash"  # type: ignore[attr-defined] - 'name' is the logger's own
    assert sent.job_name == "welcome"  # type: ignore[attr-defined]
    assert "user_id='u1'" in sent.getMessage()
    failed = next(r for r in caplog.records if "Job failed" in r.getMessage())
    assert "Job failed: details" in failed.getMessage() and failed.err == "boom"  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if "Logging error" in r.getMessage()]


def prepared_context():
    """A context as workers make it (Executor.prepare leaves the new slots unset)."""
    job = define_job(name="j", handler=lambda: None)
    executor = Executor.for_module(define_module(name="m", jobs=[job]))
    return executor.prepare(JobMessage.create("j", {"n": 1}).encode())


def test_a_fresh_context_is_not_cancelled_and_has_no_progress():
    ctx = prepared_context()
    assert ctx.cancelled is False and ctx.cancel_reason is None
    ctx.raise_if_cancelled()  # nothing to raise
    assert ctx.last_progress is None


def test_raise_if_cancelled_raises_job_cancelled_error_with_the_reason_once_asked():
    ctx = prepared_context()
    ctx.request_cancel("the user pressed stop")
    assert ctx.cancelled and ctx.cancel_reason == "the user pressed stop"
    with pytest.raises(JobCancelledError, match="the user pressed stop") as raised:
        ctx.raise_if_cancelled()
    assert raised.value.reason == "the user pressed stop"


def test_progress_keeps_only_the_latest_report():
    ctx = prepared_context()
    ctx.progress(0.25)
    ctx.progress(0.5, "half way")
    assert ctx.last_progress == (0.5, "half way")
    ctx.progress(1)
    assert ctx.last_progress == (1.0, None) and isinstance(ctx.last_progress[0], float)


@pytest.mark.parametrize("fraction", [-0.1, 1.01, float("nan"), float("inf")])
def test_progress_out_of_0_to_1_is_a_value_error(fraction):
    ctx = prepared_context()
    with pytest.raises(ValueError, match="progress must be from 0 to 1"):
        ctx.progress(fraction)
    assert ctx.last_progress is None


@pytest.mark.parametrize(("fraction", "note"), [("0.5", None), (True, None), (0.5, 3)])
def test_progress_of_the_wrong_type_is_a_type_error(fraction, note):
    ctx = prepared_context()
    with pytest.raises(TypeError):
        ctx.progress(fraction, note)


def test_progress_reports_from_many_threads_are_read_whole():
    ctx = prepared_context()
    stop = threading.Event()
    torn = []

    def report(fraction: float, note: str) -> None:
        while not stop.is_set():
            ctx.progress(fraction, note)

    def read() -> None:
        for _ in range(20000):
            seen = ctx.last_progress
            if seen is not None and seen not in {(0.25, "a"), (0.75, "b")}:
                torn.append(seen)

    writers = [threading.Thread(target=report, args=a) for a in [(0.25, "a"), (0.75, "b")]]
    for w in writers:
        w.start()
    try:
        read()
    finally:
        stop.set()
        for w in writers:
            w.join()
    assert torn == []


def test_a_context_made_by_hand_starts_not_cancelled_too():
    from glasswork.jobs.context import JobContext, JobLogger

    message = JobMessage.create("j", None)
    ctx = JobContext(None, JobLogger(None, {}), message)  # type: ignore[arg-type]
    assert not ctx.cancelled and ctx.last_progress is None
