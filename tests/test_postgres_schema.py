"""The PostgreSQL driver's tables: created and versioned by the driver or by
``glasswork migrate``, in a configurable schema; ``postgresql://`` URLs and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from glasswork.cli import main
from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.postgres import (
    SCHEMA_VERSION,
    PostgresQueueDriver,
    migrate,
    migration_script,
)
from glasswork.jobs.drivers.postgres.deadlines import TCP_DEFAULTS
from glasswork.jobs.drivers.urls import driver_from_url, postgres_settings
from glasswork.jobs.errors import ConfigurationError
from pgproxy import silent_port
from pgtest import connect, dsn, fresh_schema, url

pytestmark = pytest.mark.postgres

TESTS = Path(__file__).resolve().parent
APP = "fixtures_app.app:AppModule"


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


def tables(schema: str) -> list[str]:
    with connect() as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
        ).fetchall()
    return [r[0] for r in rows]


def test_the_driver_creates_its_tables_in_the_chosen_schema(schema: str) -> None:
    assert tables(schema) == []
    with PostgresQueueDriver(dsn(), schema=schema) as driver:
        driver.enqueue(JobMessage.create("ping", None))
    assert tables(schema) == [
        "glasswork_dead_letters",
        "glasswork_fair_queues",
        "glasswork_job_results",
        "glasswork_jobs",
        "glasswork_outcomes",
        "glasswork_periodic",
        "glasswork_rate_starts",
        "glasswork_schema_versions",
        "glasswork_throttles",
        "glasswork_workers",
        "glasswork_workflow_steps",
        "glasswork_workflows",
    ]
    with connect() as conn:
        assert migration_script(conn, schema) == ""
        versions = conn.execute(f'SELECT version FROM "{schema}".glasswork_schema_versions')
        assert [r[0] for r in versions] == list(range(1, SCHEMA_VERSION + 1))


@pytest.mark.slow
def test_a_schema_name_needing_quotes_and_of_the_longest_length_works(schema: str) -> None:
    odd = f'{schema} "odd" Name'.ljust(53, "x")  # the channel name is then 63 bytes
    try:
        with PostgresQueueDriver(dsn(), schema=odd) as driver:
            driver.enqueue(JobMessage.create("ping", None, queue="q"))
            assert [r.queue for r in driver.receive(wait_seconds=1)] == ["q"]
    finally:
        with connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{odd.replace(chr(34), chr(34) * 2)}" CASCADE')


@pytest.mark.slow
@pytest.mark.parametrize("odd", ["a$$b", "a$$b$glasswork$c"])
def test_a_schema_name_holding_dollar_quotes_migrates_and_notifies(odd: str) -> None:
    # The NOTIFY channel literal sits inside the trigger function's dollar-quoted body.
    with fresh_schema(odd) as schema:
        with connect(autocommit=True) as conn:
            script = migration_script(conn, schema)
            assert migrate(conn, schema) == list(range(1, SCHEMA_VERSION + 1))
        assert "glasswork_notify" in script
        with (
            PostgresQueueDriver(dsn(), schema=schema, migrate=False, poll_interval=60) as driver,
            PostgresQueueDriver(dsn(), schema=schema, migrate=False) as producer,
        ):
            assert driver.receive(wait_seconds=0.1) == []  # listening
            threading.Timer(0.3, lambda: producer.enqueue(JobMessage.create("ping", 1))).start()
            [got] = driver.receive(wait_seconds=30)  # the trigger's NOTIFY woke it
            assert JobMessage.from_json(got.body).payload == 1


@pytest.mark.slow
def test_two_schemas_are_separate_queues(schema: str) -> None:
    with (
        fresh_schema() as other_schema,
        PostgresQueueDriver(dsn(), schema=schema) as one,
        PostgresQueueDriver(dsn(), schema=other_schema, poll_interval=0.5) as other,
    ):
        one.enqueue(JobMessage.create("ping", None))
        assert other.receive(wait_seconds=0.2) == []
        assert len(one.receive()) == 1


def test_migrate_false_refuses_tables_that_are_not_there(schema: str) -> None:
    with pytest.raises(
        ConfigurationError, match=f"schema version 0, this glasswork needs {SCHEMA_VERSION}"
    ):
        PostgresQueueDriver(dsn(), schema=schema, migrate=False)
    with connect(autocommit=True) as conn:
        assert migrate(conn, schema) == list(range(1, SCHEMA_VERSION + 1))
        assert migrate(conn, schema) == []
    PostgresQueueDriver(dsn(), schema=schema, migrate=False).close()


def test_a_newer_schema_is_refused(schema: str) -> None:
    PostgresQueueDriver(dsn(), schema=schema).close()
    with connect(autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".glasswork_schema_versions (version) VALUES (%s)',
            (SCHEMA_VERSION + 1,),
        )
    with pytest.raises(ConfigurationError, match="upgrade glasswork"):
        PostgresQueueDriver(dsn(), schema=schema)


def test_drivers_starting_together_migrate_once(schema: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            PostgresQueueDriver(dsn(), schema=schema).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with connect() as conn:
        count = conn.execute(f'SELECT count(*) FROM "{schema}".glasswork_schema_versions')
        assert count.fetchone() == (SCHEMA_VERSION,)


def test_migration_script_is_one_transaction_psql_can_apply(schema: str) -> None:
    with connect() as conn:
        script = migration_script(conn, schema)
    assert script.startswith("BEGIN;\n") and script.endswith("COMMIT;\n")
    assert f'CREATE SCHEMA IF NOT EXISTS "{schema}";' in script
    with connect(autocommit=True) as conn:
        conn.execute(script.encode())
    assert "glasswork_jobs" in tables(schema)
    PostgresQueueDriver(dsn(), schema=schema, migrate=False).close()


# -- URLs ------------------------------------------------------------------------------------


def test_postgresql_urls_carry_the_schema_and_options(schema: str) -> None:
    driver = driver_from_url(
        url(
            schema,
            visibility_timeout=2.5,
            max_lost_leases=3,
            poll_interval=1,
            max_connections=4,
            application_name="glasswork-test",
        )
    )
    assert isinstance(driver, PostgresQueueDriver)
    with driver:
        assert (driver.schema, driver.visibility_timeout, driver.max_lost_leases) == (
            schema,
            2.5,
            3,
        )
        with driver._connections.pool().connection() as conn:  # libpq got the rest
            name = conn.execute("SHOW application_name").fetchone()
        assert name == ("glasswork-test",)
    alias = driver_from_url(url(schema).replace("postgresql://", "postgres://"))
    assert isinstance(alias, PostgresQueueDriver)
    alias.close()


def test_url_parameters_reach_the_server_as_libpq_decodes_them(schema: str) -> None:
    # %20 is a space and + a plus sign in libpq URLs: re-encoding with + for spaces broke
    # both.
    target = f"{url(schema)}&options=-c%20statement_timeout%3D4321&application_name=my%20app+1"
    with driver_from_url(target) as driver, driver._connections.pool().connection() as conn:  # type: ignore[attr-defined]
        assert conn.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
        assert conn.execute("SHOW application_name").fetchone() == ("my app+1",)


def server_settings(driver: PostgresQueueDriver) -> tuple[dict[str, str], dict[str, str]]:
    """The timeouts a pooled connection's session has, and its libpq parameters."""
    with driver._connections.pool().connection() as conn:
        session = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("statement_timeout", "idle_in_transaction_session_timeout")
        }
        return session, conninfo_to_dict(conn.info.dsn)  # type: ignore[return-value]


