"""`glasswork worker` (glasswork.cli.worker): finding the app's module from `app.module`, and
warning about queues no job uses. (Worker processes: tests/integration.)"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from glasswork.cli import load_app, main
from glasswork.cli._common import CommandError

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
