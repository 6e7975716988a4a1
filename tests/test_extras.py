"""A missing optional extra names the ``pip install`` that fixes it; any other import failure
surfaces as itself. Packages are made missing with ``sys.modules[name] = None``, which is
how Python reports a package that is not installed (ModuleNotFoundError naming it)."""

from __future__ import annotations

import sys

import pytest

from glasswork.cli import main
from glasswork.jobs.errors import ConfigurationError
from glasswork.jobs.extras import needs_extra


def test_a_missing_package_of_the_extra_names_the_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)
    with (
        pytest.raises(ConfigurationError) as raised,
        needs_extra("postgres", "the {name} part {of} this"),
    ):
        import psycopg_pool  # noqa: F401
    # {name} is filled in; other braces (say, in a user's schedule) are left as they are.
    assert str(raised.value) == "the psycopg_pool part {of} this: pip install 'glasswork[postgres]'"


def test_other_import_failures_are_not_disguised(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "some_module_of_ours", None)
    with pytest.raises(ModuleNotFoundError), needs_extra("postgres", "x"):
        import some_module_of_ours  # type: ignore[import-not-found]  # noqa: F401


def test_cron_schedules_without_croniter_say_which_extra(monkeypatch: pytest.MonkeyPatch):
    from glasswork.jobs.schedules import parse_schedule

    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(
        ConfigurationError, match=r"needs croniter: pip install 'glasswork\[cron\]'"
    ):
        parse_schedule("cron(0 12 * * ? *)")


def test_prometheus_metrics_without_the_client_say_which_extra(monkeypatch: pytest.MonkeyPatch):
    from glasswork.jobs.metrics.prometheus import PrometheusMetrics

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'glasswork\[prometheus\]'"):
        PrometheusMetrics()


def test_the_dashboard_without_its_extra_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["dashboard", "--driver", f"sqlite:///{tmp_path / 'jobs.db'}"]) == 1
    err = capsys.readouterr().err
    assert "the dashboard needs uvicorn: pip install 'glasswork[dashboard]'" in err
