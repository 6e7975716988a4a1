"""The dashboard's jobs pages through Starlette's TestClient, over SQLite and PostgreSQL
whose jobs' lives are written through the driver's own status store (tests/job_lives.py):
recent jobs by state with filters and paging, a job's page (status, progress, result,
error, traceback, times), cancelling from it (CSRF-protected, refused and hidden read-only),
and a driver that keeps no statuses (a note instead). In Chromium: test_dashboard_browser.py."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient

from fixtures_app.shop import ShopModule
from glasswork.dashboard import create_app
from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from job_lives import RESULT, TRACEBACK, Lives, live_jobs
from pgtest import POSTGRESQL

BASE = "http://127.0.0.1:8765"
TOKEN = "test-token-0123456789"


@pytest.fixture(params=["sqlite", POSTGRESQL])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        opened = SQLiteQueueDriver(tmp_path / "jobs.db")
        yield opened
        opened.close()
        return
    from glasswork.jobs.drivers.postgres import PostgresQueueDriver
    from pgtest import dsn, fresh_schema

    with fresh_schema() as schema, PostgresQueueDriver(dsn(), schema=schema) as postgres:
        yield postgres


@pytest.fixture
def lives(driver: Any) -> Lives:
    return live_jobs(driver)


def client_for(driver: Any, **options: Any) -> TestClient:
    options.setdefault("module", ShopModule)
    options.setdefault("csrf_token", TOKEN)
    return TestClient(create_app(driver, **options), base_url=BASE, follow_redirects=False)


@pytest.fixture
def client(driver: Any) -> TestClient:
    return client_for(driver)


def listed(page: str) -> dict[str, str]:
    """The recent jobs a page lists: job id -> state, in order."""
    return dict(re.findall(r'<tr data-job-id="([^"]+)" data-job-state="([^"]+)">', page))


# -- the list ---------------------------------------------------------------------------------


def test_the_jobs_page_lists_recent_jobs_by_state_above_the_registered_ones(
    client: TestClient, lives: Lives
) -> None:
    page = client.get("/jobs").text
    assert listed(page) == {
        lives.scheduled: "scheduled",
        lives.pending: "pending",
        lives.dead: "dead",
        lives.retrying: "retrying",
        lives.running: "running",
        lives.done: "done",
    }  # newest first: the last change first
    assert page.index('id="recent-jobs"') < page.index("<h2>Registered jobs</h2>")
    assert len(re.findall(r'<tr data-job="', page)) == 6  # the shop's registered jobs
    running = re.search(rf'<tr data-job-id="{lives.running}".*?</tr>', page, re.S)
    assert running is not None and 'value="0.4"' in running[0] and "40%" in running[0]
    assert f'href="{BASE}/jobs/{lives.running}"' in running[0]


@pytest.mark.parametrize(
    ("query", "states"),
    [
        ("state=dead", ["dead"]),
        ("state=retrying", ["retrying"]),
        ("job=charge-card", ["dead", "retrying"]),
        ("queue=emails", ["done", "pending", "scheduled"]),
        ("queue=emails&state=scheduled", ["scheduled"]),
        ("state=cancelled", []),
    ],
)
def test_the_list_filters_by_state_job_name_and_queue(
    client: TestClient, lives: Lives, query: str, states: list[str]
) -> None:
    page = client.get(f"/jobs?{query}").text
    assert sorted(listed(page).values()) == states
    if not states:
        assert "No jobs match these filters." in page
    assert 'id="clear-filters"' in page


def test_a_state_that_is_no_state_is_left_out_and_said_so(client: TestClient, lives: Lives) -> None:
    page = client.get("/jobs?state=%3Cb%3Efinished").text
    assert "&#39;&lt;b&gt;finished&#39; is not a state (left out)" in page
    assert len(listed(page)) == 6


def test_the_list_pages_older_jobs_with_the_last_job_id_as_cursor(
    client: TestClient, lives: Lives
) -> None:
    every = list(listed(client.get("/jobs").text))
    seen: list[str] = []
    url = "/jobs?queue=&limit=4"
    while url:
        page = client.get(url).text
        seen += listed(page)
        found = re.search(r'<a href="([^"]+)" id="next-page"', page)
        url = html.unescape(found[1]).removeprefix(BASE) if found else ""
        if seen[4:]:
            assert 'id="newest-page"' in page
    assert seen == every
    assert "No older jobs." in client.get(f"/jobs?before={every[-1]}").text


# -- one job ----------------------------------------------------------------------------------


def test_a_done_jobs_page_shows_its_result_as_escaped_pretty_json(
    client: TestClient, lives: Lives
) -> None:
    page = client.get(f"/jobs/{lives.done}")
    assert page.status_code == 200
    assert 'data-job-state="done"' in page.text and 'id="job-attempts">1<' in page.text
    shown = re.search(r'<pre class="payload" id="job-result">(.*?)</pre>', page.text, re.S)
    assert shown is not None and "<b>" not in shown[1]
    assert html.unescape(shown[1]) == json.dumps(RESULT, indent=2, sort_keys=True)
    assert re.search(r"<dt>Enqueued</dt><dd>20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC \(", page.text)
    assert "<dt>Updated</dt>" in page.text
    assert 'id="cancel-form"' not in page.text  # it has ended


def test_a_running_jobs_page_shows_its_progress_bar_and_note(
    client: TestClient, lives: Lives
) -> None:
    page = client.get(f"/jobs/{lives.running}").text
    assert '<progress id="job-progress" max="1" value="0.4">40%</progress>' in page
    assert '<span id="progress-note">page 4 of 10</span>' in page
    assert 'id="cancel-button">Ask it to stop</button>' in page


def test_a_failed_runs_error_and_traceback_are_shown(client: TestClient, lives: Lives) -> None:
    for job_id, error in (
        (lives.retrying, "ConnectionError: bank down"),
        (lives.dead, "ValueError: bad"),
    ):
        page = client.get(f"/jobs/{job_id}").text
        assert f'<pre class="reason" id="job-error">{error}</pre>' in page
        shown = re.search(
            r'<details class="traceback" id="traceback" open>.*?<pre>(.*?)</pre>', page, re.S
        )
        assert shown is not None and html.unescape(shown[1]) == TRACEBACK


def test_the_header_lookup_opens_the_job_page(client: TestClient, lives: Lives) -> None:
    page = client.get(f"/lookup?job_id={lives.scheduled}").text
    assert 'data-job-state="scheduled"' in page
    assert 'data-state="delayed"' in page  # and where it waits
    assert "No job <code>nope</code> found" in client.get("/jobs/nope").text
    assert 'name="job_id"' in client.get("/lookup").text


def test_a_job_id_with_slashes_and_query_characters_keeps_its_page(
    client: TestClient, driver: Any
) -> None:
    odd = JobMessage.create("send-receipt", {}, queue="emails", job_id="a/b?c#d <e>")
    driver.enqueue(odd)
    link = re.search(r'<a href="([^"]+)"><code>a/b\?c#d &lt;e&gt;</code>', client.get("/jobs").text)
    assert link is not None
    page = client.get(html.unescape(link[1]).removeprefix(BASE)).text
    assert "<h1>Job <code>a/b?c#d &lt;e&gt;</code></h1>" in page
    assert 'data-job-state="pending"' in page
    answer = cancel(client, odd.job_id)
    assert client.get(answer.headers["location"]).text.count('data-job-state="cancelled"') == 1


# -- cancelling -------------------------------------------------------------------------------


def cancel(client: TestClient, job_id: str, **form: str) -> Any:
    return client.post("/jobs/cancel", data={"csrf_token": TOKEN, "job_id": job_id, **form})


def test_cancel_from_the_job_page_ends_a_waiting_job(
    client: TestClient, driver: Any, lives: Lives
) -> None:
    page = client.get(f"/jobs/{lives.pending}").text
    assert f'name="csrf_token" value="{TOKEN}"' in page and "Cancel job</button>" in page
    answer = cancel(client, lives.pending)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/jobs/{lives.pending}?cancelled=1"
    after = client.get(answer.headers["location"]).text
    assert "Cancelled: it will not run." in after and 'data-job-state="cancelled"' in after
    assert 'id="cancel-form"' not in after
    assert driver.job_status(lives.pending).state == "cancelled"
    assert driver.receive(["emails"], max_messages=10, wait_seconds=0) == []


def test_cancel_of_a_running_job_asks_its_worker_to_stop(
    client: TestClient, driver: Any, lives: Lives
) -> None:
    answer = cancel(client, lives.running)
    assert answer.headers["location"] == f"/jobs/{lives.running}?cancelled=1"
    assert (
        "Cancel requested: its worker asks it to stop."
        in client.get(answer.headers["location"]).text
    )
    assert driver.cancel_requested([lives.running]) == {lives.running}


def test_cancel_of_an_ended_job_changes_nothing_and_says_so(
    client: TestClient, driver: Any, lives: Lives
) -> None:
    answer = cancel(client, lives.done)
    assert answer.headers["location"] == f"/jobs/{lives.done}?cancelled=0"
    assert "Not cancelled: the job has already ended" in client.get(answer.headers["location"]).text
    assert driver.job_status(lives.done).state == "done"


def test_a_cancel_without_the_token_or_from_elsewhere_changes_nothing(
    client: TestClient, driver: Any, lives: Lives
) -> None:
    for answer in (
        client.post("/jobs/cancel", data={"job_id": lives.pending}),
        cancel(client, lives.pending, csrf_token="wrong"),
        client.post(
            "/jobs/cancel",
            data={"csrf_token": TOKEN, "job_id": lives.pending},
            headers={"Origin": "https://evil.example"},
        ),
    ):
        assert answer.status_code == 403
    assert client.get("/jobs/cancel").status_code == 200  # a GET is the page of job "cancel"
    assert driver.job_status(lives.pending).state == "pending"


def test_read_only_hides_the_cancel_button_and_refuses_the_cancel(
    driver: Any, lives: Lives
) -> None:
    client = client_for(driver, read_only=True)
    page = client.get(f"/jobs/{lives.pending}").text
    assert 'data-job-state="pending"' in page and 'id="cancel-form"' not in page
    answer = cancel(client, lives.pending)
    assert answer.status_code == 403 and "read-only" in answer.text
    assert driver.job_status(lives.pending).state == "pending"


# -- a driver that keeps no statuses ---------------------------------------------------------


class _NoStatuses(SQLiteQueueDriver):
    """A driver without the status store (as a third-party driver may be)."""

    job_status = None  # type: ignore[assignment]


def test_without_a_status_store_the_pages_say_so_and_keep_the_rest(tmp_path: Path) -> None:
    driver = _NoStatuses(tmp_path / "jobs.db")
    waiting = JobMessage.create("send-receipt", {}, queue="emails")
    driver.enqueue(waiting)
    client = client_for(driver)
    jobs = client.get("/jobs").text
    assert "No job statuses: the sqlite driver cannot keep job statuses." in jobs
    assert 'id="job-filters"' not in jobs and len(re.findall(r'<tr data-job="', jobs)) == 6
    page = client.get(f"/jobs/{waiting.job_id}").text
    assert 'id="status-note"' in page and 'data-state="ready"' in page  # its copy, found
    answer = cancel(client, waiting.job_id)
    assert answer.status_code == 502 and "cannot keep job statuses" in answer.text
    driver.close()
