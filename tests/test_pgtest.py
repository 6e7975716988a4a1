"""The tests' own PostgreSQL server (tests/pgtest.py), what a machine with no server on
127.0.0.1:5432 runs the PostgreSQL tests on: it starts, takes connections, survives a
restart with its data, and stops."""

from __future__ import annotations

import psycopg
import pytest

from pgtest import LocalServer, _CannotStart


@pytest.mark.subprocess
def test_the_tests_own_server_starts_restarts_and_stops() -> None:
    try:
        server = LocalServer.start()
    except _CannotStart as exc:
        pytest.skip(f"cannot start a PostgreSQL server here: {exc}")
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        server.restart()
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]
    finally:
        server.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.dsn, connect_timeout=3)
