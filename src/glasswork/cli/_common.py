"""What every ``glasswork`` command shares: the app and driver options, errors, tables."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..jobs.drivers.contract import capabilities_of
from ..jobs.drivers.urls import DEFAULT_URL, driver_from_url
from ..jobs.durations import parse_duration
from ..jobs.errors import ConfigurationError
from ._errors import CommandError as CommandError
from ._errors import UsageError as UsageError
from ._options import option

if TYPE_CHECKING:
    from ..jobs.drivers.contract import QueueDriver
    from ..modules import Module

T = TypeVar("T")


#: Commands that only look at or act on existing jobs: they never create a database file,
#: a schema or a table (nor upgrade one); what is missing is an error.
EXISTING_ONLY = frozenset({"stats", "dlq", "dashboard", "status", "cancel", "history"})


def add_command(
    commands: Any,
    name: str,
    help: str,
    *,
    driver: bool = True,
    examples: Sequence[str] = (),
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A subcommand, with the ``--driver`` option unless ``driver=False``, and its
    ``examples`` (command lines) at the end of its ``--help``."""
    if examples:
        kwargs["epilog"] = "examples:\n" + "\n".join(f"  {line}" for line in examples)
        kwargs["formatter_class"] = argparse.RawDescriptionHelpFormatter
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help, **kwargs)
    if driver:
        option(sub, "--driver", metavar="URL", default=DEFAULT_URL, help="the driver URL")
    return sub


