"""The `glasswork` command's manners: --version, help with examples, quiet broken pipes,
clear errors for unknown ids and queues, and `worker app.module`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from glasswork import __version__
from glasswork.cli import load_app, main
from glasswork.cli._common import CommandError
from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.urls import driver_from_url

TESTS = Path(__file__).resolve().parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("GLASSWORK_DRIVER", value)
    return value


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


def test_piping_into_head_exits_quietly(url: str, tmp_path: Path) -> None:
    driver = driver_from_url(url)
    for n in range(2000):
        body = JobMessage.create("job", {"n": n}).encode()
        driver.dead_letter(body, f"PermanentJobError: {n}", queue="default")
    script = f"{sys.executable} -m glasswork.cli dlq list --limit 2000 --driver {url} | head -n 2"
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert len(done.stdout.splitlines()) == 2
    assert done.stderr == ""


def test_unknown_ids_and_queues_are_errors_and_change_nothing(
    capsys: pytest.CaptureFixture[str], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = driver_from_url(url)
    driver.dead_letter(
        JobMessage.create("job", {}).encode(), "PermanentJobError: x", queue="default"
    )
    code, _, err = run(capsys, "dlq", "redrive", "--id", "1", "--id", "99")
    assert code == 1 and "unknown dead letter id(s) 99" in err
    code, _, err = run(capsys, "dlq", "purge", "--id", "1", "--queue", "emails", "--yes")
    assert code == 1 and "unknown queue 'emails'" in err and "queues: default" in err
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # noqa: SIM115 - no answer: no
    code, _, err = run(capsys, "dlq", "purge", "--all")
    assert code == 1 and "nothing purged" in err
    assert len(driver.dead_letters()) == 1  # type: ignore[attr-defined]
    code, out, _ = run(capsys, "dlq", "purge", "--all", "--queue", "default", "--yes")
    assert (code, out) == (0, "purged 1 dead letter(s)\n")


def write_app(tmp_path: Path, body: str) -> str:
    package = tmp_path / "myapp"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "worker.py").write_text(textwrap.dedent(body))
    sys.path.insert(0, str(tmp_path))
    sys.modules.pop("myapp.worker", None)
    sys.modules.pop("myapp", None)
    return "myapp.worker"


def test_worker_app_module_finds_the_one_module_object(tmp_path: Path) -> None:
    path = write_app(
        tmp_path,
        """
        from glasswork import define_module
        Jobs = define_module(name="jobs")
        AppModule = define_module(name="app", imports=[Jobs])
        """,
    )
    try:
        assert load_app(path).name == "app"  # the one no other imports
        sys.modules.pop(path)
        (tmp_path / "myapp" / "worker.py").write_text(
            "from glasswork import define_module\n"
            "A = define_module(name='a')\nB = define_module(name='b')\n"
        )
        with pytest.raises(CommandError, match=r"several modules \(A, B\); name one"):
            load_app(path)
        sys.modules.pop(path)
        (tmp_path / "myapp" / "worker.py").write_text("x = 1\n")
        with pytest.raises(CommandError, match="defines no module made by define_module"):
            load_app(path)
    finally:
        sys.path.remove(str(tmp_path))


def test_worker_warns_about_queues_no_job_uses(
    capsys: pytest.CaptureFixture[str], url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GLASSWORK_TEST_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.syspath_prepend(str(TESTS))
    code, _, err = run(
        capsys, "worker", "fixtures_app.app", "--queues", "default,emials", "--until-empty"
    )
    assert code == 0
    assert "no job of 'fixtures' uses queue 'emials'" in err
