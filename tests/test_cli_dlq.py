"""`glasswork dlq` (glasswork.cli.dlq): quiet when piped into head, clear errors for unknown
ids and queues that change nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from glasswork.cli import main
from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.urls import driver_from_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("GLASSWORK_DRIVER", value)
    return value


@pytest.mark.subprocess
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
