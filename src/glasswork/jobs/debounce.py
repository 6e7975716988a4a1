"""Debounce and supersede: ``enqueue(job, payload, debounce="30s")``.

A debounced enqueue of a job with a unique key runs the job ``debounce`` from now; a later
debounced enqueue of the same key before that job has ended supersedes it: the later
payload runs instead, ``debounce`` after the later enqueue (trailing edge), so a burst of
enqueues runs the job once, with its last payload, a window after the last of them.

Every enqueue is a job of its own (its own job id). A superseded job ends ``cancelled``
with the error ``"superseded by job <id>"`` (``... while it ran`` when it had started): it
never shows ``done``, and it is never delivered or run again; a run of it under way is not
interrupted, but what it returns no longer counts. :meth:`JobService.wait
<glasswork.jobs.JobService.wait>` follows a superseded job to the job that superseded it,
so waiting on the handle of any enqueue of a burst returns the result of the run that
counted.

What each driver does, and what it costs, is in ``docs/limits.md`` (Debounce); how a
driver offers it is the :class:`~glasswork.jobs.drivers.contract.Debounce` group.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from .drivers.contract import Debounce, capabilities_of, driver_label
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .definition import JobDefinition
    from .drivers.records import JobStatus

logger = logging.getLogger("glasswork.jobs")

#: How the error of a superseded job starts; the id of the job that superseded it follows.
SUPERSEDED_BY = "superseded by job "
#: What the error of a job superseded while it ran adds.
WHILE_IT_RAN = " while it ran"


def superseded_reason(job_id: str, *, running: bool = False) -> str:
    """The error a job superseded by job ``job_id`` ends with (``running``: it had
    started)."""
    return f"{SUPERSEDED_BY}{job_id}{WHILE_IT_RAN if running else ''}"


def superseding_job(status: JobStatus | None) -> str | None:
    """The id of the job that superseded the job of ``status`` (None: it was not
    superseded)."""
    if status is None or status.state != "cancelled" or not status.error:
        return None
    error = status.error
    if not error.startswith(SUPERSEDED_BY):
        return None
    job_id = error[len(SUPERSEDED_BY) :].removesuffix(WHILE_IT_RAN)
    return job_id or None


def debouncer(driver: object, job: JobDefinition[Any]) -> Debounce:
    """``driver`` as the :class:`Debounce` group, or a :class:`ConfigurationError` naming
    ``job`` and what is missing."""
    if job.unique_key is None:
        raise ConfigurationError(
            f"job {job.name!r} cannot be debounced: debounce= replaces the waiting job of "
            "the same unique key, and this job has none; define it with "
            "define_job(..., unique=lambda payload: <key>)"
        )
    found = capabilities_of(driver).debounce
    if found is None:
        raise ConfigurationError(
            f"job {job.name!r} cannot be debounced on the {driver_label(driver)} driver: it "
            "has no Debounce capability (enqueue_debounced); nothing was sent. The SQLite, "
            "PostgreSQL and mock drivers have it, and the SQS driver with a unique-key table "
            '(SQSQueueDriver(unique_table=...)); see docs/limits.md, "Debounce"'
        )
    return found


def check_key(job: JobDefinition[Any], unique_key: str | None) -> str:
    """The unique key of a debounced enqueue; a :class:`ConfigurationError` when the
    job's key function gave none for this payload."""
    if unique_key is None:
        raise ConfigurationError(
            f"job {job.name!r} cannot be debounced for this payload: its unique key function "
            "returned None, and debounce= replaces the waiting job of the same key; nothing "
            "was sent"
        )
    return unique_key


#: The note a debounced enqueue's :class:`~glasswork.jobs.DuplicateJobError` gets.
NOT_DEBOUNCED = (
    "the job holding the key was enqueued without debounce=, so a debounced enqueue does not "
    "supersede it (on SQS its message would run all the same); nothing was sent"
)


def is_debounced(body: Any) -> bool:
    """Whether a stored wire ``body`` was enqueued with ``debounce=`` (its top-level
    ``debounce`` is a number); a body that cannot be read is not."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return False
    window = data.get("debounce") if isinstance(data, dict) else None
    return isinstance(window, int | float) and not isinstance(window, bool)


def log_superseded(job_name: str, unique_key: str | None, old: str, new: str) -> None:
    """The DEBUG line of an enqueue that superseded a job (not an error: what debounce is
    for)."""
    logger.debug(
        "job %r with unique key %r: job %s superseded by job %s (debounce)",
        job_name,
        unique_key,
        old,
        new,
    )
