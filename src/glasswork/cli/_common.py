"""What every ``glasswork`` command shares: the app and driver options, errors, tables."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..jobs.drivers.urls import DEFAULT_URL, driver_from_url

if TYPE_CHECKING:
    from ..jobs.drivers.base import QueueDriver
    from ..modules import Module


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


def add_command(
    commands: Any, name: str, help: str, *, driver: bool = True, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand, with the ``--driver`` option unless ``driver=False``."""
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help, **kwargs)
    if driver:
        sub.add_argument(
            "--driver",
            default=os.environ.get("GLASSWORK_DRIVER", DEFAULT_URL),
            help="driver URL (default: $GLASSWORK_DRIVER or %(default)s)",
        )
    return sub


def add_app_option(sub: argparse.ArgumentParser) -> None:
    """``--app package.module:AppModule`` (default ``$GLASSWORK_APP``)."""
    sub.add_argument(
        "--app",
        default=os.environ.get("GLASSWORK_APP"),
        help="the app module, e.g. myapp.worker:AppModule (default: $GLASSWORK_APP)",
    )


def open_driver(args: argparse.Namespace) -> QueueDriver:
    """The driver ``--driver`` names."""
    return driver_from_url(args.driver)


def load_app(path: str) -> Module:
    """Import ``package.module:ModuleName`` and return the module object it names."""
    from ..modules import Module

    module_path, _, attribute = path.partition(":")
    if not module_path or not attribute:
        raise CommandError(f"the app must look like package.module:AppModule, got {path!r}")
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
    target: Any = imported
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise CommandError(f"{module_path!r} has no attribute {attribute!r}") from None
    if not isinstance(target, Module):
        raise CommandError(f"{path} is {type(target).__name__}, not a module made by define_module")
    return target


def need_app(args: argparse.Namespace) -> str:
    """The ``--app`` value, or a :class:`CommandError` saying how to give it."""
    if not args.app:
        raise CommandError(
            f"{args.command} needs the app: --app package.module:AppModule or GLASSWORK_APP"
        )
    return str(args.app)


def capability(driver: QueueDriver, method: str, what: str) -> Any:
    """``driver.<method>``, or a :class:`CommandError` saying the driver cannot ``what``."""
    fn = getattr(driver, method, None)
    if fn is None:
        raise CommandError(f"the {driver.name} driver cannot {what}; the SQLite driver can")
    return fn


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a UTC offset."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"--at {text!r} is not an ISO 8601 time like 2026-12-01T09:00Z"
        ) from None
    if when.tzinfo is None:
        raise CommandError(
            f"--at {text!r} has no UTC offset; add one, e.g. {text}Z or {text}+02:00"
        )
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
