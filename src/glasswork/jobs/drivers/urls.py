"""Driver URLs, as the ``glasswork`` command takes them.

* ``sqlite:///jobs.db`` (a path relative to the working directory) or
  ``sqlite:////var/lib/app/jobs.db`` (absolute), with optional settings of
  :class:`~glasswork.jobs.drivers.sqlite.SQLiteQueueDriver` as query parameters:
  ``?visibility_timeout=60&busy_timeout=30&synchronous=FULL&max_lost_leases=5``
  (also ``poll_interval`` and ``disk_reserve``).
* ``sqs://?region=us-east-1&queue.default=https://sqs...&queue.emails=https://sqs...``
  with optional ``scheduler_table=``, ``unique_table=``, ``status_table=``, ``limits_table=``,
  ``endpoint_url=`` and ``dlq.<queue>=<url>``; the region may also be the host: ``sqs://us-east-1?queue.default=...``
  (without one, ``AWS_DEFAULT_REGION`` or the AWS config file's). Errors about its settings
  name these parameters.
* ``postgresql://user:password@host:5432/dbname?schema=jobs`` (or ``postgres://``), with
  optional settings of :class:`~glasswork.jobs.drivers.postgres.PostgresQueueDriver`
  (``schema``, ``visibility_timeout``, ``max_lost_leases``, ``poll_interval``,
  ``min_connections``, ``max_connections``, ``reconnect_timeout``, ``statement_timeout``,
  ``migrate``); every other query parameter (``sslmode``, ``connect_timeout``, ...) goes to
  libpq, percent-decoded as libpq decodes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigurationError
from ..extras import needs_extra
from .contract import QueueDriver

DEFAULT_URL = "sqlite:///glasswork.db"

_SQLITE_OPTIONS: dict[str, Callable[[str], Any]] = {
    "visibility_timeout": float,
    "busy_timeout": float,
    "poll_interval": float,
    "max_lost_leases": int,
    "synchronous": str,
    "disk_reserve": int,
}


def boolean(text: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``) as a bool."""
    values = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.lower() not in values:
        raise ValueError(text)
    return values[text.lower()]


_POSTGRES_OPTIONS: dict[str, Callable[[str], Any]] = {
    "schema": str,
    "visibility_timeout": float,
    "max_lost_leases": int,
    "poll_interval": float,
    "min_connections": int,
    "max_connections": int,
    "reconnect_timeout": float,
    "statement_timeout": float,
    "migrate": boolean,
}


def driver_from_url(url: str, *, create: bool = True) -> QueueDriver:
    """Make the driver a URL describes (the ``glasswork`` command's ``--driver``):

    >>> driver = driver_from_url("sqlite:///jobs.db?visibility_timeout=60")  # doctest: +SKIP

    Raises :class:`ConfigurationError` saying what is wrong with the URL. ``create=False``
    (tools that only look at a queue) creates nothing: a SQLite file that does not exist,
    or holds no queue, and a PostgreSQL schema without the job tables are such errors
    (PostgreSQL tables of an older version are not upgraded either: ``glasswork migrate``
    does that; a SQLite queue file is upgraded in place, as by any driver). SQS drivers
    never create anything."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return _sqlite(url, parts.netloc, parts.path, parts.query, create)
    if parts.scheme == "sqs":
        return _sqs(url, parts.netloc, parts.query)
    if parts.scheme in POSTGRES_SCHEMES:
        return _postgres(url, create)
    raise ConfigurationError(
        f"unknown driver URL {url!r}: use sqlite:///path/to/jobs.db, "
        "postgresql://user@host/dbname or "
        "sqs://?region=us-east-1&queue.default=https://sqs.us-east-1.amazonaws.com/123/jobs"
    )


POSTGRES_SCHEMES = ("postgresql", "postgres")


def postgres_settings(url: str) -> tuple[str, dict[str, Any]]:
    """A ``postgresql://`` URL split into the connection string for libpq (``key=value``
    form) and the driver's own settings (``schema``, ``visibility_timeout``, ...). The query
    is read as libpq reads it: percent-decoded, ``+`` is a plus sign."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}{at}{host}"
    shown = url.replace(parts.netloc, netloc, 1)  # for messages: no password
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ConfigurationError(f"not a PostgreSQL URL: {shown!r} (use postgresql://...)")
    options: dict[str, Any] = {}
    libpq: dict[str, str] = {}
    for key, value in _percent_decoded(shown, parts.query):
        if key in _POSTGRES_OPTIONS:
            options[key] = _convert(shown, "PostgreSQL", key, value, _POSTGRES_OPTIONS[key])
        else:
            libpq[key] = value
    base = url.partition("?")[0]
    try:
        from psycopg.conninfo import make_conninfo
    except ModuleNotFoundError:
        return base, options  # _postgres says what to install
    try:
        # libpq parses the rest and checks every parameter; the values are quoted for it.
        return make_conninfo(base, **libpq), options
    except Exception as exc:
        raise ConfigurationError(
            f"cannot read PostgreSQL URL {shown!r}: {str(exc).strip()}; the driver's own "
            f"options are {', '.join(_POSTGRES_OPTIONS)}, the others go to libpq"
        ) from None


