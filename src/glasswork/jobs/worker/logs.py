"""The worker's per-job log lines, at INFO: one when a job starts, one when it ends (a
failure is logged once more, by the executor, with its traceback: see :func:`log_end`).

Both carry ``job_name``, ``job_id``, ``attempt`` and ``queue`` as ``extra`` fields (the end
line also ``outcome`` and ``duration_ms``), for JSON formatters::

    start send-welcome-email 8769e4c5 (attempt 1, queue emails)
    end send-welcome-email 8769e4c5 (attempt 1): done, ran 1.4 ms
    end flaky-upstream 0c2d7a51 (attempt 1): retry, ran 100.7 ms, retry in 0.8 s
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..context import JobContext
from ..drivers.records import ReceivedMessage
from ..execution import DeadLetter, Discard, Outcome, Retry

logger = logging.getLogger("glasswork.worker")


def names_of(prepared: JobContext | Outcome, received: ReceivedMessage) -> tuple[str, str]:
    """Job name and id for log lines: from the run's context (read with the body, without
    building the message), else peeked from a body that is no job envelope."""
    if isinstance(prepared, JobContext):
        fields = prepared._fields
        return str(fields["job_name"]), str(fields["job_id"])
    try:
        data = json.loads(received.body)
        return str(data["jobName"]), str(data.get("jobId", "?"))
    except Exception:
        return "<malformed>", "?"


def log_start(log: logging.Logger, received: ReceivedMessage, name: str, job_id: str) -> None:
    extra = {
        "job_name": name,
        "job_id": job_id,
        "attempt": received.attempt,
        "queue": received.queue,
    }
    log.info(
        "start %s %s (attempt %d, queue %s)",
        name,
        job_id,
        received.attempt,
        received.queue,
        extra=extra,
    )


def log_end(
    log: logging.Logger,
    received: ReceivedMessage,
    name: str,
    job_id: str,
    outcome: Outcome,
    seconds: float,
) -> None:
    """The end line, at INFO whatever the outcome: a failure itself is logged once, where it
    is decided (:class:`~glasswork.jobs.execution.Executor`, logger ``glasswork.jobs``: WARNING with
    the traceback of the first failure, ERROR for a dead letter), as on Lambda."""
    if not log.isEnabledFor(logging.INFO):
        return
    detail = ""
    if isinstance(outcome, Retry):
        detail = f", retry in {outcome.delay:.1f} s"
    elif isinstance(outcome, DeadLetter | Discard):
        detail = f": {outcome.reason}"
    duration_ms = round(seconds * 1000, 3)
    extra: dict[str, Any] = {
        "job_name": name,
        "job_id": job_id,
        "attempt": received.attempt,
        "queue": received.queue,
        "outcome": outcome.kind,
        "duration_ms": duration_ms,
    }
    log.info(
        "end %s %s (attempt %d): %s, ran %.1f ms%s",
        name,
        job_id,
        received.attempt,
        outcome.kind,
        duration_ms,
        detail,
        extra=extra,
    )
