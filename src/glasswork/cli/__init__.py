"""The ``glasswork`` command: run workers, enqueue jobs, inspect queues and dead letters,
follow jobs (status, cancel, history).

The app is a ``module.path:ModuleName`` import path: ``--app`` or the ``GLASSWORK_APP``
environment variable (``worker`` also takes it as its first argument). The driver is
``--driver URL`` or ``GLASSWORK_DRIVER`` (default ``sqlite:///glasswork.db``; see
:mod:`glasswork.jobs.drivers.urls`). Every other option has a ``GLASSWORK_*`` variable too
(:mod:`._options`). The working directory is importable, as with ``python -m``.

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
from . import dashboard, dlq, enqueue, following, inspect, migrate, worker
from ._common import CommandError, UsageError, close_drivers, load_app
from ._errors import backend_error
from ._options import from_environment

__all__ = ["CommandError", "load_app", "main", "parse_args"]

COMMANDS = (worker, enqueue, inspect, following, dlq, migrate, dashboard)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``glasswork`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for worker --processes
    if args.command is None:
        parser.print_help()
        return 2
    try:
        from_environment(args)
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
        return _error(args, exc, 2)
    except (CommandError, GlassworkError, ValueError, OSError, sqlite3.Error) as exc:
        return _error(args, exc, 1)
    except Exception as exc:
        message = backend_error(exc)
        if message is None:
            raise  # a bug: the traceback is what it takes to fix it
        return _error(args, message, 2)
    finally:
        close_drivers(args)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line ``argv`` as the commands see it: every option filled in, from the
    command line, its ``GLASSWORK_*`` variable or its default."""
    args = build_parser().parse_args(argv)
    from_environment(args)
    return args


def _error(args: argparse.Namespace, error: object, status: int) -> int:
    print(f"glasswork {args.command}: error: {error}", file=sys.stderr)
    return status


def build_parser() -> argparse.ArgumentParser:
    """The ``glasswork`` argument parser, with every command's subparser."""
    parser = argparse.ArgumentParser(
        prog="glasswork",
        description="Glasswork background jobs: workers, enqueueing, queue inspection.",
        epilog=f"Driver URLs: {DEFAULT_URL} (default), sqlite:////abs/path.db, "
        "postgresql://user@host/dbname?schema=jobs, "
        "sqs://?region=us-east-1&queue.default=<queue url>. Environment: every option has a "
        "variable, GLASSWORK_<COMMAND>_<OPTION> (GLASSWORK_WORKER_CONCURRENCY, "
        "GLASSWORK_DLQ_LIST_LIMIT; each --help names them), except GLASSWORK_APP and "
        "GLASSWORK_DRIVER, which every command shares.",
    )
    parser.add_argument("--version", action="version", version=f"glasswork {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser
