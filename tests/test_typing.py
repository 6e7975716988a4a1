"""The public types, as a user's type checker sees them: mypy --strict and pyright (strict)
over tests/typing/app.py. A line marked ``# expect-error`` must be an error for both, and
every other line must pass both, so a regression in the types fails the suite."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "typing"
APP = HERE / "app.py"
README = HERE.parents[1] / "README.md"


def expected_lines() -> set[int]:
    lines = APP.read_text().splitlines()
    return {n for n, line in enumerate(lines, 1) if re.search(r"#\s*expect-error\s*$", line)}


def test_the_app_has_both_kinds_of_lines() -> None:
    assert len(expected_lines()) >= 15
    assert len(APP.read_text().splitlines()) - len(expected_lines()) > 100


@pytest.mark.subprocess
def test_mypy_strict(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(HERE / "mypy.ini"),
            "--cache-dir",
            str(tmp_path),
            "--no-error-summary",
            "--show-error-codes",
            str(APP),
        ],
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=300,
    )
    errors = re.findall(r"^(?:.*/)?app\.py:(\d+): error: (.*)$", done.stdout, re.M)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    found = {int(line) for line, _ in errors}
    unexpected = [f"{line}: {msg}" for line, msg in errors if int(line) not in expected_lines()]
    assert not unexpected, "\n".join(unexpected)
    assert expected_lines() - found == set(), "lines mypy accepted but should refuse"


@pytest.mark.subprocess
def test_pyright_strict() -> None:
    pytest.importorskip("pyright", reason="pyright is in the dev extra")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyright",
            "--outputjson",
            "--pythonpath",
            sys.executable,
            "-p",
            str(HERE / "pyrightconfig.json"),
            str(APP),
        ],
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=300,
    )
    report = json.loads(done.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    found = {d["range"]["start"]["line"] + 1 for d in errors}
    unexpected = [
        f"{d['range']['start']['line'] + 1}: {d['message']}"
        for d in errors
        if d["range"]["start"]["line"] + 1 not in expected_lines()
    ]
    assert not unexpected, "\n".join(unexpected)
    assert expected_lines() - found == set(), "lines pyright accepted but should refuse"


@pytest.mark.subprocess
def test_readme_code_is_type_correct(tmp_path: Path) -> None:
    """README's Python blocks, as one file (tests/test_readme.py runs them): no error under
    mypy --strict or pyright's standard mode (its strict mode wants the hook lambdas typed)."""
    pytest.importorskip("pyright", reason="pyright is in the dev extra")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    script = tmp_path / "readme_app.py"
    script.write_text("\n".join(blocks))
    (tmp_path / "pyrightconfig.json").write_text('{"typeCheckingMode": "standard"}')
    mypy = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(HERE / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(script),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert mypy.returncode == 0, mypy.stdout
    pyright = subprocess.run(
        [sys.executable, "-m", "pyright", "--pythonpath", sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert pyright.returncode == 0, pyright.stdout
