"""`glasswork worker` processes: a real Prometheus scrape of /metrics and /healthz, and an
idempotent job whose worker is killed mid-run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures_app.app import fail, record
from fixtures_app.once import record_once

from . import test_worker_processes
from .test_worker_processes import COMMAND, TESTS, Setup, wait_until
from .test_worker_processes import setup as setup  # the same fixture: a SQLite file, 1 s leases

pytestmark = pytest.mark.subprocess

APP = "fixtures_app.once:OnceModule"  # the fixture app and an idempotent job


@pytest.fixture(autouse=True)
def observed_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers started by ``Setup.start_worker`` run the app with the idempotent job."""
    monkeypatch.setattr(test_worker_processes, "APP", APP)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def jobs_total(metrics: dict, job: str, outcome: str) -> float:
    labels = frozenset({"job": job, "outcome": outcome, "queue": "default"}.items())
    return metrics.get(("glasswork_jobs_total", labels), 0.0)


def test_a_running_worker_serves_its_counts_to_prometheus(setup: Setup) -> None:
    port = free_port()
    worker = setup.start_worker(
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--concurrency", "4"
    )
    jobs = setup.jobs()
    jobs.enqueue_many(record, [{"key": f"job-{i}"} for i in range(20)])
    jobs.enqueue_many(fail, [{"key": f"fail-{i}"} for i in range(2)])

    def depth(metrics: dict, state: str) -> float | None:
        labels = frozenset({"queue": "default", "state": state}.items())
        return metrics.get(("glasswork_queue_messages", labels))

    def settled() -> bool:
        runs = setup.finished()
        attempts = sorted(len(runs.get(f"fail-{i}", [])) for i in range(2))
        done = all(f"job-{i}" in runs for i in range(20))
        driver = setup.driver()
        return (
            done
            and attempts == [3, 3]
            and driver.pending_count() == 0
            and (driver.stats()["default"].dead == 2)
        )

    # Wait on the queue itself, so the first scrape already sees it settled (the worker
    # reads queue depth at most every 5 s).
    wait_until(settled, what="every job to run and the failures to be dead-lettered")

    def counted() -> dict | None:
        metrics = scrape(port)
        finished = jobs_total(metrics, "record", "done") == 20
        finished = finished and jobs_total(metrics, "fail", "dead_letter") == 2
        return metrics if finished and depth(metrics, "dead") == 2 else None

    metrics = wait_until(counted, what="the scrape to show every job")
    assert jobs_total(metrics, "fail", "retry") == 4  # 3 attempts each
    count = frozenset({"job": "record", "queue": "default"}.items())
    assert metrics[("glasswork_job_duration_seconds_count", count)] == 20
    assert (depth(metrics, "ready"), depth(metrics, "in_flight")) == (0, 0)

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert (response.status, response.read()) == (200, b"ok\n")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert f"metrics on http://127.0.0.1:{port}/metrics" in setup.log()


def test_a_port_in_use_stops_the_worker_before_it_takes_any_job(setup: Setup) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        setup.jobs().enqueue(record, {"key": "waits"})
        done = subprocess.run(
            [*COMMAND, "worker", APP, "--driver", setup.url, "--metrics-port", str(port)],
            cwd=TESTS,
            env={**os.environ, "GLASSWORK_TEST_RUNS": str(setup.runs_db)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert "glasswork worker: error: cannot serve metrics on 0.0.0.0:" in done.stderr
    assert "Address already in use" in done.stderr
    assert setup.runs() == []


def test_an_idempotent_job_whose_worker_is_killed_runs_once_its_claim_lapses(
    setup: Setup,
) -> None:
    first = setup.start_worker(name="first")
    second = setup.start_worker(name="second")
    setup.jobs().enqueue(record_once, {"key": "once", "sleep": 1.0})
    running = wait_until(lambda: setup.runs(), what="the job to start")
    victim = first if running[0]["pid"] == first.pid else second
    survivor = second if victim is first else first
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = time.time()

    # The survivor gets the job once the lease runs out (1 s), finds the claim still in
    # progress, waits, and runs it when the claim lapses (the job's 3 s timeout).
    [finished] = wait_until(lambda: setup.finished().get("once"), what="the job to finish")
    assert finished["pid"] == survivor.pid
    assert finished["started"] >= running[0]["started"] + 3.0 - 0.1  # not before the lapse
    assert finished["started"] > killed_at
    assert [r["finished"] is None for r in setup.runs()] == [True, False]  # killed, then once
    name = "first" if survivor is first else "second"
    assert "already running elsewhere" in setup.log(name)
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(15) == 0
    wait_until(lambda: setup.driver().pending_count() == 0, what="the queue to empty")
