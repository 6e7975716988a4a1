"""Flow limits of a job: ``define_job(rate_limit="100/m")`` and
``define_job(concurrency_limit=2, concurrency_key=...)``, read and checked here; drivers that
can hold them across every worker have the
:class:`~glasswork.jobs.drivers.contract.FlowLimits` group."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .errors import ConfigurationError

#: The windows a rate limit may name, in seconds.
_WINDOWS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
#: Seconds a delivery waits for a concurrency slot before it tries again (a slot frees at an
#: unknown time); drivers spread it by up to half as much again, so waiters do not return
#: together.
SLOT_RETRY = 0.2
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
#: The forms a rate limit is written in, for error messages.
RATE_FORMS = "'<count>/s', '<count>/m' or '<count>/h' (e.g. '100/m')"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` starts in any ``window`` seconds (not on average: in every window)."""

    count: int
    window: float

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.window, f"{self.window:g}s")
        return f"{self.count}/{unit}"


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What a job may do at once: its ``rate`` and ``concurrency`` (running at once per
    concurrency key; None: unlimited). A driver with
    :class:`~glasswork.jobs.drivers.contract.FlowLimits` holds them across every worker."""

    rate: RateLimit | None = None
    concurrency: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.rate is not None:
            parts.append(f"rate_limit={str(self.rate)!r}")
        if self.concurrency is not None:
            parts.append(f"concurrency_limit={self.concurrency}")
        return ", ".join(parts)


def parse_rate_limit(job: str, value: object) -> RateLimit | None:
    """``rate_limit=`` of job ``job``: None, or ``"<count>/<s|m|h>"``; a
    :class:`ConfigurationError` naming the job and the accepted forms otherwise."""
    if value is None:
        return None
    if isinstance(value, RateLimit):
        return value
    found = _RATE.match(value) if isinstance(value, str) else None
    window = _WINDOWS.get(found.group(2)) if found else None
    if found is None or window is None or int(found.group(1)) < 1:
        raise ConfigurationError(
            f"job {job!r}: rate_limit must be {RATE_FORMS} with a count of 1 or more, got {value!r}"
        )
    return RateLimit(int(found.group(1)), window)


def check_concurrency(job: str, limit: object, key: object) -> int | None:
    """``concurrency_limit=`` (a positive integer, or None) and ``concurrency_key=`` (a
    function of the payload, only with a limit) of job ``job``."""
    if limit is None:
        if key is not None:
            raise ConfigurationError(
                f"job {job!r}: concurrency_key needs a concurrency_limit (how many may run "
                "at once per key)"
            )
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(
            f"job {job!r}: concurrency_limit must be a positive integer, got {limit!r}"
        )
    if key is not None and not callable(key):
        raise ConfigurationError(
            f"job {job!r}: concurrency_key must be a function of the payload, got {key!r}"
        )
    return limit


def limits_of(rate: RateLimit | None, concurrency: int | None) -> JobLimits | None:
    """The job's :class:`JobLimits`, None for a job without any (what the worker checks)."""
    if rate is None and concurrency is None:
        return None
    return JobLimits(rate, concurrency)


#: Concurrency keys longer than this (in characters) are stored as their digest.
MAX_SLOT_KEY = 200
_HASHED = "sha256:"


def slot_key(job_name: str, key: str | None) -> str:
    """The concurrency slot of ``key`` of job ``job_name`` as drivers store it: one string
    per pair (:func:`~glasswork.jobs.message.scoped_key`), a key over
    :data:`MAX_SLOT_KEY` characters (or one starting with ``sha256:``, or holding a NUL) as
    ``sha256:<hex>``, so that any index can hold it. (PostgreSQL's
    ``glasswork_claim_limited`` computes the same.)"""
    from .message import scoped_key

    text = key or ""
    if len(text) > MAX_SLOT_KEY or text.startswith(_HASHED) or "\x00" in text:
        import hashlib

        text = _HASHED + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return scoped_key(job_name, text)


class Limited(Protocol):
    """What :func:`refuse_unheld_limits` reads of a job definition."""

    @property
    def name(self) -> str: ...
    @property
    def limits(self) -> JobLimits | None: ...


def limited_jobs(jobs: Iterable[Limited]) -> list[Limited]:
    """The jobs with a rate or concurrency limit."""
    return [job for job in jobs if job.limits is not None]


def refuse_unheld_limits(
    jobs: Iterable[Limited],
    flow: object | None,
    driver: str | None,
    runtime: str,
    *,
    runtime_holds: bool = True,
) -> None:
    """A :class:`ConfigurationError` naming the first limited job of ``jobs`` when
    ``runtime`` cannot hold its limits: ``flow`` (the driver's :class:`FlowLimits`) is None,
    or the runtime itself cannot use it (``runtime_holds`` False)."""
    limited = limited_jobs(jobs)
    if not limited or (flow is not None and runtime_holds):
        return
    job = limited[0]
    name = driver or "none"
    if name == "sqs":
        # The SQS driver holds limits once it has its DynamoDB table.
        why = (
            "the sqs driver has no limits_table to hold rate or concurrency limits across "
            "workers in (it lacks the FlowLimits capability)"
        )
        fix = (
            "give the driver a limits_table (SQSQueueDriver(limits_table=...), or "
            "?limits_table= in the sqs:// URL; create it with "
            "glasswork.jobs.drivers.sqs.create_limits_table)"
        )
    elif runtime_holds:
        why = (
            f"the {name} driver cannot hold rate or concurrency limits across workers (it "
            "lacks the FlowLimits capability)"
        )
        fix = "run it on the SQLite, PostgreSQL or SQS (with a limits_table) driver"
    else:
        why = f"the {runtime} cannot hold rate or concurrency limits on the {name} driver"
        fix = "run it with a long-running worker, or on the SQS driver with a limits_table"
    raise ConfigurationError(
        f"job {job.name!r} has {job.limits}, but {why}, so the {runtime} would run it "
        f"unlimited; {fix}, or define it without limits"
    )
