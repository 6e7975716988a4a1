"""The `glasswork` command's configuration: every option from a GLASSWORK_* variable, the
worker's app from --app or GLASSWORK_APP, and bad values as usage errors (exit 2)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from glasswork.cli import build_parser, main, parse_args
from glasswork.jobs import JobMessage, driver_from_url

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

APP = "fixtures_app.app:AppModule"

#: A value for each option, unlike its default (a new option needs one here).
SAMPLES = {
    "driver": "sqlite:///elsewhere.db",
    "app": "pkg.mod:App",
    "concurrency": "3",
    "processes": "2",
    "queues": "a,b",
    "grace": "5s",
    "job_timeout": "10m",
    "metrics_port": "9100",
    "metrics_host": "127.0.0.2",
    "log_level": "debug",
    "log_format": "json",
    "delay": "10m",
    "at": "2026-12-01T09:00Z",
    "queue": "emails",
    "limit": "5",
    "ids": "7",
    "host": "0.0.0.0",
    "port": "9000",
    "auth": "ops:secret",
    "refresh": "2",
    "cloudwatch_namespace": "Shop",
    "cloudwatch_dimension": "service=orders",
    "state": "dead",
    "job": "send-receipt",
    "before": "3f0c9a2e",
    "reason": "order refunded",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("GLASSWORK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GLASSWORK_TEST_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.chdir(tmp_path)


def commands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """Every command that runs (``worker``, ``dlq list``, ...), with its parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = list(commands(sub))
                if nested:
                    yield from (([name, *path], p) for path, p in nested)
                else:
                    yield [name], sub


OPTIONS = [
    (path, action)
    for path, sub in commands(build_parser())
    for action in sub._actions
    if action.option_strings and action.dest != "help"
]


def needed(path: list[str], dest: str) -> list[str]:
    """What the command line needs besides the option under test."""
    if path == ["enqueue"]:
        return ["record"]
    if path[0] in ("status", "cancel"):
        return ["3f0c9a2e"]  # the job id
    if path[0] == "dlq" and path[1] in ("redrive", "purge") and dest not in ("ids", "all"):
        return ["--all"]
    return []


