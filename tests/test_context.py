"""The job context (glasswork.jobs.context): ``ctx.logger`` in the TypeScript seeds' style,
fields first, keeping the line."""

from __future__ import annotations

import logging

import pytest

import glasswork
from glasswork import define_module
from glasswork.jobs import JobService, MockQueueDriver, define_job


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