def test_every_connection_is_bounded_by_default_and_the_url_sets_the_bounds(
    schema: str,
) -> None:
    with driver_from_url(url(schema)) as driver:  # type: ignore[attr-defined]
        session, libpq = server_settings(driver)
    assert session == {"statement_timeout": "15s", "idle_in_transaction_session_timeout": "15s"}
    assert {key: libpq.get(key) for key in TCP_DEFAULTS} == TCP_DEFAULTS
    target = url(schema, statement_timeout=0, connect_timeout=3, tcp_user_timeout=1000)
    with driver_from_url(target) as driver:  # type: ignore[attr-defined]
        session, libpq = server_settings(driver)
    assert session == {"statement_timeout": "0", "idle_in_transaction_session_timeout": "0"}
    assert (libpq["connect_timeout"], libpq["tcp_user_timeout"]) == ("3", "1000")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("visibility_timeout=soon", "not a valid float"),
        ("migrate=perhaps", "not a valid boolean"),
        ("colour=blue", 'invalid connection option "colour"'),
        ("sslmode", "'sslmode' is not key=value"),
        ("visibility_timeout=inf", "visibility_timeout must be positive seconds"),
        ("visibility_timeout=1e300", "visibility_timeout must be positive seconds"),
        ("poll_interval=nan", "poll_interval must be positive seconds"),
        ("reconnect_timeout=inf", "reconnect_timeout must be 0 or more seconds"),
        ("statement_timeout=-1", "statement_timeout must be 0 or more seconds"),
        ("statement_timeout=1e7", "statement_timeout must be 0 or more seconds"),
    ],
)
def test_bad_postgresql_urls_say_what_is_wrong(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        driver_from_url(f"postgresql://me:secret@127.0.0.1/test?{query}")
    assert "secret" not in str(info.value)


def test_postgres_settings_split_driver_options_from_libpq_ones() -> None:
    dsn, options = postgres_settings(
        "postgresql://u:p@h:5433/db?schema=jobs&sslmode=disable&migrate=false"
    )
    assert conninfo_to_dict(dsn) == {
        "user": "u",
        "password": "p",
        "host": "h",
        "port": "5433",
        "dbname": "db",
        "sslmode": "disable",
    }
    assert options == {"schema": "jobs", "migrate": False}


def test_missing_psycopg_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("glasswork.jobs.drivers.postgres")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'glasswork\[postgres\]'"):
        driver_from_url("postgresql://127.0.0.1/test")


# -- the CLI ---------------------------------------------------------------------------------


def test_glasswork_migrate_prints_then_applies(
    schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = url(schema)
    assert main(["migrate", "--driver", target]) == 0
    printed = capsys.readouterr().out
    assert "CREATE TABLE" in printed and "glasswork_jobs" in printed
    assert tables(schema) == []  # printing changes nothing
    assert main(["migrate", "--driver", target, "--apply"]) == 0
    applied = ", ".join(str(v) for v in range(1, SCHEMA_VERSION + 1))
    assert f"applied schema version(s) {applied} to schema {schema!r}" in capsys.readouterr().out
    assert main(["migrate", "--driver", target]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["migrate", "--driver", target, "--apply"]) == 0
    assert f"up to date (version {SCHEMA_VERSION})" in capsys.readouterr().out


def test_glasswork_migrate_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--driver", "sqlite:///jobs.db"]) == 1
    assert "migrate is for postgresql:// drivers" in capsys.readouterr().err
    assert main(["migrate", "--driver", "postgresql://postgres@127.0.0.1:1/test"]) == 1
    assert "glasswork migrate: error: PostgreSQL:" in capsys.readouterr().err


@pytest.mark.subprocess
def test_a_server_that_never_answers_ends_a_command_with_one_error_line() -> None:
    # A port that accepts connections and never answers (a dead server behind a live
    # address): libpq's connect_timeout, which the driver sets by default, ends the wait.
    with silent_port() as port:
        target = f"postgresql://postgres@127.0.0.1:{port}/test"
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "glasswork.cli", *command, "--driver", target],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for command in (["stats"], ["migrate"])
        ]
        try:
            for proc in procs:
                _, err = proc.communicate(timeout=90)
                assert proc.returncode in (1, 2)
                [line] = err.splitlines()
                assert "error:" in line and "connection timeout expired" in line
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()


