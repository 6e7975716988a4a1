"""Fair tenants: ``define_job(fairness_key=lambda p: p.tenant_id)``, read and checked here.

The key is computed at enqueue and carried in the message (``fairnessKey``). Drivers whose
:attr:`~glasswork.jobs.drivers.contract.Capabilities.fairness` is ``"round-robin"`` (SQLite,
PostgreSQL, the mock) claim a queue's jobs round-robin across keys; the SQS driver sends the
key as the ``MessageGroupId`` of standard queues, whose fair queues then keep one tenant's
backlog from holding back the others. Any other driver refuses a fair job at enqueue.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .errors import ConfigurationError, InvalidJobPayloadError

#: The longest fairness key, in characters: an SQS ``MessageGroupId``'s length, so a key
#: means the same tenant on every driver.
MAX_FAIRNESS_KEY = 128


def check_fairness_key(job: str, key: object) -> Callable[[Any], object] | None:
    """``fairness_key=`` of job ``job``: None, or a function of the payload."""
    if key is not None and not callable(key):
        raise ConfigurationError(
            f"job {job!r}: fairness_key must be a function of the payload (e.g. "
            f"lambda p: p.tenant_id), got {key!r}"
        )
    return key


def fairness_key_of(job: str, key: Callable[[Any], object], value: object) -> str | None:
    """What ``key(value)`` gives, as the key a message carries: a non-empty string of at
    most :data:`MAX_FAIRNESS_KEY` characters without NUL (an integer or a UUID as its text),
    or None (no key: the payload joins the group of jobs without one). Anything else, or an
    exception from ``key``, is an :class:`InvalidJobPayloadError` naming the job; nothing
    is sent."""
    try:
        found = key(value)
    except Exception as exc:
        raise InvalidJobPayloadError(
            job,
            [],
            f"its fairness_key function raised {type(exc).__name__}: {exc}; nothing was sent",
        ) from exc
    if found is None:
        return None
    if isinstance(found, str):
        text = str.__str__(found)  # a str subclass (a StrEnum member, say) as its value
    elif isinstance(found, int) and not isinstance(found, bool):
        text = str(int(found))
    elif isinstance(found, uuid.UUID):
        text = str(found)
    else:
        raise InvalidJobPayloadError(
            job,
            [],
            f"its fairness_key function returned {found!r} ({type(found).__name__}); it must "
            "return a string, an integer or a UUID (None for no key); nothing was sent",
        )
    problem = _unusable(text)
    if problem:
        raise InvalidJobPayloadError(
            job, [], f"its fairness key {text[:200]!r} {problem}; nothing was sent"
        )
    return text


def _unusable(text: str) -> str | None:
    """Why ``text`` cannot be a fairness key (None: it can)."""
    if not text:
        return "is empty (return None for a payload of no tenant)"
    if len(text) > MAX_FAIRNESS_KEY:
        return f"is {len(text):,} characters long, over the {MAX_FAIRNESS_KEY} allowed"
    if "\x00" in text:
        return "holds U+0000 (NUL), which PostgreSQL text cannot store"
    return None


def refuse_unfair(job: str, fairness: str | None, driver: str) -> None:
    """A :class:`ConfigurationError` when a driver whose fairness is ``fairness`` (None:
    it has none) is asked to enqueue job ``job``, which has a ``fairness_key``."""
    if fairness is None:
        raise ConfigurationError(
            f"job {job!r} has a fairness_key, but {driver} cannot claim jobs fairly across "
            "keys (its capabilities say no fairness), so its tenants would be served in "
            "arrival order; nothing was sent. Use a driver that claims fairly (SQLite, "
            "PostgreSQL, SQS, the mock) or define the job without fairness_key"
        )


class Keyed(Protocol):
    """What :func:`refuse_unfair_jobs` reads of a job definition."""

    @property
    def name(self) -> str: ...
    @property
    def fairness_key(self) -> Callable[[Any], object] | None: ...


def refuse_unfair_jobs(
    jobs: Iterable[Keyed], fairness: str | None, driver: str | None, runtime: str
) -> None:
    """:func:`refuse_unfair` for the first of ``jobs`` with a ``fairness_key``, when the
    ``runtime`` (a worker) is on a driver without fairness: said when it starts."""
    if fairness is not None:
        return
    for job in jobs:
        if job.fairness_key is not None:
            refuse_unfair(job.name, None, f"the {driver or 'none'} driver of this {runtime}")
