"""The moto server (SQS, DynamoDB, CloudWatch over HTTP) the tests talk to with plain boto3:
:func:`moto_server` runs one on a free loopback port (tests/conftest.py's session fixture
``moto_endpoint``), :func:`reset_moto` empties it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

_SERVE = Path(__file__).with_name("moto_serve.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, method: str = "GET") -> None:
    urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5).read()


def reset_moto(endpoint: str) -> None:
    """Forget every queue, table and metric of the moto server at ``endpoint``."""
    _request(f"{endpoint}/moto-api/reset", method="POST")


@contextlib.contextmanager
def moto_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """Run moto's server on 127.0.0.1 (with the environment ``env``, default ours), its
    DynamoDB requests atomic as DynamoDB's are (``tests/moto_serve.py``); yields its URL."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # The server logs every request: to a file, since a pipe nobody drains fills up and
    # blocks it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, str(_SERVE), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            _wait_until_up(endpoint, process, log)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(endpoint: str, process: subprocess.Popen, log: IO[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _request(f"{endpoint}/moto-api/")
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")[-4000:]
                pytest.fail(f"moto server exited with {process.returncode}: {output}")
            if time.monotonic() > deadline:
                pytest.fail("moto server did not answer within 30 s")
            time.sleep(0.05)