@pytest.mark.subprocess
def test_every_command_takes_a_postgresql_url(
    schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLASSWORK_DRIVER", url(schema))
    monkeypatch.setenv("GLASSWORK_TEST_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.syspath_prepend(str(TESTS))
    assert main(["enqueue", "record", '{"key": "a"}', "--app", APP]) == 0
    assert "on queue default" in capsys.readouterr().out
    with driver_from_url(url(schema)) as driver:  # type: ignore[attr-defined]
        driver.enqueue(JobMessage.create("no-such-job", None))
    assert main(["stats"]) == 0
    assert "default" in capsys.readouterr().out
    cli = subprocess.run(
        [sys.executable, "-m", "glasswork.cli", "worker", APP, "--until-empty"],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "worker stopped" in cli.stderr
    assert main(["dlq", "list", "--json"]) == 0
    [dead] = json.loads(capsys.readouterr().out)
    assert dead["job_name"] == "no-such-job"
    assert dead["reason"].startswith("UnknownJobError")
    assert main(["dlq", "redrive", "--id", dead["id"]]) == 0
    assert "redrove 1 dead letter(s)" in capsys.readouterr().out
    assert main(["dlq", "purge", "--all", "--yes"]) == 0
    assert main(["stats", "--json"]) == 0
    assert '"ready": 1' in capsys.readouterr().out
