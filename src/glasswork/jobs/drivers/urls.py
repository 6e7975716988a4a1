"""Driver URLs, as the ``glasswork`` command takes them.

* ``sqlite:///jobs.db`` (a path relative to the working directory) or
  ``sqlite:////var/lib/app/jobs.db`` (absolute), with optional settings of
  :class:`~glasswork.jobs.drivers.sqlite.SQLiteQueueDriver` as query parameters:
  ``?visibility_timeout=60&busy_timeout=30&synchronous=FULL&max_lost_leases=5``.
* ``sqs://?region=us-east-1&queue.default=https://sqs...&queue.emails=https://sqs...``
  with optional ``scheduler_table=``, ``endpoint_url=`` and ``dlq.<queue>=<url>``; the
  region may also be the host: ``sqs://us-east-1?queue.default=...``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigurationError
from .base import QueueDriver

DEFAULT_URL = "sqlite:///glasswork.db"

_SQLITE_OPTIONS: dict[str, Callable[[str], Any]] = {
    "visibility_timeout": float,
    "busy_timeout": float,
    "poll_interval": float,
    "max_lost_leases": int,
    "synchronous": str,
}


def driver_from_url(url: str) -> QueueDriver:
    """Make the driver a URL describes; raises :class:`ConfigurationError` saying what is
    wrong with it."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return _sqlite(url, parts.netloc, parts.path, parts.query)
    if parts.scheme == "sqs":
        return _sqs(url, parts.netloc, parts.query)
    raise ConfigurationError(
        f"unknown driver URL {url!r}: use sqlite:///path/to/jobs.db or "
        "sqs://?region=us-east-1&queue.default=https://sqs.us-east-1.amazonaws.com/123/jobs"
    )


def _query(url: str, query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigurationError(f"cannot read the query of driver URL {url!r}: {exc}") from None


def _sqlite(url: str, host: str, path: str, query: str) -> QueueDriver:
    from .sqlite import SQLiteQueueDriver

    if host or not path.startswith("/") or path == "/":
        raise ConfigurationError(
            f"cannot read SQLite URL {url!r}: use sqlite:///relative/jobs.db or "
            "sqlite:////absolute/path/jobs.db (three slashes, then the path)"
        )
    options: dict[str, Any] = {}
    for key, value in _query(url, query):
        convert = _SQLITE_OPTIONS.get(key)
        if convert is None:
            raise ConfigurationError(
                f"unknown SQLite driver option {key!r} in {url!r}; options: "
                f"{', '.join(_SQLITE_OPTIONS)}"
            )
        try:
            options[key] = convert(value)
        except ValueError:
            raise ConfigurationError(
                f"SQLite driver option {key}={value!r} in {url!r} is not a valid {convert.__name__}"
            ) from None
    return SQLiteQueueDriver(path[1:], **options)


def _sqs(url: str, host: str, query: str) -> QueueDriver:
    queues: dict[str, str] = {}
    dead_letter_queues: dict[str, str] = {}
    options: dict[str, Any] = {"region": host or None}
    for key, value in _query(url, query):
        if key.startswith("queue.") and len(key) > 6:
            queues[key[6:]] = value
        elif key.startswith("dlq.") and len(key) > 4:
            dead_letter_queues[key[4:]] = value
        elif key in ("region", "scheduler_table", "endpoint_url"):
            options[key] = value
        else:
            raise ConfigurationError(
                f"unknown SQS driver option {key!r} in {url!r}; options: region, "
                "queue.<name>=<queue url>, dlq.<name>=<queue url>, scheduler_table, endpoint_url"
            )
    if not queues:
        raise ConfigurationError(
            f"SQS URL {url!r} names no queues: add queue.<name>=<queue url> for each queue, "
            "e.g. sqs://?region=us-east-1&queue.default=https://sqs.us-east-1.amazonaws.com/"
            "123456789012/jobs"
        )
    try:
        from .sqs import SQSQueueDriver
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("boto3", "botocore"):
            raise ConfigurationError(
                "the SQS driver needs boto3: pip install 'glasswork[sqs]'"
            ) from None
        raise ConfigurationError(
            f"the SQS driver (glasswork.jobs.drivers.sqs) is not available in this "
            f"installation ({exc}); use a sqlite:/// URL"
        ) from None
    if dead_letter_queues:
        options["dead_letter_queues"] = dead_letter_queues
    driver: QueueDriver = SQSQueueDriver(
        queues=queues, **{k: v for k, v in options.items() if v is not None}
    )
    return driver
