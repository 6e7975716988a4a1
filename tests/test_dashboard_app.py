"""The dashboard app through Starlette's TestClient, over a real SQLite file filled by a real
worker: pages, actions, read-only mode, CSRF, host and authentication guards, redaction and
drivers that lack a capability. The browser tests (test_dashboard_browser.py) drive the
same app in Chromium."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx2")

from starlette.testclient import TestClient

from dashboard_support import MALFORMED_BODY, XSS_NOTE, Seeded, seed, seed_driver
from fixtures_app.shop import ShopModule
from glasswork.dashboard import create_app
from glasswork.jobs import MockQueueDriver
from glasswork.jobs.drivers.postgres import PostgresQueueDriver
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from pgtest import SLOW_POSTGRESQL, dsn, fresh_schema

BASE = "http://127.0.0.1:8765"
TOKEN = "test-token-0123456789"


@pytest.fixture
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Seeded]]:
    """The shop run by a real worker on SQLite, or (``"postgresql"`` through
    :data:`EVERY_DRIVER`) on PostgreSQL in a schema of its own."""
    if getattr(request, "param", "sqlite") == "postgresql":
        with fresh_schema() as schema, PostgresQueueDriver(dsn(), schema=schema) as postgres:
            yield postgres, seed_driver(postgres)
        return
    info = seed(tmp_path / "jobs.db")
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    yield driver, info
    driver.close()


#: The tests of what each driver shows and does run on SQLite and PostgreSQL (SQS:
#: tests/integration/test_dashboard_sqs.py).
EVERY_DRIVER = pytest.mark.parametrize("seeded", ["sqlite", SLOW_POSTGRESQL], indirect=True)


@pytest.fixture
def driver(seeded: tuple[Any, Seeded]) -> Any:
    return seeded[0]


def client_for(driver: Any, **options: Any) -> TestClient:
    options.setdefault("module", ShopModule)
    options.setdefault("csrf_token", TOKEN)
    return TestClient(create_app(driver, **options), base_url=BASE, follow_redirects=False)


@pytest.fixture
def client(driver: Any) -> TestClient:
    url = "sqlite:///jobs.db" if isinstance(driver, SQLiteQueueDriver) else driver.dsn
    return client_for(driver, driver_url=url)


def dead_ids(driver: SQLiteQueueDriver) -> list[str]:
    return [r.id for r in driver.dead_letters()]


def declined_id(driver: SQLiteQueueDriver) -> str:
    """The dead letter of the charge whose note and reason carry HTML (the worker runs both
    declined charges at once, so either may be dead-lettered first)."""
    return next(r.id for r in driver.dead_letters() if XSS_NOTE in r.reason)


# -- pages ------------------------------------------------------------------------------------


@pytest.mark.slow
@EVERY_DRIVER
def test_queues_page_shows_counts_and_the_workers_outcomes(
    client: TestClient, driver: SQLiteQueueDriver
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    stats = driver.stats()
    for queue, s in stats.items():
        row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', page.text, re.S)
        assert row is not None, queue
        cells = re.findall(r"<td[^>]*>(?:<a[^>]*>)?(\d+)", row.group(1))
        assert cells == [str(s.ready), str(s.delayed), str(s.in_flight), str(s.dead)]
    # The seed's worker run: 6 receipts (3 retried once, 1 twice), 3 charges (2 declined),
    # 1 resize; the outcome log recorded exactly these.
    totals = dict(re.findall(r'data-outcome="(\w+)">(\d+)<', page.text))
    assert totals == {
        "done": "8",
        "retry": "6",
        "dead_letter": "2",
        "discarded": "0",
        "cancelled": "0",
    }
    assert f"the workers record through the {driver.name} driver." in page.text
    assert client.get("/fragments/queues").text.count("<tr data-queue=") == len(stats)


@EVERY_DRIVER
def test_dead_letter_list_and_detail_escape_what_jobs_put_in_them(
    client: TestClient, driver: SQLiteQueueDriver
) -> None:
    listing = client.get("/dead-letters").text
    assert "<script>window.__xss" not in listing
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in listing
    assert "&lt;b&gt;not JSON&lt;/b&gt;" in listing
    detail = client.get(f"/dead-letters/{declined_id(driver)}").text
    assert "<script>window" not in detail and "<img src=x" not in detail
    assert "&#34;note&#34;: &#34;&lt;script&gt;window.__xss=1&lt;/script&gt;" in detail
    assert "\n  &#34;decline&#34;: true,\n" in detail  # pretty-printed
    malformed = next(r.id for r in driver.dead_letters() if r.body == MALFORMED_BODY)
    raw = client.get(f"/dead-letters/{malformed}").text
    assert "not a readable job message" in raw and "&lt;script&gt;window.__xss=3" in raw
    assert client.get("/dead-letters/999999").status_code == 404
    missing = client.get("/dead-letters/a/b%3Cscript%3E")  # ids may hold a "/" (SQS)
    assert missing.status_code == 404 and "No dead letter #a/b&lt;script&gt;" in missing.text


def test_pages_carry_no_inline_script_and_a_strict_policy(client: TestClient) -> None:
    for path in ("/", "/dead-letters", "/jobs", "/lookup?job_id=x"):
        page = client.get(path)
        assert re.findall(r"<script[^>]*>", page.text) == [
            '<script src="http://127.0.0.1:8765/static/dashboard.js" defer>'
        ]
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"


def test_an_unknown_address_gets_the_dashboards_error_page(client: TestClient) -> None:
    for answer, status, title, text in (
        (client.get("/nope/<b>x"), 404, "Page not found", "There is no page at /nope/&lt;b&gt;x."),
        (client.get("/static/nope.css"), 404, "Page not found", "/static/nope.css"),
        (client.post("/", data={}), 405, "Not allowed", "/ does not answer a POST"),
    ):
        assert answer.status_code == status
        assert answer.headers["content-type"].startswith("text/html")
        assert f"<h1>{title}</h1>" in answer.text and text in answer.text
        assert 'href="http://127.0.0.1:8765/dead-letters">Dead letters</a>' in answer.text
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_jobs_page_lists_settings_and_next_fire_times(client: TestClient) -> None:
    page = client.get("/jobs").text
    row = dict(re.findall(r'<tr data-job="([^"]+)">(.*?)</tr>', page, re.S))
    assert sorted(row) == [
        "charge-card", "heartbeat", "nightly-report", "resize-image", "send-receipt", "sync-crm"
    ]  # fmt: skip
    receipt = row["send-receipt"]
    assert "emails" in receipt and "30s" in receipt and "5 attempts" in receipt
    assert "fixtures_app.shop.&lt;lambda&gt;" in receipt  # the unique key function
    assert "no retries" in row["resize-image"]
    fires = re.findall(r'<time datetime="([^"]+)">', row["heartbeat"])
    assert len(fires) == 3 and all(f.endswith(("0:00+00:00", "5:00+00:00")) for f in fires)
    assert all(
        "T03:00:00+00:00" in f for f in re.findall(r'datetime="([^"]+)"', row["nightly-report"])
    )
    assert "EventBridge rule" in row["sync-crm"]


def test_jobs_page_without_an_app_says_how_to_give_one(driver: SQLiteQueueDriver) -> None:
    page = client_for(driver, module=None).get("/jobs").text
    assert "--app package.module:AppModule" in page


@EVERY_DRIVER
def test_lookup_finds_pending_and_dead_jobs(client: TestClient, seeded: Any) -> None:
    info: Seeded = seeded[1]
    waiting = client.get(f"/lookup?job_id={info.waiting_job_id}").text
    assert 'data-state="delayed"' in waiting and "due in 59m" in waiting
    dead = client.get(f"/lookup?job_id={info.declined_job_id}").text
    assert 'data-state="dead"' in dead and "dead letter #" in dead
    assert "No job <code>nope</code> found" in client.get("/lookup?job_id=nope").text


# -- actions ----------------------------------------------------------------------------------


@EVERY_DRIVER
def test_redrive_after_confirmation_moves_the_job_back(
    client: TestClient, driver: SQLiteQueueDriver
) -> None:
    target = declined_id(driver)
    before = driver.stats()["payments"].ready
    confirm = client.get(f"/dead-letters/confirm?action=redrive&id={target}")
    assert confirm.status_code == 200 and f'name="id" value="{target}"' in confirm.text
    assert target in dead_ids(driver)  # asking is not doing
    done = client.post("/dead-letters/redrive", data={"csrf_token": TOKEN, "id": target})
    assert done.status_code == 303
    assert done.headers["location"] == "/dead-letters?redrove=1&asked=1"
    assert target not in dead_ids(driver)
    assert driver.stats()["payments"].ready == before + 1
    assert "Redrove 1 of 1" in client.get(done.headers["location"]).text


@EVERY_DRIVER
def test_purge_of_selected_dead_letters(client: TestClient, driver: SQLiteQueueDriver) -> None:
    ids = dead_ids(driver)
    assert len(ids) == 3
    done = client.post("/dead-letters/purge", data={"csrf_token": TOKEN, "id": ids[:2]})
    assert done.headers["location"] == "/dead-letters?purged=2&asked=2"
    assert dead_ids(driver) == ids[2:]


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        ({}, {}),
        ({"csrf_token": "guess"}, {}),
        ({"csrf_token": TOKEN}, {"origin": "http://evil.example"}),
        ({"csrf_token": TOKEN}, {"sec-fetch-site": "cross-site"}),
    ],
    ids=["no-token", "wrong-token", "other-origin", "cross-site"],
)
def test_a_post_without_the_token_or_from_elsewhere_changes_nothing(
    client: TestClient, driver: SQLiteQueueDriver, data: dict[str, str], headers: dict[str, str]
) -> None:
    ids = dead_ids(driver)
    for action in ("redrive", "purge"):
        answer = client.post(f"/dead-letters/{action}", data={**data, "id": ids}, headers=headers)
        assert answer.status_code == 403
    assert dead_ids(driver) == ids


def test_state_changes_are_posts_only(client: TestClient, driver: SQLiteQueueDriver) -> None:
    ids = dead_ids(driver)
    for action in ("redrive", "purge"):
        assert client.get(f"/dead-letters/{action}?id={ids[0]}&csrf_token={TOKEN}").status_code in (
            404,
            405,
        )
    assert dead_ids(driver) == ids


def test_a_form_that_is_too_large_or_not_a_form_is_refused(client: TestClient) -> None:
    huge = {"csrf_token": TOKEN, "id": ["1" * 1000] * 300}
    assert client.post("/dead-letters/purge", data=huge).status_code == 400
    assert client.post("/dead-letters/purge", json={"csrf_token": TOKEN}).status_code == 400


def test_read_only_hides_actions_and_refuses_them(driver: SQLiteQueueDriver) -> None:
    client = client_for(driver, read_only=True)
    ids = dead_ids(driver)
    listing = client.get("/dead-letters").text
    assert "read-only" in listing
    assert 'type="checkbox"' not in listing and "Redrive selected" not in listing
    assert "Purge</a>" not in client.get(f"/dead-letters/{ids[0]}").text
    assert client.get(f"/dead-letters/confirm?action=purge&id={ids[0]}").status_code == 403
    posted = client.post("/dead-letters/purge", data={"csrf_token": TOKEN, "id": ids})
    assert posted.status_code == 403
    assert dead_ids(driver) == ids


# -- who may connect --------------------------------------------------------------------------


def test_only_loopback_host_names_are_served_by_default(driver: SQLiteQueueDriver) -> None:
    client = client_for(driver)
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/", headers={"host": "[::1]:8765"}).status_code == 200
    assert client.get("/", headers={"host": "attacker.example:8765"}).status_code == 400
    anywhere = client_for(driver, allowed_hosts=["*"])
    assert anywhere.get("/", headers={"host": "jobs.internal"}).status_code == 200


def test_basic_auth_guards_every_request(driver: SQLiteQueueDriver) -> None:
    client = client_for(driver, auth=("ops", "s3cret-pass"))

    def basic(text: str) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(text.encode()).decode()}

    assert client.get("/").status_code == 401
    assert "Basic" in client.get("/").headers["www-authenticate"]
    assert client.get("/static/dashboard.css").status_code == 401
    assert client.get("/", headers=basic("ops:wrong")).status_code == 401
    assert client.get("/", headers={"authorization": "Basic !!"}).status_code == 401
    assert client.get("/", headers=basic("ops:s3cret-pass")).status_code == 200


# -- secrets and missing capabilities ---------------------------------------------------------


class _FailingDriver(SQLiteQueueDriver):
    """A driver whose calls fail with messages quoting its connection string or AWS key."""

    def stats(self) -> Any:
        raise ConnectionError("could not connect to postgresql://app:hunter2-pw@db:5432/jobs")

    def dead_letter_page(self, query: Any, cursor: str | None = None, limit: int = 100) -> Any:
        raise RuntimeError(f"signature with {os.environ['AWS_SECRET_ACCESS_KEY']} failed")


def test_secrets_are_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-K7MDENG")
    failing = _FailingDriver(tmp_path / "f.db")
    url = "postgresql://app:hunter2-pw@db:5432/jobs?sslpassword=also-secret&sslmode=require"
    page = client_for(failing, driver_url=url).get("/")
    assert page.status_code == 200
    assert "hunter2-pw" not in page.text and "also-secret" not in page.text
    assert "postgresql://app:***@db:5432/jobs?sslpassword=***&amp;sslmode=require" in page.text
    assert "ConnectionError: could not connect to postgresql://app:***@db:5432/jobs" in page.text
    dead = client_for(failing, driver_url=url).get("/dead-letters").text
    assert "RuntimeError: signature with *** failed" in dead
    assert "wJalrXUtnFEMI-K7MDENG" not in dead
    failing.close()


def test_a_driver_without_capabilities_says_what_it_cannot_do() -> None:
    client = client_for(MockQueueDriver(), module=None)
    assert "the mock driver cannot report queue counts" in client.get("/").text
    assert "the mock driver cannot record job outcomes per minute" in client.get("/").text
    assert "the mock driver cannot list dead letters" in client.get("/dead-letters").text
    assert "the mock driver cannot look up jobs" in client.get("/lookup?job_id=x").text
    posted = client.post("/dead-letters/redrive", data={"csrf_token": TOKEN, "id": "1"})
    assert posted.status_code == 502
    assert "the mock driver cannot redrive dead letters" in posted.text


class _DeadLettersOnly(SQLiteQueueDriver):
    """A driver that can list dead letters but neither look jobs up nor keep statuses."""

    find_job = None  # type: ignore[assignment]
    job_status = None  # type: ignore[assignment]


def test_lookup_falls_back_to_dead_letters(tmp_path: Path) -> None:
    info = seed(tmp_path / "jobs.db")
    driver = _DeadLettersOnly(tmp_path / "jobs.db")
    client = client_for(driver)
    dead = client.get(f"/lookup?job_id={info.declined_job_id}").text
    assert "dead letters only" in dead and 'data-state="dead"' in dead
    assert "No job" in client.get(f"/lookup?job_id={info.waiting_job_id}").text
    driver.close()


@pytest.mark.slow
def test_an_unreachable_cloudwatch_is_a_notice_not_an_error_page(
    driver: SQLiteQueueDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("boto3")
    from dashboard_support import free_port
    from glasswork.jobs.metrics import CloudWatchOutcomes

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    outcomes = CloudWatchOutcomes("Shop", region="us-east-1", endpoint_url=nobody)
    page = client_for(driver, outcomes=outcomes).get("/")
    assert page.status_code == 200
    assert "EndpointConnectionError" in page.text and "no outcome history to chart" in page.text
    assert "--cloudwatch-namespace" not in page.text  # it was given: no advice to give it
    assert page.text.count("<tr data-queue=") == len(driver.stats())  # the rest still works
