"""The example app's demo, the command docs/worker.md (and README) tell newcomers to run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

DEMO = Path(__file__).resolve().parents[1] / "examples" / "app" / "demo.py"


def test_demo_enqueues_drains_and_reports_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), str(tmp_path / "demo.db")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "refused a second email for user 1" in out
    for to in ("ada@example.com", "grace@example.com", "alan@example.com"):
        assert f"done: welcome email to {to}" in out
    assert "reason: PermanentJobError: User not found: 404" in out
    assert "done=4, retry=1, dead_letter=1" in out
    assert "daily cleanup removed 1 stale session(s)" in out
    assert out.rstrip().endswith("OK")
