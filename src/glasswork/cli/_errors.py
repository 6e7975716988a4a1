"""The errors a command reports on one line, without a traceback."""

from __future__ import annotations

import sys


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback (exit status 1)."""


class UsageError(CommandError):
    """The command line (or the environment) asks for something that cannot work as given:
    a delay past the year 9999, a driver URL naming a directory, a queue that does not
    exist, no AWS credentials; exit status 2, like argparse's own usage errors."""


def backend_error(error: BaseException) -> str | None:
    """An error of AWS (botocore) or PostgreSQL (psycopg) raised during a command, such as
    a query cancelled by ``statement_timeout``, on one line; None for any other error.
    (Neither library is imported here: an error of one can only come once it is.)"""
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None and isinstance(error, botocore.BotoCoreError | botocore.ClientError):
        return f"AWS: {_one_line(error)}"
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(error, psycopg.Error):
        return f"PostgreSQL: {_one_line(error)}"
    return None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
