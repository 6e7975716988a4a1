"""The ``glasswork`` command: run workers, enqueue jobs, inspect queues and dead letters.

The app is a ``module.path:ModuleName`` import path: the ``worker`` command takes it as its
first argument; ``enqueue``, ``jobs`` and ``dashboard`` take ``--app`` or the
``GLASSWORK_APP`` environment variable. The driver is ``--driver URL`` or
``GLASSWORK_DRIVER`` (default ``sqlite:///glasswork.db``; see
:mod:`glasswork.jobs.drivers.urls`). The working directory is importable, as with
``python -m``.

Each command lives in its own module here and adds itself to the parser with ``register``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence

from .. import __version__
from ..jobs.drivers.urls import DEFAULT_URL
from ..jobs.errors import GlassworkError
from . import dashboard, dlq, enqueue, inspect, migrate, worker
from ._common import CommandError, UsageError, close_drivers, load_app

__all__ = ["CommandError", "load_app", "main"]

COMMANDS = (worker, enqueue, inspect, dlq, migrate, dashboard)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``glasswork`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code = int(args.run(args))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`glasswork dlq list | head`): stop quietly, as `cat` does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except UsageError as exc:
        # What was asked cannot work as given (a driver URL naming a directory or a
        # read-only file, a delay past the year 9999): a usage error, as argparse's are.
        print(f"glasswork {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (CommandError, GlassworkError, ValueError, OSError, sqlite3.Error) as exc:
        print(f"glasswork {args.command}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        close_drivers(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``glasswork`` argument parser, with every command's subparser."""
    parser = argparse.ArgumentParser(
        prog="glasswork",
        description="Glasswork background jobs: workers, enqueueing, queue inspection.",
        epilog=f"Driver URLs: {DEFAULT_URL} (default), sqlite:////abs/path.db, "
        "postgresql://user@host/dbname?schema=jobs, "
        "sqs://?region=us-east-1&queue.default=<queue url>. Environment: GLASSWORK_APP, "
        "GLASSWORK_DRIVER.",
    )
    parser.add_argument("--version", action="version", version=f"glasswork {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser
