"""``glasswork dashboard``: who it refuses to serve, credentials from the environment, what it
prints; and the security helpers behind it."""

from __future__ import annotations

import base64
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from dashboard_support import seed, serve_dashboard
from glasswork.cli import main
from glasswork.dashboard.security import Redactor, is_loopback, redact_url


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "jobs.example.com"])
def test_a_non_loopback_host_without_credentials_is_refused(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GLASSWORK_DASHBOARD_AUTH", raising=False)
    code = main(["dashboard", "--driver", f"sqlite:///{tmp_path / 'j.db'}", "--host", host])
    err = capsys.readouterr().err
    assert code == 1
    assert f"refusing to serve on {host}" in err and "--auth user:password" in err


def test_credentials_must_name_a_user_and_a_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["dashboard", "--driver", f"sqlite:///{tmp_path / 'j.db'}", "--auth", "admin"])
    assert code == 1
    assert "user:password" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--cloudwatch-dimension", "service=orders"], "needs --cloudwatch-namespace"),
        (["--cloudwatch-namespace", "Shop", "--cloudwatch-dimension", "service"], "NAME=VALUE"),
        (["--cloudwatch-namespace", "Shop", "--cloudwatch-dimension", "=x"], "NAME=VALUE"),
    ],
)
def test_cloudwatch_options_are_checked_before_serving(
    options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["dashboard", "--driver", f"sqlite:///{tmp_path / 'j.db'}", *options])
    assert code == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.evil.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
        ("sqlite:////var/lib/app/jobs.db?busy_timeout=5", "sqlite:////var/lib/app/jobs.db?busy_timeout=5"),
        ("postgresql://app:p%40ss@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        ("postgresql://app@db/jobs?password=x&sslmode=require", "postgresql://app@db/jobs?password=***&sslmode=require"),
        (
            "sqs://?region=eu-west-1&queue.default=https://sqs.eu-west-1.amazonaws.com/1/jobs&aws_secret_access_key=abc",
            "sqs://?region=eu-west-1&queue.default=https://sqs.eu-west-1.amazonaws.com/1/jobs&aws_secret_access_key=***",
        ),
    ],
)  # fmt: skip
def test_redact_url_masks_passwords_and_secret_parameters(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redactor_masks_the_url_password_decoded_and_aws_keys() -> None:
    redact = Redactor.for_settings(
        "postgresql://app:p%40ssw0rd@db/jobs",
        "dashboard-pw",
        {"AWS_SECRET_ACCESS_KEY": "SECRETKEY123", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"},
    )
    text = "p%40ssw0rd p@ssw0rd SECRETKEY123 AKIAEXAMPLE dashboard-pw"
    assert redact(text) == "*** *** *** *** ***"


@pytest.mark.subprocess
def test_credentials_from_the_environment_guard_the_served_dashboard(tmp_path: Path) -> None:
    seed(tmp_path / "jobs.db")
    env = dict(os.environ, GLASSWORK_DASHBOARD_AUTH="ops:from-env-secret")
    with serve_dashboard(tmp_path, env=env) as url:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/", timeout=10)
        assert refused.value.code == 401
        token = base64.b64encode(b"ops:from-env-secret").decode()
        request = urllib.request.Request(url + "/", headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            assert b"from-env-secret" not in answer.read()
    log = (tmp_path / "dashboard.log").read_text()
    assert f"glasswork dashboard: {url}/ (driver sqlite:///jobs.db)" in log
    assert "from-env-secret" not in log
