"""The `glasswork` command and driver URLs (worker processes: tests/integration)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from glasswork import __version__
from glasswork.cli import main
from glasswork.jobs import JobMessage, MockQueueDriver
from glasswork.jobs.drivers import QueueStats
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.drivers.urls import driver_from_url
from glasswork.jobs.errors import ConfigurationError

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

APP = "fixtures_app.app:AppModule"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("GLASSWORK_APP", raising=False)
    monkeypatch.setenv("GLASSWORK_TEST_RUNS", str(tmp_path / "runs.db"))
    value = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("GLASSWORK_DRIVER", value)
    return value


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- driver URLs ------------------------------------------------------------------------------


def test_sqlite_url_paths_and_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = driver_from_url("sqlite:///sub/jobs.db?visibility_timeout=2.5&max_lost_leases=3")
    assert isinstance(relative, SQLiteQueueDriver)
    assert (tmp_path / "sub" / "jobs.db").exists()
    assert (relative.visibility_timeout, relative.max_lost_leases) == (2.5, 3)
    absolute = driver_from_url(f"sqlite:///{tmp_path / 'abs.db'}")
    assert isinstance(absolute, SQLiteQueueDriver)
    assert absolute.path == tmp_path / "abs.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "unknown driver URL"),
        ("sqlite://jobs.db", "three slashes"),
        ("sqlite:///jobs.db?lease=3", "unknown SQLite driver option 'lease'"),
        ("sqlite:///jobs.db?visibility_timeout=soon", "not a valid float"),
        ("sqs://?region=us-east-1", "names no queues"),
        ("sqs://?queue.default=https://x&color=blue", "unknown SQS driver option 'color'"),
    ],
)
def test_bad_driver_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        driver_from_url(url)


def test_sqs_url_builds_the_sqs_driver_lazily() -> None:
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"
    driver = driver_from_url(f"sqs://eu-west-1?queue.default={queue}&queue.emails={queue}")
    assert driver.name == "sqs"
    assert "glasswork.jobs.drivers.sqs.driver" in sys.modules


def test_missing_sqs_driver_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "glasswork.jobs.drivers.sqs.driver", None)
    with pytest.raises(ConfigurationError, match=r"SQS driver .* is not available"):
        driver_from_url("sqs://?region=us-east-1&queue.default=https://q")


# -- commands --------------------------------------------------------------------------------


def test_jobs_lists_registered_jobs(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = run(capsys, "jobs", "--app", APP)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["JOB", "QUEUE", "KIND", "RETRY"]
    assert lines[1].split() == ["fail", "default", "job", "3", "attempts"]
    assert "periodic (rate(1 second))" in lines[3]


def test_commands_needing_the_app_say_how_to_give_it(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, _, err = run(capsys, "jobs")
    assert code == 1
    assert "--app package.module:AppModule or GLASSWORK_APP" in err
    code, _, err = run(capsys, "jobs", "--app", "no_such_package.mod:App")
    assert "cannot import 'no_such_package.mod'" in err
    code, _, err = run(capsys, "jobs", "--app", "fixtures_app.app:Nope")
    assert "has no attribute 'Nope'" in err
    code, _, err = run(capsys, "jobs", "--app", "fixtures_app.app:record")
    assert "not a module made by define_module" in err


def test_enqueue_now_later_and_at(
    capsys: pytest.CaptureFixture[str], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLASSWORK_APP", APP)
    code, out, _ = run(capsys, "enqueue", "record", '{"key": "now"}')
    assert code == 0
    assert out.startswith("enqueued record job ")
    assert "on queue default" in out
    code, out, _ = run(capsys, "enqueue", "record", '{"key": "soon"}', "--in", "10m")
    assert code == 0 and ", due " in out
    at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    code, out, _ = run(capsys, "enqueue", "record", '{"key": "later"}', "--at", at)
    assert code == 0
    stats = driver_from_url(url).stats()["default"]  # type: ignore[attr-defined]
    assert (stats.ready, stats.delayed) == (1, 2)


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["enqueue", "nope", "{}"], 1, "unknown job 'nope'; registered jobs: fail, record, tick"),
        (["enqueue", "record", "{oops"], 1, "the payload is not JSON"),
        (["enqueue", "record", "{}", "--in", "soon"], 2, "cannot read delay 'soon'"),
        (["enqueue", "record", "{}", "--in", "99999999999999d"], 2, "after the year 9999"),
        (["enqueue", "record", "{}", "--at", "2026-12-01T09:00"], 2, "has no UTC offset"),
        (["enqueue", "record", "{}", "--at", "tomorrow"], 2, "not an ISO 8601 time"),
    ],
)
def test_enqueue_errors_are_one_line_with_usage_errors_exiting_2(
    capsys: pytest.CaptureFixture[str], url: str, argv: list[str], status: int, message: str
) -> None:
    code, _, err = run(capsys, *argv, "--app", APP)
    assert code == status
    assert message in err
    assert err.count("\n") == 1 and err.startswith("glasswork enqueue: error: ")


def test_worker_until_empty_then_stats(capsys: pytest.CaptureFixture[str], url: str) -> None:
    for key in ("a", "b"):
        assert run(capsys, "enqueue", "record", json.dumps({"key": key}), "--app", APP)[0] == 0
    run(capsys, "enqueue", "fail", '{"key": "f"}', "--app", APP, "--in", "1h")
    code, _, _ = run(capsys, "worker", APP, "--until-empty", "--concurrency", "2")
    assert code == 0
    code, out, _ = run(capsys, "stats")
    header = ["QUEUE", "READY", "DELAYED", "IN", "FLIGHT", "DEAD"]
    assert out.split() == [*header, "default", "0", "1", "0", "0"]
    code, out, _ = run(capsys, "stats", "--json")
    assert json.loads(out) == {"default": {"ready": 0, "delayed": 1, "in_flight": 0, "dead": 0}}


def test_dlq_list_redrive_and_purge(capsys: pytest.CaptureFixture[str], url: str) -> None:
    driver = driver_from_url(url)
    message = JobMessage.create("record", {"key": "x"})
    driver.dead_letter(message.encode(), "PermanentJobError: gone", queue="default")
    driver.dead_letter("{broken", "not a Glasswork job envelope", queue="default")
    code, out, _ = run(capsys, "dlq", "list")
    assert code == 0
    header, first, second = out.splitlines()
    assert header.split() == ["ID", "QUEUE", "JOB", "JOB", "ID", "AGE", "RAISED", "AT", "REASON"]
    assert first.split()[:4] == ["1", "default", "record", message.job_id]
    assert first.endswith("PermanentJobError: gone")
    assert second.split()[:4] == ["2", "default", "?", "?"]
    [record, _] = json.loads(run(capsys, "dlq", "list", "--json")[1])
    assert record["job_id"] == message.job_id and record["reason"] == "PermanentJobError: gone"
    with pytest.raises(SystemExit, match="2"):
        main(["dlq", "redrive"])
    assert "one of the arguments --id --all is required" in capsys.readouterr().err
    assert run(capsys, "dlq", "redrive", "--id", "1")[1] == "redrove 1 dead letter(s)\n"
    assert driver.stats()["default"].ready == 1  # type: ignore[attr-defined]
    assert run(capsys, "dlq", "purge", "--all", "--yes")[1] == "purged 1 dead letter(s)\n"
    assert run(capsys, "dlq", "list")[1] == "no dead letters\n"


def test_stats_prints_one_schema_for_every_driver(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Counting(MockQueueDriver):
        def stats(self) -> dict[str, QueueStats]:
            return {"jobs": QueueStats("jobs", ready=3, in_flight=1, dead=2)}

    monkeypatch.setattr("glasswork.cli._common.driver_from_url", lambda url, **options: Counting())
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert out.split() == [
        "QUEUE",
        "READY",
        "DELAYED",
        "IN",
        "FLIGHT",
        "DEAD",
        "jobs",
        "3",
        "0",
        "1",
        "2",
    ]
    code, out, _ = run(capsys, "stats", "--json")
    assert json.loads(out) == {"jobs": {"ready": 3, "delayed": 0, "in_flight": 1, "dead": 2}}


def test_commands_a_driver_cannot_do_are_clear_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "glasswork.cli._common.driver_from_url", lambda url, **options: MockQueueDriver()
    )
    code, _, err = run(capsys, "stats")
    assert code == 1
    assert "the mock driver cannot report queue stats; the SQLite driver can" in err
    code, _, err = run(capsys, "dlq", "redrive", "--all")
    assert "the mock driver cannot redrive dead letters" in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 2
    assert "worker" in out and "enqueue" in out and "dlq" in out


# -- files that cannot be used, read-only commands --------------------------------------------


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs holding a queue file, remounted read-only (needs root; skipped otherwise)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        SQLiteQueueDriver(mount / "jobs.db").close()
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def one_line_usage_error(code: int, err: str, command: str) -> str:
    assert code == 2
    assert err.startswith(f"glasswork {command}: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("command", ["stats", "worker", "enqueue", "dlq"])
def test_a_driver_url_naming_a_directory_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path, command: str
) -> None:
    argv = {
        "stats": ["stats"],
        "worker": ["worker", APP, "--until-empty"],
        "enqueue": ["enqueue", "record", "{}", "--app", APP],
        "dlq": ["dlq", "list"],
    }[command]
    code, _, err = run(capsys, *argv, "--driver", f"sqlite:///{tmp_path}")
    assert "it is a directory, not a database file" in one_line_usage_error(code, err, command)


@pytest.mark.subprocess
@pytest.mark.parametrize("target", ["jobs.db", "new.db"])
def test_a_queue_file_on_a_read_only_mount_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str], url: str, read_only_mount: Path, target: str
) -> None:
    driver = f"sqlite:///{read_only_mount / target}"
    for argv, command in (
        (["enqueue", "record", "{}", "--app", APP], "enqueue"),
        (["worker", APP, "--until-empty"], "worker"),
    ):
        code, _, err = run(capsys, *argv, "--driver", driver)
        assert "on a read-only file system" in one_line_usage_error(code, err, command)


@pytest.mark.parametrize("argv", [["stats"], ["stats", "--json"], ["dlq", "list"]])
def test_read_only_commands_never_create_a_missing_database(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path, argv: list[str]
) -> None:
    missing = tmp_path / "sub" / "missing.db"
    code, out, err = run(capsys, *argv, "--driver", f"sqlite:///{missing}")
    assert f"{missing} does not exist" in one_line_usage_error(code, err, argv[0])
    assert out == ""
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [("0s", "must be more than 0"), ("99999999999999d", "too long: it ends after the year 9999")],
)
def test_worker_job_timeout_must_be_a_usable_duration(
    capsys: pytest.CaptureFixture[str], url: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error
        main(["worker", APP, "--job-timeout", value])
    assert exited.value.code == 2
    assert f"argument --job-timeout: {message}" in capsys.readouterr().err


@pytest.mark.postgres
def test_commands_close_the_driver_they_open(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command ends with its connections released, not whenever the driver object is
    collected: the drivers are kept alive here, so only an explicit close passes."""
    import glasswork.cli._common as common
    from pgtest import connect, dsn, fresh_schema

    kept: list[object] = []

    def keeping(url: str, **options: object) -> object:
        kept.append(driver_from_url(url, **options))  # type: ignore[arg-type]
        return kept[-1]

    monkeypatch.setattr(common, "driver_from_url", keeping)

    # The commands' own connections, told apart from any other client of the database by
    # their application name.
    name = f"close-test-{uuid.uuid4().hex[:8]}"

    def connections() -> int:
        with connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
            return int(row[0]) if row else 0

    with fresh_schema() as schema:
        url = f"{dsn()}?schema={schema}&application_name={name}"
        assert main(["enqueue", "--driver", url, "--app", APP, "record", '{"key": "k"}']) == 0
        assert main(["stats", "--driver", url]) == 0
        assert "default" in capsys.readouterr().out
        assert len(kept) == 2
        assert connections() == 0


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="0"):
        main(["--version"])
    assert capsys.readouterr().out == f"glasswork {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "example"),
    [
        (["worker", "--help"], "glasswork worker myapp.worker:AppModule --concurrency 8"),
        (["dlq", "list", "--help"], "glasswork dlq list --queue emails --limit 20"),
        (["dlq", "redrive", "--help"], "glasswork dlq redrive --id 7 --id 9"),
        (["dlq", "purge", "--help"], "glasswork dlq purge --all --queue emails --yes"),
        (["stats", "--help"], "glasswork stats --json"),
    ],
)
def test_each_command_has_help_with_examples(
    capsys: pytest.CaptureFixture[str], argv: list[str], example: str
) -> None:
    with pytest.raises(SystemExit, match="0"):
        main(argv)
    out = capsys.readouterr().out
    assert "examples:" in out and example in out
