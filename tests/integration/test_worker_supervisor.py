"""`glasswork worker --processes N`: a supervisor of real worker processes. It starts N, starts
another when one dies, passes SIGTERM/SIGINT/SIGHUP on so every process finishes its jobs,
and its processes stop when it is gone. No job is lost or run twice meanwhile.

The jobs of ``tests/fixtures_app/app.py`` record each run (key, pid, attempt, start, finish),
as in test_worker_processes.py, whose helpers these tests share. The supervisor's own
behaviour (backoff, the kill after the grace period) is tested on small child commands.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures_app.app import record
from glasswork.cli import parse_args
from glasswork.jobs.worker.supervisor import Supervisor, cpu_count

from .test_worker_processes import APP, COMMAND, TESTS, Setup, assert_no_overlap, wait_until


class SupervisedSetup(Setup):
    """The worker tests' setup, starting ``glasswork worker --processes N``."""

    def start_supervisor(
        self,
        processes: str,
        *args: str,
        name: str = "supervisor",
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [*COMMAND, "worker", APP, "--driver", self.url, "--processes", processes, *args],
            cwd=TESTS,
            env={**os.environ, "GLASSWORK_TEST_RUNS": str(self.runs_db), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def children(self, name: str = "supervisor") -> list[int]:
        """The pids the supervisor started, in order (the first ones, then replacements)."""
        log = self.log(name)
        pids = []
        for first in re.findall(r"started \d+ worker processes: ([\d, ]+)", log):
            pids += [int(p) for p in first.split(", ")]
        pids += [int(p) for p in re.findall(r"worker process (\d+) started", log)]
        return pids

    def wait_for_workers(self, count: int, name: str = "supervisor") -> list[int]:
        wait_until(
            lambda: self.log(name).count("worker started:") >= count,
            what=f"{count} worker processes to start",
        )
        return self.children(name)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[SupervisedSetup]:
    db = tmp_path / "jobs.db"
    # A short lease so a killed worker's jobs come back within a second.
    s = SupervisedSetup(tmp_path, db, tmp_path / "runs.db", f"sqlite:///{db}?visibility_timeout=1")
    yield s
    for pid in s.children():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    for proc in s.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by its new parent, has not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.subprocess
def test_processes_share_the_jobs_and_stop_together_on_sigterm(setup: SupervisedSetup) -> None:
    supervisor = setup.start_supervisor("2", "--concurrency", "4")
    children = setup.wait_for_workers(2)
    assert len(children) == 2 and supervisor.pid not in children
    setup.jobs().enqueue_many(record, [{"key": f"job-{i}", "sleep": 0.02} for i in range(200)])
    wait_until(lambda: len(setup.finished()) == 200, what="200 jobs to finish")
    runs = setup.runs()
    assert len(runs) == 200  # each job ran once
    assert {r["pid"] for r in runs} == set(children)  # in both processes
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    log = setup.log("supervisor")
    assert "SIGTERM: stopping 2 worker process(es)" in log
    assert "again: releasing" not in log  # each child got it once: none was forced
    stopped = re.findall(r"worker stopped: (\d+) jobs", log)
    assert len(stopped) == 2 and sum(map(int, stopped)) == 200
    assert "all worker processes stopped" in log
    assert not any(alive(pid) for pid in children)
    # Each line says which process wrote it.
    assert f"glasswork.worker[{children[0]}]: worker started" in log


@pytest.mark.subprocess
def test_a_process_killed_mid_job_is_replaced_and_no_job_is_lost_or_run_twice(
    setup: SupervisedSetup,
) -> None:
    supervisor = setup.start_supervisor("2", "--concurrency", "3")
    first, second = setup.wait_for_workers(2)
    setup.jobs().enqueue_many(record, [{"key": f"job-{i}", "sleep": 0.3} for i in range(30)])
    wait_until(
        lambda: any(r["pid"] == first and r["finished"] is None for r in setup.runs()),
        what="the first process to be running a job",
    )
    os.kill(first, signal.SIGKILL)
    killed_at = {first: time.time()}
    interrupted = [r["key"] for r in setup.runs() if r["pid"] == first and r["finished"] is None]
    assert interrupted, "the kill should land while a job runs"

    wait_until(lambda: len(setup.children()) == 3, what="a replacement process")
    replacement = setup.children()[2]
    assert replacement not in (first, second)
    wait_until(lambda: len(setup.finished()) == 30, timeout=60, what="every job to finish")
    finished = setup.finished()
    assert all(len(runs) == 1 for runs in finished.values())  # none lost, none run twice
    for key in interrupted:  # run again, after the killed process's lease ran out
        [rerun] = finished[key]
        assert rerun["attempt"] == 2 and rerun["pid"] != first
    assert_no_overlap(setup.runs(), killed_at)
    log = setup.log("supervisor")
    assert f"worker process {first} died (killed by SIGKILL); starting another in 1.0s" in log
    assert alive(replacement) and alive(second)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    wait_until(lambda: setup.driver().pending_count() == 0, what="the queue to empty")


def keep_busy(setup: SupervisedSetup, children: list[int], jobs: int = 6) -> set[str]:
    """Enqueue ``jobs`` slow jobs and wait until every child runs one; the keys running."""
    setup.jobs().enqueue_many(record, [{"key": f"slow-{i}", "sleep": 1.5} for i in range(jobs)])

    def running() -> list[dict[str, object]]:
        return [r for r in setup.runs() if r["finished"] is None]

    wait_until(
        lambda: {r["pid"] for r in running()} == set(children), what="each to be running a job"
    )
    return {str(r["key"]) for r in running()}


@pytest.mark.subprocess
def test_sigterm_to_the_supervisor_lets_every_process_finish_its_jobs(
    setup: SupervisedSetup,
) -> None:
    supervisor = setup.start_supervisor("2", "--concurrency", "2")
    children = setup.wait_for_workers(2)
    in_flight = keep_busy(setup, children)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    finished = setup.finished()
    assert in_flight <= set(finished)  # every job running at the signal ran to its end
    assert all(len(runs) == 1 and runs[0]["attempt"] == 1 for runs in finished.values())
    # The jobs not started yet are still queued: none lost, none left leased.
    assert setup.driver().pending_count() == 6 - len(finished)
    assert setup.driver().stats()["default"].in_flight == 0
    assert setup.log("supervisor").count("SIGTERM: no new jobs; finishing") == 2


@pytest.mark.subprocess
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_sigint_and_sighup_are_passed_on_once(setup: SupervisedSetup, signum: int) -> None:
    supervisor = setup.start_supervisor("2", "--concurrency", "1")
    children = setup.wait_for_workers(2)
    in_flight = keep_busy(setup, children, jobs=4)
    supervisor.send_signal(signum)
    assert supervisor.wait(30) == 0
    name = signal.Signals(signum).name
    log = setup.log("supervisor")
    assert log.count(f"{name}: no new jobs; finishing 1 in flight") == 2
    assert f"{name} again: releasing" not in log  # a second one would have forced the stop
    assert in_flight <= set(setup.finished())
    assert not any(alive(pid) for pid in children)


@pytest.mark.subprocess
def test_processes_stop_when_the_supervisor_is_killed(setup: SupervisedSetup) -> None:
    supervisor = setup.start_supervisor("2")
    children = setup.wait_for_workers(2)
    setup.jobs().enqueue(record, {"key": "during", "sleep": 1.0})
    wait_until(lambda: setup.runs(), what="the job to start")
    supervisor.kill()
    supervisor.wait(10)
    wait_until(lambda: not any(alive(pid) for pid in children), what="the processes to stop")
    log = setup.log("supervisor")
    assert log.count(f"the supervisor (pid {supervisor.pid}) is gone: stopping") == 2
    assert list(setup.finished()) == ["during"]  # finished, not abandoned
    assert setup.driver().pending_count() == 0


@pytest.mark.subprocess
def test_until_empty_processes_finish_and_are_not_replaced(setup: SupervisedSetup) -> None:
    setup.jobs().enqueue_many(record, [{"key": f"job-{i}"} for i in range(50)])
    supervisor = setup.start_supervisor("2", "--until-empty")
    assert supervisor.wait(60) == 0
    assert len(setup.finished()) == 50
    assert all(len(runs) == 1 for runs in setup.finished().values())
    log = setup.log("supervisor")
    assert log.count("(exit status 0): not replaced") == 2
    assert "starting another" not in log


@pytest.mark.subprocess
def test_a_process_that_fails_as_it_starts_stops_the_supervisor(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*COMMAND, "worker", "fixtures_app.no_such_module:App", "--processes", "2"],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "failed as it started" in proc.stderr
    assert "fixtures_app.no_such_module" in proc.stderr  # the child's own error
    assert "starting another" not in proc.stderr  # not restarted over and over


def test_processes_from_the_environment_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLASSWORK_WORKER_PROCESSES", "3")
    assert parse_args(["worker", APP]).processes == 3
    assert parse_args(["worker", APP, "--processes", "auto"]).processes == cpu_count()
    monkeypatch.setenv("GLASSWORK_WORKER_PROCESSES", "auto")
    assert parse_args(["worker", APP]).processes == cpu_count()
    monkeypatch.delenv("GLASSWORK_WORKER_PROCESSES")
    assert parse_args(["worker", APP]).processes == 1


@pytest.mark.subprocess
@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_number_of_processes_is_a_usage_error(value: str) -> None:
    proc = subprocess.run(
        [*COMMAND, "worker", APP, "--processes", value],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--processes" in proc.stderr


# -- the supervisor on small child commands ------------------------------------------------


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def supervise(supervisor: Supervisor) -> tuple[threading.Thread, list[int]]:
    """Run ``supervisor`` in a thread (no signal handlers there: stop() stands in)."""
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(supervisor.run()), daemon=True)
    thread.start()
    return thread, status


@pytest.mark.subprocess
def test_a_dying_process_is_replaced_after_a_doubling_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="glasswork.worker.supervisor")
    supervisor = Supervisor(
        lambda index: python("import time, sys; time.sleep(0.1); sys.exit(3)"),
        1,
        first_restart_delay=0.1,
        max_restart_delay=0.4,
        startup_window=0,
    )
    thread, status = supervise(supervisor)
    wait_until(lambda: caplog.text.count("starting another") >= 5, what="five replacements")
    supervisor.stop()
    thread.join(30)
    delays = re.findall(r"died \(exit status 3\); starting another in ([\d.]+)s", caplog.text)
    assert delays[:5] == ["0.1", "0.2", "0.4", "0.4", "0.4"]  # doubling, up to the most
    assert status == [1]  # its last process did not stop cleanly


def ready_after(handler: str, ready: Path) -> list[str]:
    """A child that sets up ``handler`` (code) for SIGTERM, then says so with a file in
    ``ready`` and sleeps."""
    code = (
        "import os, signal, sys, time\n"
        f"{handler}\n"
        "open(os.path.join(sys.argv[1], str(os.getpid())), 'w').close()\n"
        "time.sleep(60)\n"
    )
    return [*python(code), str(ready)]


@pytest.mark.subprocess
def test_a_process_that_ignores_the_stop_is_killed_after_kill_after(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="glasswork.worker.supervisor")
    stubborn = ready_after("signal.signal(signal.SIGTERM, signal.SIG_IGN)", tmp_path)
    supervisor = Supervisor(lambda index: stubborn, 2, kill_after=0.5)
    thread, status = supervise(supervisor)
    wait_until(lambda: len(os.listdir(tmp_path)) == 2, what="two processes ignoring SIGTERM")
    supervisor.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert caplog.text.count("after the stop: killing it") == 2
    assert "stopped (killed by SIGKILL)" in caplog.text
    assert status == [1]


@pytest.mark.subprocess
def test_processes_that_stop_cleanly_make_status_0(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="glasswork.worker.supervisor")
    graceful = ready_after("signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))", tmp_path)
    supervisor = Supervisor(lambda index: graceful, 3)
    thread, status = supervise(supervisor)
    wait_until(lambda: len(os.listdir(tmp_path)) == 3, what="three processes")
    supervisor.stop(signal.SIGTERM)
    thread.join(30)
    assert status == [0]
    assert caplog.text.count("stopped (exit status 0)") == 3
    assert "all worker processes stopped" in caplog.text
