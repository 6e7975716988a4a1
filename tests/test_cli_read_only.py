"""Commands that only look at or act on existing jobs (stats, dlq, dashboard, status,
history, cancel) create nothing: no file, no schema, no
table; what is missing is one `error:` line and exit 2. And a PostgreSQL error in the middle
of a command is one line too."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glasswork.cli import main

READ_ONLY = [
    ["stats"],
    ["stats", "--json"],
    ["dlq", "list"],
    ["dashboard"],
    ["status", "some-job"],
    ["history"],
    ["cancel", "some-job"],
]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """uvicorn.run recorded instead of serving, so `dashboard` returns."""
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(app))
    return calls


def one_line_usage_error(code: int, err: str, command: str) -> str:
    assert code == 2, err
    assert err.startswith(f"glasswork {command}: error: ") and err.count("\n") == 1, err
    return err


# -- SQLite ----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", READ_ONLY)
def test_a_missing_sqlite_file_is_not_created(
    argv: list[str], tmp_path: Path, served: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "typo.db"
    code = main([*argv, "--driver", f"sqlite:///{typo}"])
    err = one_line_usage_error(code, capsys.readouterr().err, argv[0])
    assert f"{typo} does not exist" in err
    assert not typo.exists() and served == []


@pytest.mark.parametrize("argv", READ_ONLY)
def test_a_sqlite_file_holding_no_queue_is_left_as_it_is(
    argv: list[str], tmp_path: Path, served: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.close()
    before = other.read_bytes()
    code = main([*argv, "--driver", f"sqlite:///{other}"])
    err = one_line_usage_error(code, capsys.readouterr().err, argv[0])
    assert "holds no Glasswork queue" in err
    assert other.read_bytes() == before  # no tables, not even WAL mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]
    assert served == []


def test_the_dashboard_serves_an_existing_queue(tmp_path: Path, served: list[Any]) -> None:
    from glasswork.jobs import driver_from_url

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    driver_from_url(url).close()  # type: ignore[attr-defined]
    assert main(["dashboard", "--driver", url]) == 0
    assert len(served) == 1


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def schema() -> Iterator[str]:
    from pgtest import fresh_schema

    with fresh_schema("typo") as name:
        yield name


def schema_exists(name: str) -> bool:
    from pgtest import connect

    with connect(autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,))
        return found.fetchone() is not None


@pytest.mark.postgres
@pytest.mark.parametrize("argv", READ_ONLY)
def test_a_postgresql_schema_without_the_tables_is_not_created(
    argv: list[str], schema: str, served: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from pgtest import url as pg_url

    code = main([*argv, "--driver", pg_url(schema)])
    err = one_line_usage_error(code, capsys.readouterr().err, argv[0])
    assert "no Glasswork job tables" in err and f"schema '{schema}'" in err
    assert "glasswork migrate --driver URL --apply" in err
    assert not schema_exists(schema)
    assert served == []


@pytest.mark.slow
@pytest.mark.postgres
def test_a_postgresql_error_mid_command_is_one_line(
    schema: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stats` waits on a lock another session holds until its statement_timeout cancels
    it: QueryCanceled, reported as one line, exit 2."""
    from glasswork.jobs import PostgresQueueDriver
    from glasswork.jobs.drivers.urls import postgres_settings
    from pgtest import connect
    from pgtest import url as pg_url

    dsn, _ = postgres_settings(pg_url(schema))
    PostgresQueueDriver(dsn, schema=schema).close()  # the tables
    with connect() as holder:
        holder.execute(f'LOCK TABLE "{schema}".glasswork_jobs IN ACCESS EXCLUSIVE MODE')
        monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=300")  # read by libpq
        code = main(["stats", "--driver", pg_url(schema)])
        holder.rollback()
    err = one_line_usage_error(code, capsys.readouterr().err, "stats")
    assert "PostgreSQL: canceling statement due to statement timeout" in err
