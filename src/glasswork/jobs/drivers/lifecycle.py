"""What the SQL drivers share to keep a job's life (:class:`~.contract.StatusStore`): the
state a live job row shows, results as JSON text, the fields a wire body gives a status
kept without its row, and history pages merged from several tables."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .records import JobState, JobStatus

#: The states read off a job's row; the others are kept once it ended.
LIVE_STATES = frozenset({"scheduled", "pending", "running", "retrying"})
#: Every state a status may have.
STATES = LIVE_STATES | {"done", "failed", "dead", "cancelled"}
#: Why a job is cancelled unless its canceller says otherwise.
CANCELLED = "cancelled"


def live_state(leased: Any, attempts: int, due_later: Any) -> JobState:
    """The state of a job still in the queue: ``running`` while a worker holds it (its
    lease may have run out: until it is claimed again, it was last seen running),
    ``retrying`` when a run failed before, ``scheduled`` or ``pending`` when none did."""
    if leased:
        return "running"
    if attempts > 0:
        return "retrying"
    return "scheduled" if due_later else "pending"


def dump_result(value: Any) -> str | None:
    """A result as stored (JSON text; None stays NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def load_result(text: str | None) -> Any:
    """A stored result read back."""
    return None if text is None else json.loads(text)


def wire_fields(body: str) -> tuple[str | None, str | None, str | None, int]:
    """Job id, job name, ``enqueuedAt`` (ISO text) and priority of a wire body, each None
    (0) when a malformed body lacks it: what a status needs when the job's row is gone (a
    dead-lettered job). Never raises."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, None, None, 0
    if not isinstance(data, dict):
        return None, None, None, 0

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    priority = data.get("priority")
    if not isinstance(priority, int) or isinstance(priority, bool):
        priority = 0
    return text("jobId"), text("jobName"), text("enqueuedAt"), priority


def fairness_of(body: str) -> str | None:
    """The ``fairnessKey`` of a wire body (None: none, or a malformed body), for storing a
    job anew (a redriven dead letter) in its tenant's group. Never raises."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    key = data.get("fairnessKey") if isinstance(data, dict) else None
    return key if isinstance(key, str) and key and "\x00" not in key else None


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time from a wire body (None when missing or unreadable)."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def check_state(state: str | None) -> None:
    """Refuse a history filter that names no state (a typo would list nothing)."""
    if state is not None and state not in STATES:
        raise ValueError(
            f"unknown job state {state!r}: expected one of {', '.join(sorted(STATES))}"
        )


def newest_first(pages: Iterable[list[JobStatus]], limit: int) -> list[JobStatus]:
    """The ``limit`` newest of several pages, each already newest first (by ``updated_at``,
    then ``job_id``), without repeating a job: the first page that has it wins (pass the
    live rows first)."""
    seen: set[str] = set()
    merged: list[JobStatus] = []
    for page in pages:
        for status in page:
            if status.job_id not in seen:
                seen.add(status.job_id)
                merged.append(status)
    merged.sort(key=_order, reverse=True)
    return merged[:limit]


def _order(status: JobStatus) -> tuple[float, str]:
    at = status.updated_at
    return (at.timestamp() if at is not None else 0.0, status.job_id)