@pytest.mark.parametrize(
    ("path", "action"), OPTIONS, ids=[f"{' '.join(p)} {a.option_strings[-1]}" for p, a in OPTIONS]
)
def test_every_option_of_every_command_comes_from_its_variable_too(
    path: list[str], action: argparse.Action, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = action.option_strings[-1]
    shared = {"--app": "GLASSWORK_APP", "--driver": "GLASSWORK_DRIVER"}
    words = ["GLASSWORK", *path, flag.lstrip("-")]
    variable = shared.get(flag) or "_".join(words).upper().replace("-", "_")
    assert f"[env var: {variable}" in " ".join(str(action.help).split())  # in --help

    required_choice = path[0] == "dlq" and action.dest in ("ids", "all")
    default = (
        None
        if required_choice
        else getattr(parse_args([*path, *needed(path, action.dest)]), action.dest)
    )
    flag_only = action.nargs == 0
    argv = [flag] if flag_only else [flag, SAMPLES[action.dest]]
    given = getattr(parse_args([*path, *argv, *needed(path, action.dest)]), action.dest)
    assert given != default
    monkeypatch.setenv(variable, "true" if flag_only else SAMPLES[action.dest])
    from_variable = getattr(parse_args([*path, *needed(path, action.dest)]), action.dest)
    assert from_variable == given


def test_the_command_line_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLASSWORK_DLQ_LIST_LIMIT", "5")
    assert parse_args(["dlq", "list", "--limit", "7"]).limit == 7
    monkeypatch.setenv("GLASSWORK_ENQUEUE_IN", "10m")
    args = parse_args(["enqueue", "record", "--at", "2026-12-01T09:00Z"])
    assert (args.delay, args.at) == (None, "2026-12-01T09:00Z")  # --at excludes --in's variable


@pytest.mark.parametrize(
    ("variables", "argv", "message"),
    [
        (
            {"GLASSWORK_WORKER_CONCURRENCY": "0"},
            ["worker", APP],
            "glasswork worker: error: GLASSWORK_WORKER_CONCURRENCY='0': must be at least 1, got 0",
        ),
        (
            {"GLASSWORK_STATS_JSON": "maybe"},
            ["stats"],
            "glasswork stats: error: GLASSWORK_STATS_JSON='maybe': use true or false",
        ),
        (
            {"GLASSWORK_WORKER_LOG_LEVEL": "LOUD"},
            ["worker", APP],
            "GLASSWORK_WORKER_LOG_LEVEL='LOUD': unknown log level 'LOUD'",
        ),
        (
            {"GLASSWORK_ENQUEUE_IN": "10m", "GLASSWORK_ENQUEUE_AT": "2026-12-01T09:00Z"},
            ["enqueue", "record", "--app", APP],
            "GLASSWORK_ENQUEUE_IN and GLASSWORK_ENQUEUE_AT are both set: set one of them",
        ),
    ],
)
def test_a_bad_variable_is_a_one_line_usage_error_naming_it(
    variables: dict[str, str],
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_variable_can_select_the_dead_letters_a_required_choice_asks_for(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    driver = driver_from_url(url)
    for n in range(2):
        driver.dead_letter(JobMessage.create("record", {"n": n}).encode(), "x", queue="default")
    monkeypatch.setenv("GLASSWORK_DRIVER", url)
    monkeypatch.setenv("GLASSWORK_DLQ_REDRIVE_ID", "1 2")
    assert main(["dlq", "redrive"]) == 0
    assert capsys.readouterr().out == "redrove 2 dead letter(s)\n"
    monkeypatch.setenv("GLASSWORK_DLQ_REDRIVE_ID", "")  # empty: unset
    with pytest.raises(SystemExit, match="2"):
        main(["dlq", "redrive"])
    assert "one of the arguments --id --all is required" in capsys.readouterr().err


# -- the worker's app ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["variable", "option"])
def test_the_worker_takes_the_app_from_app_or_glasswork_app(
    how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert main(["enqueue", "record", '{"key": "k"}', "--app", APP, "--driver", url]) == 0
    if how == "variable":
        monkeypatch.setenv("GLASSWORK_APP", APP)
        argv = ["worker", "--until-empty", "--driver", url]
    else:
        argv = ["worker", "--app", APP, "--until-empty", "--driver", url]
    assert main(argv) == 0, capsys.readouterr().err
    assert driver_from_url(url).stats() == {}  # type: ignore[attr-defined]


def test_the_worker_without_an_app_or_with_two_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["worker"]) == 2
    assert "worker needs the app" in capsys.readouterr().err
    assert main(["worker", APP, "--app", "fixtures_app.once"]) == 2
    assert "two apps given" in capsys.readouterr().err


# -- bad arguments exit 2, as argparse's own do --------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["worker", APP, "--grace", "-1"], "argument --grace: must be 0 or more, got '-1'"),
        (["worker", APP, "--grace", "soon"], "argument --grace: cannot read delay 'soon'"),
        (["worker", APP, "--log-level", "LOUD"], "argument --log-level: unknown log level"),
        (["dashboard", "--log-level", "LOUD"], "argument --log-level: unknown log level"),
        (["dashboard", "--port", "70000"], "argument --port: must be 0-65535, got 70000"),
        (["dashboard", "--refresh", "0"], "argument --refresh: must be more than 0"),
        (["worker", APP, "--metrics-port", "-5"], "argument --metrics-port: must be 0-65535"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_grace_takes_durations_and_zero() -> None:
    assert parse_args(["worker", APP, "--grace", "0.5"]).grace == 0.5
    assert parse_args(["worker", APP, "--grace", "1m"]).grace == 60.0
    assert parse_args(["worker", APP, "--grace", "0"]).grace == 0.0


def test_the_main_help_names_the_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="0"):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "GLASSWORK_<COMMAND>_<OPTION>" in out and "GLASSWORK_DRIVER" in out


def test_the_dashboard_auth_variable_is_the_one_the_dashboard_documents() -> None:
    from glasswork.dashboard.security import AUTH_ENV

    [auth] = [a for path, a in OPTIONS if path == ["dashboard"] and a.dest == "auth"]
    assert f"[env var: {AUTH_ENV}]" in str(auth.help)


def test_stats_json_from_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    driver_from_url(url).enqueue(JobMessage.create("record", {"key": "k"}))
    monkeypatch.setenv("GLASSWORK_DRIVER", url)
    monkeypatch.setenv("GLASSWORK_STATS_JSON", "1")
    assert main(["stats"]) == 0
    assert json.loads(capsys.readouterr().out)["default"]["ready"] == 1
