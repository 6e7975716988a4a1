"""`glasswork status`, `cancel` and `history` over a real SQLite file whose jobs' lives are
written through the driver's own status store (enqueue, receive, record_progress,
record_retry, finish, dead_letter): what each prints, their exit statuses, and a driver that
keeps no statuses (one `error:` line, exit 2). SQS: tests/integration/test_cli_sqs_status.py;
that they create nothing: tests/test_cli_read_only.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from glasswork.cli import main
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from job_lives import RESULT, TRACEBACK, Lives, live_jobs


@pytest.fixture
def driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQLiteQueueDriver]:
    monkeypatch.setenv("GLASSWORK_DRIVER", f"sqlite:///{tmp_path / 'jobs.db'}")
    opened = SQLiteQueueDriver(tmp_path / "jobs.db")
    yield opened
    opened.close()


@pytest.fixture
def lives(driver: SQLiteQueueDriver) -> Lives:
    return live_jobs(driver)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, command: str) -> str:
    assert err.startswith(f"glasswork {command}: error: ") and err.count("\n") == 1, err
    return err


# -- status -----------------------------------------------------------------------------------


def test_status_shows_a_done_jobs_result(capsys: pytest.CaptureFixture[str], lives: Lives) -> None:
    code, out, err = run(capsys, "status", lives.done)
    assert (code, err) == (0, "")
    lines = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith("job"))
    assert lines["state"] == "done" and lines["queue"] == "emails"
    assert lines["attempts"] == "1" and lines["progress"] == "100%"
    assert json.loads(lines["result"]) == RESULT
    assert f"job id    {lives.done}" in out and "job       send-receipt" in out
    assert "enqueued  20" in out and "ago)" in out


def test_status_shows_a_running_jobs_progress_and_a_retrying_jobs_error_and_traceback(
    capsys: pytest.CaptureFixture[str], lives: Lives
) -> None:
    code, out, _ = run(capsys, "status", lives.running)
    assert code == 0 and "state     running" in out
    assert "progress  40% page 4 of 10" in out and "result" not in out
    code, out, _ = run(capsys, "status", lives.retrying)
    assert code == 0 and "state     retrying" in out
    assert "error     ConnectionError: bank down" in out
    assert out.endswith("traceback:\n" + "".join(f"  {line}\n" for line in TRACEBACK.splitlines()))


def test_status_json_has_every_field(capsys: pytest.CaptureFixture[str], lives: Lives) -> None:
    code, out, _ = run(capsys, "status", lives.dead, "--json")
    data = json.loads(out)
    assert code == 0
    assert {k: data[k] for k in ("job_id", "job_name", "queue", "state", "finished")} == {
        "job_id": lives.dead,
        "job_name": "charge-card",
        "queue": "refunds",
        "state": "dead",
        "finished": True,
    }
    assert data["error"] == "ValueError: bad" and data["traceback"] == TRACEBACK
    assert datetime.fromisoformat(data["updated_at"]).tzinfo is not None
    assert set(data) >= {"attempts", "progress", "progress_note", "result", "enqueued_at"}


def test_status_of_an_unknown_job_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], lives: Lives
) -> None:
    code, out, err = run(capsys, "status", "no-such-job")
    assert (code, out) == (1, "")
    assert "no job no-such-job here" in one_line_error(err, "status")


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_of_a_waiting_job_ends_it_and_it_never_runs(
    capsys: pytest.CaptureFixture[str], driver: SQLiteQueueDriver, lives: Lives
) -> None:
    code, out, err = run(capsys, "cancel", lives.scheduled, "--reason", "order refunded")
    assert (code, out, err) == (0, f"cancelled job {lives.scheduled}: it will not run\n", "")
    status = driver.job_status(lives.scheduled)
    assert status is not None and (status.state, status.error) == ("cancelled", "order refunded")
    code, out, err = run(capsys, "cancel", lives.pending)
    assert code == 0 and driver.job_status(lives.pending).state == "cancelled"  # type: ignore[union-attr]
    assert driver.receive(["emails"], max_messages=10, wait_seconds=0) == []


def test_cancel_of_a_running_job_asks_its_worker_to_stop_it(
    capsys: pytest.CaptureFixture[str], driver: SQLiteQueueDriver, lives: Lives
) -> None:
    assert driver.cancel_requested([lives.running]) == set()
    code, out, _ = run(capsys, "cancel", lives.running)
    assert (code, out) == (0, f"job {lives.running} is running: its worker was asked to stop it\n")
    assert driver.cancel_requested([lives.running]) == {lives.running}


def test_cancel_of_an_ended_or_unknown_job_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str], driver: SQLiteQueueDriver, lives: Lives
) -> None:
    code, out, err = run(capsys, "cancel", lives.done)
    assert (code, out) == (1, "")
    assert f"job {lives.done} has already ended (done)" in one_line_error(err, "cancel")
    assert driver.job_status(lives.done).state == "done"  # type: ignore[union-attr]
    code, out, err = run(capsys, "cancel", "no-such-job")
    assert (code, out) == (1, "")
    assert "not cancelled: no job no-such-job here" in one_line_error(err, "cancel")


# -- history ----------------------------------------------------------------------------------


def test_history_lists_every_state_newest_first(
    capsys: pytest.CaptureFixture[str], lives: Lives
) -> None:
    code, out, err = run(capsys, "history")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == [
        "JOB", "ID", "JOB", "QUEUE", "STATE", "ATTEMPTS", "PROGRESS", "UPDATED", "ERROR"
    ]  # fmt: skip
    states = {row.split()[0]: row.split()[3] for row in rows}
    assert states == {
        lives.done: "done",
        lives.running: "running",
        lives.retrying: "retrying",
        lives.dead: "dead",
        lives.pending: "pending",
        lives.scheduled: "scheduled",
    }
    running = next(row for row in rows if row.startswith(lives.running))
    assert "40%" in running.split()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--state", "dead"], ["dead"]),
        (["--state", "retrying"], ["retrying"]),
        (["--job", "charge-card"], ["dead", "retrying"]),
        (["--queue", "emails"], ["done", "pending", "scheduled"]),
        (["--queue", "emails", "--state", "pending"], ["pending"]),
        (["--state", "cancelled"], []),
    ],
)
def test_history_filters_by_state_job_and_queue(
    capsys: pytest.CaptureFixture[str], lives: Lives, argv: list[str], expected: list[str]
) -> None:
    code, out, _ = run(capsys, "history", "--json", *argv)
    assert code == 0
    assert sorted(s["state"] for s in json.loads(out)) == expected


def test_history_pages_with_limit_and_before(
    capsys: pytest.CaptureFixture[str], lives: Lives
) -> None:
    code, out, _ = run(capsys, "history", "--json")
    every = [s["job_id"] for s in json.loads(out)]
    assert len(every) == 6
    seen: list[str] = []
    before: list[str] = []
    while True:
        code, out, err = run(capsys, "history", "--limit", "4", *before)
        assert code == 0
        ids = [line.split()[0] for line in out.splitlines()[1:]]
        if out == "no jobs before that one\n":
            break
        seen += ids
        if len(ids) < 4:
            assert err == ""
            break
        assert err == f"(older ones: --before {ids[-1]})\n"
        before = ["--before", ids[-1]]
    assert seen == every


def test_history_state_must_be_a_state(capsys: pytest.CaptureFixture[str], lives: Lives) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["history", "--state", "finished"])
    assert exited.value.code == 2
    assert "invalid choice: 'finished'" in capsys.readouterr().err


def test_history_of_an_empty_queue_says_so(
    capsys: pytest.CaptureFixture[str], driver: SQLiteQueueDriver
) -> None:
    assert run(capsys, "history") == (0, "no jobs\n", "")
    assert run(capsys, "history", "--json") == (0, "[]\n", "")


# -- a driver that keeps no statuses ---------------------------------------------------------


class _NoStatuses(SQLiteQueueDriver):
    """A driver without the status store (as a third-party driver may be)."""

    job_status = None  # type: ignore[assignment]


@pytest.mark.parametrize(
    "argv", [["status", "some-job"], ["cancel", "some-job"], ["history"], ["history", "--json"]]
)
def test_a_driver_without_a_status_store_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
) -> None:
    monkeypatch.setattr(
        "glasswork.cli._common.driver_from_url",
        lambda url, **options: _NoStatuses(tmp_path / "jobs.db"),
    )
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert "_NoStatuses keeps no job statuses" in one_line_error(err, argv[0])
