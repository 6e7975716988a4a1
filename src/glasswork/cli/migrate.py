"""``glasswork migrate``: print (or apply) the SQL that creates or upgrades the job tables."""

from __future__ import annotations

import argparse
from typing import Any

from ..jobs.drivers.urls import POSTGRES_SCHEMES, postgres_settings
from ..jobs.durations import setting_seconds
from ._common import CommandError, add_command
from ._options import option


def register(commands: Any) -> None:
    migrate = add_command(
        commands,
        "migrate",
        "Print the SQL that creates or upgrades the PostgreSQL job tables; --apply runs it.",
    )
    option(migrate, "--apply", action="store_true", help="run the SQL instead of printing it")
    migrate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.driver.partition(":")[0] not in POSTGRES_SCHEMES:
        raise CommandError(
            f"migrate is for postgresql:// drivers, got {args.driver!r}; the SQLite driver "
            "creates its tables itself and SQS needs none"
        )
    dsn, options = postgres_settings(args.driver)
    schema_name = str(options.get("schema", "public"))
    try:
        import psycopg

        from ..jobs.drivers.postgres import deadlines, schema
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"migrate needs psycopg 3 ({exc}): pip install 'glasswork[postgres]'"
        ) from None
    statement_timeout = setting_seconds(
        options.get("statement_timeout", deadlines.DEFAULT_STATEMENT_TIMEOUT),
        "statement_timeout",
        zero=True,
        most=deadlines.MAX_STATEMENT_TIMEOUT,
    )
    try:
        # Bounded as the driver's own connections: a dead server cannot hang it.
        with deadlines.connect(dsn, statement_timeout) as conn:
            if not args.apply:
                script = schema.migration_script(conn, schema_name)
                print(script or f"-- schema {schema_name!r} is up to date: nothing to apply")
                return 0
            applied = schema.migrate(conn, schema_name)
    except psycopg.Error as exc:
        raise CommandError(f"PostgreSQL: {exc}") from None
    if applied:
        versions = ", ".join(map(str, applied))
        print(f"applied schema version(s) {versions} to schema {schema_name!r}")
    else:
        print(f"schema {schema_name!r} is up to date (version {schema.SCHEMA_VERSION})")
    return 0
