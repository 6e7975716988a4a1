"""docs/postgres.md's transactional-enqueue example runs as written, in a real transaction."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pgtest import dsn, fresh_schema

pytestmark = [pytest.mark.postgres, pytest.mark.subprocess]

DOC = Path(__file__).resolve().parents[1] / "docs" / "postgres.md"


def test_the_transactional_enqueue_example_runs_only_the_committed_job(tmp_path: Path) -> None:
    [block] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    script = tmp_path / "example.py"
    script.write_text(block)
    with fresh_schema() as schema:
        done = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DATABASE_URL": dsn(), "JOBS_SCHEMA": schema},
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("welcome email to user") == 1
    assert "welcome email to user 1" in done.stdout
    assert "1 job in" in done.stdout and "done=1," in done.stdout
