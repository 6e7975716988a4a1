"""The README's Python blocks run as written, in order, as one file."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run_as_one_file(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    script = tmp_path / "quickstart.py"
    script.write_text("\n".join(blocks))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "DrainResult(deliveries=2, retried=0, dead_lettered=1)" in done.stdout
    assert "('welcome', '123@example.com')" in done.stdout
    assert "PermanentJobError: User not found: missing" in done.stdout
    assert "Welcome email sent user_id='123'" in done.stderr  # ctx.logger lines reach logging
    assert "Logging error" not in done.stderr
