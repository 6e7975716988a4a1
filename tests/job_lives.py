"""Jobs in every state a driver's status store shows, written through the driver's own
methods (enqueue, receive, record_progress, record_retry, nack, dead_letter, finish), as a
worker would: for the CLI's and the dashboard's tests, on SQLite or PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.records import FinalStatus, ReceivedMessage

#: What the done job returned (HTML in it: pages show it as text).
RESULT = {"sent": True, "to": "<b>a@example.com</b>", "n": [1, 2]}
TRACEBACK = 'Traceback (most recent call last):\n  File "shop.py", line 9\nValueError: bad\n'


@dataclass(frozen=True)
class Lives:
    """Jobs in each state: their ids."""

    done: str
    running: str
    retrying: str
    dead: str
    pending: str
    scheduled: str


def claim(driver: Any, message: JobMessage) -> ReceivedMessage:
    driver.enqueue(message)
    (received,) = driver.receive([message.queue or "default"], max_messages=1, wait_seconds=0)
    return received


def live_jobs(driver: Any) -> Lives:
    """One job per state but ``failed`` and ``cancelled``, each claimed from a queue of its
    own (so a claim takes the job just enqueued)."""
    done = JobMessage.create("send-receipt", {"order": 1}, queue="emails")
    driver.finish(
        claim(driver, done),
        FinalStatus("done", result=RESULT, progress=1.0),
    )
    running = JobMessage.create("resize-image", {"image": "cat.png"}, queue="media")
    claim(driver, running)
    driver.record_progress(running.job_id, 0.4, "page 4 of 10")
    retrying = JobMessage.create("charge-card", {"amount": 12}, queue="payments")
    failed = claim(driver, retrying)
    driver.record_retry(failed, "ConnectionError: bank down", TRACEBACK)
    driver.nack(failed, 3600)
    dead = JobMessage.create("charge-card", {"amount": 99}, queue="refunds")
    buried = claim(driver, dead)
    driver.dead_letter(buried.body, "ValueError: bad", queue="refunds", traceback=TRACEBACK)
    driver.ack(buried)  # the worker's dead-lettering consumes the delivery, then records its end
    driver.finish(buried, FinalStatus("dead", error="ValueError: bad", traceback=TRACEBACK))
    pending = JobMessage.create("send-receipt", {"order": 2}, queue="emails")
    driver.enqueue(pending)
    scheduled = JobMessage.create("send-receipt", {"order": 3}, queue="emails")
    driver.enqueue_at(scheduled, datetime.now(UTC) + timedelta(hours=1))
    return Lives(
        done.job_id,
        running.job_id,
        retrying.job_id,
        dead.job_id,
        pending.job_id,
        scheduled.job_id,
    )