def add_app_option(sub: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--app package.module:AppModule`` (or ``$GLASSWORK_APP``)."""
    option(sub, "--app", help=help or "the app module, e.g. myapp.worker:AppModule")


def open_driver(args: argparse.Namespace, queues: Sequence[str] | None = None) -> QueueDriver:
    """The driver ``--driver`` names, checked (:meth:`QueueDriver.check`: on SQS, that
    AWS answers and ``queues``, None: all, exist). For :data:`EXISTING_ONLY` commands
    nothing missing is created. A URL, file, schema or queue that cannot work as given is a
    :class:`UsageError`."""
    try:
        driver = driver_from_url(args.driver, create=args.command not in EXISTING_ONLY)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from exc
    args.opened_drivers = [*getattr(args, "opened_drivers", []), driver]
    try:
        driver.check(queues)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from exc
    return driver


def close_drivers(args: argparse.Namespace) -> None:
    """Close the drivers :func:`open_driver` opened for this command (a PostgreSQL pool,
    SQLite connections), so a command ends with its connections released."""
    for driver in getattr(args, "opened_drivers", []):
        closing = capabilities_of(driver).closing
        if closing is not None:
            try:
                closing.close()
            except Exception as exc:  # the command's own outcome matters more
                logging.getLogger("glasswork.cli").debug("closing %r: %s", driver, exc)


def delay_seconds(text: str, option: str = "--in") -> float:
    """A delay option (``30s``, ``10m``, ``1h30m``, seconds) in seconds; a
    :class:`UsageError` if it is not one or ends after the year 9999."""
    try:
        return _seconds(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: {exc}") from None


def duration(text: str) -> float:
    """argparse type: a positive duration (``30s``, ``15m``, seconds)."""
    try:
        seconds = _seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return seconds


def grace(text: str) -> float:
    """argparse type: a duration of 0 or more (``30s``, ``1m``, seconds)."""
    if text.strip().startswith("-"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    try:
        return _seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def port(text: str) -> int:
    """argparse type: a TCP port, 0-65535 (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def _seconds(text: str) -> float:
    seconds = parse_duration(text)
    try:
        datetime.now(UTC) + timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError("too long: it ends after the year 9999") from None
    return seconds


def load_app(path: str) -> Module:
    """Import ``package.module:ModuleName`` and return the module object it names; with
    ``package.module`` alone, the module object defined there (see :func:`find_app`)."""
    from ..modules import Module

    module_path, colon, attribute = path.partition(":")
    if not module_path or (colon and not attribute):
        raise CommandError(
            f"the app must look like package.module:AppModule or package.module, got {path!r}"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        imported = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        if exc.name and module_path.startswith(exc.name):
            raise CommandError(
                f"cannot import {module_path!r} (from --app/GLASSWORK_APP {path!r}): {exc}; "
                "run from the directory that contains it or put it on PYTHONPATH"
            ) from None
        raise
    if not attribute:
        return find_app(module_path, imported)
    target: Any = imported
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise CommandError(f"{module_path!r} has no attribute {attribute!r}") from None
    if not isinstance(target, Module):
        raise CommandError(f"{path} is {type(target).__name__}, not a module made by define_module")
    return target


def find_app(module_path: str, imported: Any) -> Module:
    """The module object (from ``define_module``) of an imported Python module: the only one
    there, or the only one no other one there imports (the app that imports the rest)."""
    from ..modules import Module

    found = {id(v): (k, v) for k, v in vars(imported).items() if isinstance(v, Module)}
    imported_by_others = {
        id(m) for _, module in found.values() for m in module.walk() if m is not module
    }
    roots = [(k, v) for key, (k, v) in found.items() if key not in imported_by_others]
    if len(roots) == 1:
        return roots[0][1]
    if not roots:
        raise CommandError(
            f"{module_path!r} defines no module made by define_module; name one: "
            f"{module_path}:AppModule"
        )
    names = ", ".join(sorted(k for k, _ in roots))
    raise CommandError(
        f"{module_path!r} has several modules ({names}); name one: {module_path}:{roots[0][0]}"
    )


def check_queue(driver: QueueDriver, queue: str | None) -> None:
    """A :class:`CommandError` for a queue ``driver`` does not know: the SQS driver's
    configured queues, or the queues a driver's ``stats()`` shows (those with jobs or dead
    letters)."""
    if queue is None:
        return
    caps = capabilities_of(driver)
    if caps.configured_queues is not None:
        caps.configured_queues.queue_name(queue)  # ConfigurationError naming them
        return
    if caps.stats is not None:
        known = sorted(caps.stats.stats())
        if queue not in known:
            raise CommandError(
                f"unknown queue {queue!r}: no jobs or dead letters on it; queues: "
                f"{', '.join(known) or 'none yet'}"
            )


def warn_unknown_queues(
    module: Module,
    driver: QueueDriver,
    queues: Sequence[str] | None,
    warn: Callable[[str], object] | None = None,
) -> None:
    """For ``worker --queues``: an error for a queue the driver does not know (SQS), a
    warning for one that no registered job uses (it may be a typo), through ``warn``
    (default: a ``glasswork worker: warning:`` line on stderr)."""
    from ..jobs.execution import JobRegistry

    if not queues:
        return
    configured = capabilities_of(driver).configured_queues
    used = {job.queue or "default" for job in JobRegistry.for_module(module)}
    for queue in queues:
        if configured is not None:
            configured.queue_name(queue)
        if queue not in used:
            message = (
                f"no job of {module.name!r} uses queue {queue!r} "
                f"(jobs use: {', '.join(sorted(used)) or 'none'}); reading it anyway"
            )
            if warn is not None:
                warn(message)
            else:
                print(f"glasswork worker: warning: {message}", file=sys.stderr)


def age(when: datetime | None) -> str:
    """How long ago ``when`` was: ``42s``, ``5m``, ``3h``, ``2d``; ``?`` when unknown."""
    if when is None:
        return "?"
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def need_app(args: argparse.Namespace) -> str:
    """The ``--app`` value, or a :class:`CommandError` saying how to give it."""
    if not args.app:
        raise CommandError(
            f"{args.command} needs the app: --app package.module:AppModule or GLASSWORK_APP"
        )
    return str(args.app)


def need(group: T | None, driver: QueueDriver, what: str) -> T:
    """``group`` (a field of the driver's :class:`~glasswork.jobs.drivers.contract.
    Capabilities`), or a :class:`CommandError` saying the driver cannot ``what``."""
    if group is None:
        raise CommandError(f"the {driver.name} driver cannot {what}; the SQLite driver can")
    return group


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a UTC offset."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--at {text!r} is not an ISO 8601 time like 2026-12-01T09:00Z") from None
    if when.tzinfo is None:
        raise UsageError(f"--at {text!r} has no UTC offset; add one, e.g. {text}Z or {text}+02:00")
    return when


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Left-aligned columns, two spaces apart."""
    cells = [list(map(str, header)), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
