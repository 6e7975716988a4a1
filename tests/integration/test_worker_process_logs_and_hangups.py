"""`glasswork worker` as a real process: a closed terminal (SIGHUP) stops it as SIGTERM
does, and `--log-format json` writes one JSON object a line."""

from __future__ import annotations

import json
import signal
import time

import pytest

from .test_worker_processes import Setup, fail, record, setup, wait_until

pytestmark = pytest.mark.subprocess

__all__ = ["setup"]  # the fixture, used by name


def test_sighup_lets_in_flight_jobs_finish_and_exits_cleanly(setup: Setup) -> None:
    worker = setup.start_worker("--concurrency", "2")
    setup.jobs().enqueue_many(record, [{"key": k, "sleep": 1.0} for k in ("a", "b")])
    wait_until(lambda: len(setup.runs()) == 2, what="both jobs to start")
    worker.send_signal(signal.SIGHUP)
    assert worker.wait(15) == 0  # not killed by the signal
    assert sorted(setup.finished()) == ["a", "b"]
    assert setup.driver().pending_count() == 0
    assert "SIGHUP: no new jobs; finishing 2 in flight" in setup.log()


def test_sighup_releases_jobs_that_outlive_the_grace_period(setup: Setup) -> None:
    worker = setup.start_worker("--grace", "0.2")
    setup.jobs().enqueue(record, {"key": "long", "sleep": 30})
    wait_until(lambda: setup.runs(), what="the job to start")
    started = time.monotonic()
    worker.send_signal(signal.SIGHUP)
    assert worker.wait(15) == 0
    assert time.monotonic() - started < 5
    stats = setup.driver().stats()["default"]
    assert (stats.ready, stats.in_flight) == (1, 0)  # released now, not when its lease ends
    assert "released 1 job(s) to run again" in setup.log()


def test_json_log_format_writes_one_object_a_line_with_job_fields_and_tracebacks(
    setup: Setup,
) -> None:
    worker = setup.start_worker("--log-format", "json", "--queues", "default,emials")
    done = setup.jobs().enqueue(record, {"key": "ok"})
    failed = setup.jobs().enqueue(fail, {"key": "bad"})
    wait_until(lambda: "dead_letter" in setup.log(), what="the failing job to be dead-lettered")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0

    lines = setup.log().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert entry["time"].endswith("+00:00") and "T" in entry["time"]
    assert any("no job of 'fixtures' uses queue 'emials'" in e["message"] for e in entries)
    [ended] = [e for e in entries if e.get("job_id") == done.job_id and "outcome" in e]
    assert ended["level"] == "INFO" and ended["logger"] == "glasswork.worker"
    assert (ended["job_name"], ended["queue"], ended["outcome"]) == ("record", "default", "done")
    assert isinstance(ended["duration_ms"], float) and ended["attempt"] == 1
    # One WARNING line per failed attempt, the first with its traceback (the worker's own
    # end line of the run is INFO).
    failures = [e for e in entries if e.get("job_id") == failed.job_id and e["level"] == "WARNING"]
    first_failure = failures[0]
    assert first_failure["logger"] == "glasswork.jobs" and first_failure["attempt"] == 1
    assert first_failure["exception"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: failure number 1" in first_failure["exception"]
    assert entries[-1]["message"].startswith("worker stopped: ")
