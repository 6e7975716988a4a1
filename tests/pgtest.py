"""The PostgreSQL server the tests use (127.0.0.1:5432, trust auth, database ``test``; or
``$GLASSWORK_TEST_POSTGRES``), and a fresh schema per test, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

DSN = os.environ.get("GLASSWORK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def connect(**kwargs: object) -> psycopg.Connection:
    return psycopg.connect(DSN, **kwargs)  # type: ignore[arg-type]


@contextmanager
def fresh_schema(prefix: str = "gw") -> Iterator[str]:
    """A schema name no other test uses; the schema (if created) is dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def url(schema: str, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **options}.items())
    return f"{DSN}{'&' if '?' in DSN else '?'}{query}"
