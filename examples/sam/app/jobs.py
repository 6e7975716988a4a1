"""The example's jobs, its module, and the driver every function shares."""

from __future__ import annotations

import os

from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import (
    JobContext,
    PermanentJobError,
    SQSQueueDriver,
    define_job,
    define_periodic_job,
)


class Welcome(BaseModel):
    user_id: str


def send_welcome_email(payload: Welcome, ctx: JobContext) -> None:
    if not payload.user_id:
        raise PermanentJobError("no user id")
    ctx.logger.info("welcome email sent to %s", payload.user_id)


def send_reminder_email(payload: Welcome, ctx: JobContext) -> None:
    ctx.logger.info("reminder sent to %s", payload.user_id)


def daily_cleanup(payload: object, ctx: JobContext) -> None:
    ctx.logger.info("daily cleanup done")


send_welcome = define_job(
    name="send-welcome-email",
    schema=Welcome,
    handler=send_welcome_email,
    unique={"key": lambda p: p.user_id},
    retry={"max_attempts": 5, "backoff": 30},
)
send_reminder = define_job(name="send-reminder-email", schema=Welcome, handler=send_reminder_email)
cleanup = define_periodic_job(name="daily-cleanup", handler=daily_cleanup)

WorkerModule = define_module(name="worker", jobs=[send_welcome, send_reminder, cleanup])


def make_driver() -> SQSQueueDriver:
    """The SQS driver, configured from the environment the template sets."""
    return SQSQueueDriver(
        region=os.environ["AWS_REGION"],
        queues={"default": os.environ["JOB_QUEUE_URL"]},
        # Optional: names the DLQ outright instead of reading the queue's redrive policy.
        dead_letter_queues={"default": os.environ["JOB_DLQ_URL"]},
        scheduler_table=os.environ["SCHEDULED_JOBS_TABLE"],
        # Job status, results and cancellation (JobService.status/wait/cancel).
        status_table=os.environ.get("JOB_STATUS_TABLE"),
    )