def _percent_decoded(url: str, query: str) -> list[tuple[str, str]]:
    """``key=value`` pairs of a URL query as libpq decodes them: ``%XX`` only (``+`` stays;
    :func:`urllib.parse.parse_qsl` would make it a space, which libpq does not)."""
    pairs = []
    for piece in query.split("&") if query else []:
        key, equals, value = piece.partition("=")
        try:
            if not equals or not key:
                raise ValueError(f"{piece!r} is not key=value")
            pairs.append((unquote(key, errors="strict"), unquote(value, errors="strict")))
        except ValueError as exc:  # UnicodeDecodeError included
            raise ConfigurationError(
                f"cannot read the query of driver URL {url!r}: {exc}"
            ) from None
    return pairs


def _query(url: str, query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigurationError(f"cannot read the query of driver URL {url!r}: {exc}") from None


def _sqlite(url: str, host: str, path: str, query: str, create: bool) -> QueueDriver:
    from .sqlite.driver import SQLiteQueueDriver

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
        options[key] = _convert(url, "SQLite", key, value, convert)
    return SQLiteQueueDriver(path[1:], create=create, **options)


def _convert(url: str, kind: str, key: str, value: str, convert: Callable[[str], Any]) -> Any:
    try:
        return convert(value)
    except ValueError:
        raise ConfigurationError(
            f"{kind} driver option {key}={value!r} in {url!r} is not a valid {convert.__name__}"
        ) from None


def _postgres(url: str, create: bool) -> QueueDriver:
    dsn, options = postgres_settings(url)
    with needs_extra("postgres", "the PostgreSQL driver needs psycopg 3 and psycopg_pool"):
        from .postgres import PostgresQueueDriver
    if not create:
        options["migrate"] = False  # look, never create or upgrade
    return PostgresQueueDriver(dsn, **options)


def _sqs(url: str, host: str, query: str) -> QueueDriver:
    queues: dict[str, str] = {}
    dead_letter_queues: dict[str, str] = {}
    options: dict[str, Any] = {"region": host or None}
    for key, value in _query(url, query):
        if key.startswith("queue.") and len(key) > 6:
            queues[key[6:]] = value
        elif key.startswith("dlq.") and len(key) > 4:
            dead_letter_queues[key[4:]] = value
        elif key in (
            "region",
            "scheduler_table",
            "unique_table",
            "status_table",
            "limits_table",
            "endpoint_url",
        ):
            options[key] = value
        else:
            raise ConfigurationError(
                f"unknown SQS driver option {key!r} in {url!r}; options: region, "
                "queue.<name>=<queue url>, dlq.<name>=<queue url>, scheduler_table, "
                "unique_table, status_table, limits_table, endpoint_url"
            )
    if not queues:
        raise ConfigurationError(
            f"SQS URL {url!r} names no queues: add queue.<name>=<queue url> for each queue, "
            "e.g. sqs://?region=us-east-1&queue.default=https://sqs.us-east-1.amazonaws.com/"
            "123456789012/jobs"
        )
    try:
        with needs_extra("sqs", "the SQS driver needs boto3"):
            from .sqs.driver import SQSQueueDriver
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"the SQS driver (glasswork.jobs.drivers.sqs) is not available in this "
            f"installation ({exc}); use a sqlite:/// URL"
        ) from None
    if dead_letter_queues:
        options["dead_letter_queues"] = dead_letter_queues
    driver: QueueDriver = SQSQueueDriver(
        queues=queues, url=url, **{k: v for k, v in options.items() if v is not None}
    )
    return driver
