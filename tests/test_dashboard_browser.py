"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real
``glasswork dashboard`` process on a free loopback port, over a SQLite file filled by a
real worker (tests/dashboard_support.py). Redriving by clicking also runs over PostgreSQL
(the same seed, in a schema of its own) and over SQS on the moto server; a page of 10,000
dead letters over SQLite and PostgreSQL. Also: pages, filters, groups by reason and their
confirmed actions; the workers panel with a real worker process, killed; the error page;
every page on a phone's screen; depth lines that overlap; the limits of an app's jobs and
how often they held jobs back.

Every test saves a screenshot under its tmp dir. The README's picture of the queues page is
this module's :func:`screenshot_queues`: ``GLASSWORK_README_SCREENSHOT=docs/images/
dashboard-queues.png pytest tests/test_dashboard_browser.py -k screenshot`` writes it.

Without /usr/bin/chromium or Playwright the tests are skipped, except under CI (``CI`` set),
where .ci/run installs both and a skip would hide a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TESTS = Path(__file__).resolve().parent
SCREENSHOT_ENV = "GLASSWORK_README_SCREENSHOT"
T = TypeVar("T")
pytestmark = [pytest.mark.browser, pytest.mark.subprocess]


def _require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI installs it: see .ci/run)")
    pytest.skip(why, allow_module_level=True)


_require(os.access(CHROMIUM, os.X_OK), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the installation
    _require(False, "Playwright is not installed (pip install -e '.[dev]')")

from dashboard_support import (  # noqa: E402
    MALFORMED_BODY,
    XSS_NOTE,
    bury,
    seed,
    seed_driver,
    seed_sqs,
    serve_dashboard,
)
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver  # noqa: E402
from job_lives import live_jobs  # noqa: E402
from pgtest import POSTGRESQL  # noqa: E402


@dataclass
class Dashboard:
    url: str
    driver: Any  # SQLite, unless the test asks for another driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def console_errors() -> list[str]:
    """Errors the page logged (a test expecting some clears them)."""
    return []


@pytest.fixture
def page(browser: Browser, tmp_path: Path, console_errors: list[str]) -> Iterator[Page]:
    # A fresh context per test: its own profile (cookies, cache, storage), nothing shared.
    context = browser.new_context(viewport={"width": 1180, "height": 900})
    opened = context.new_page()
    opened.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: console_errors.append(str(e)))
    yield opened
    # What the test saw; after it, a dashboard stopped before this teardown may refuse the
    # page's refresh, which is no error of the page's.
    seen = list(console_errors)
    opened.screenshot(path=str(tmp_path / "last-page.png"), full_page=True)
    context.close()
    # A CSP violation or a script error would show here.
    assert seen == []


def start_dashboard(
    tmp_path: Path, *extra: str, earlier_history: bool = False
) -> Iterator[Dashboard]:
    """Seed a SQLite file and serve it with ``glasswork dashboard`` in its own process."""
    on_thread(seed, tmp_path / "jobs.db", earlier_history=earlier_history)
    with serve_dashboard(tmp_path, "--refresh", "1", *extra) as url:
        driver = SQLiteQueueDriver(tmp_path / "jobs.db")
        yield Dashboard(url, driver)
        driver.close()


def on_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` run on a thread of its own: seeding runs a worker, whose event loop cannot
    start on this thread, where Playwright's sync API keeps its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    yield from start_dashboard(tmp_path)


def start_postgres_dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    """The seeded shop in a PostgreSQL schema of its own, served by ``glasswork dashboard``."""
    from glasswork.jobs.drivers.postgres import PostgresQueueDriver
    from pgtest import dsn, fresh_schema, url

    with fresh_schema() as schema, PostgresQueueDriver(dsn(), schema=schema) as driver:
        on_thread(seed_driver, driver)
        with serve_dashboard(tmp_path, "--refresh", "1", driver_url=url(schema)) as served:
            yield Dashboard(served, driver)


@pytest.fixture(params=["sqlite", POSTGRESQL])
def sql_dashboard(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dashboard]:
    """The shop's dashboard over SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield from start_dashboard(tmp_path)
    else:
        yield from start_postgres_dashboard(tmp_path)


@pytest.fixture(params=["sqlite", POSTGRESQL, "sqs"])
def any_dashboard(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dashboard]:
    """The shop's dashboard over each driver: SQLite, PostgreSQL (a schema of its own),
    SQS (queues, DLQs and a scheduler table on the moto server)."""
    if request.param == "sqlite":
        yield from start_dashboard(tmp_path)
    elif request.param == "postgresql":
        yield from start_postgres_dashboard(tmp_path)
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        monkeypatch = request.getfixturevalue("monkeypatch")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.setenv(name, "moto-fake")  # for this process and the dashboard's
        shop = on_thread(seed_sqs, endpoint, f"browser-{uuid.uuid4().hex[:8]}")
        # The test's own peeks need not wait for SQS's sampling (moto has one server); the
        # dashboard's do, as on SQS.
        shop.driver.dead_letter_admin.wait_seconds = 0
        with serve_dashboard(tmp_path, "--refresh", "1", driver_url=shop.url) as served:
            yield Dashboard(served, shop.driver)


def count(page: Page, queue: str, column: str) -> int:
    return int(page.inner_text(f'tr[data-queue="{queue}"] td.{column}').strip())


def screenshot_queues(page: Page, dashboard: Dashboard, path: Path) -> None:
    """The README's picture: the queues page, its depth chart sampled while jobs arrive,
    with two workers' heartbeats in the workers panel."""
    from datetime import UTC, datetime, timedelta

    from glasswork.jobs import JobMessage
    from glasswork.jobs.drivers.records import WorkerBeat

    store = dashboard.driver.heartbeat_store()
    started = datetime.now(UTC) - timedelta(hours=3, minutes=12)
    for n, queues in ((1, ("emails", "media")), (2, ("payments",))):
        beat = WorkerBeat(f"worker-{n}:{n}", f"worker-{n}", 4100 + n, queues, 8, n + 2, started)
        store.record_worker(beat)
    page.goto(dashboard.url + "/")
    for burst in (4, 9, 6, 12):
        for _ in range(burst):
            dashboard.driver.enqueue(JobMessage.create("send-receipt", {}, queue="emails"))
        dashboard.driver.enqueue(JobMessage.create("resize-image", {}, queue="media"))
        page.wait_for_timeout(1100)  # one live refresh (--refresh 1) samples the depths
    expect(page.locator("#depth-chart polyline")).to_have_count(4)
    page.screenshot(path=str(path), full_page=True)


# -- the tests --------------------------------------------------------------------------------


def test_pages_load_and_show_what_the_driver_holds(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    page.goto(dashboard.url + "/")
    stats = dashboard.driver.stats()
    for queue, s in stats.items():
        assert count(page, queue, "ready") == s.ready
        assert count(page, queue, "delayed") == s.delayed
        assert count(page, queue, "dead") == s.dead
    assert page.inner_text('[data-outcome="done"]') == "8"
    assert page.locator("#outcome-chart rect.retry").count() >= 1
    page.screenshot(path=str(tmp_path / "queues.png"), full_page=True)

    page.click("text=Jobs")
    assert page.locator("tr[data-job]").count() == 6
    assert page.locator('tr[data-job="heartbeat"] time').count() == 3

    page.fill('header input[name="job_id"]', dashboard_waiting_id(dashboard))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator('tr[data-state="delayed"]').count() == 1
    page.screenshot(path=str(tmp_path / "lookup.png"), full_page=True)


def dashboard_waiting_id(dashboard: Dashboard) -> str:
    conn = dashboard.driver._conn()
    row = conn.execute("SELECT job_id FROM glasswork_jobs WHERE queue = 'emails'").fetchone()
    return str(row[0])


def test_counts_refresh_live_without_reloading(page: Page, dashboard: Dashboard) -> None:
    from glasswork.jobs import JobMessage

    page.goto(dashboard.url + "/")
    before = count(page, "media", "ready")
    page.evaluate("window.__sameDocument = true")
    dashboard.driver.enqueue(JobMessage.create("resize-image", {"image": "x"}, queue="media"))
    expect(page.locator('tr[data-queue="media"] td.ready')).to_have_text(
        str(before + 1), timeout=10000
    )
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded


def test_redrive_one_dead_letter_by_clicking(
    page: Page, any_dashboard: Dashboard, tmp_path: Path
) -> None:
    dashboard = any_dashboard
    driver = dashboard.driver
    target = next(r for r in driver.dead_letters() if "insufficient funds" in r.body)
    ready_before = driver.stats()["payments"].ready
    page.goto(dashboard.url + "/")
    assert count(page, "payments", "ready") == ready_before

    page.click("text=Dead letters")
    page.check(f'tr[data-id="{target.id}"] input[name="id"]')
    page.click("text=Redrive selected")
    assert page.inner_text("h1") == "Redrive 1 dead letter?"
    page.screenshot(path=str(tmp_path / "confirm.png"), full_page=True)
    page.click("#confirm-button")

    page.wait_for_selector(".flash")
    assert "Redrove 1 of 1" in page.inner_text(".flash")
    assert page.locator(f'tr[data-id="{target.id}"]').count() == 0  # left the list
    assert page.locator("tr[data-id]").count() == 2
    page.screenshot(path=str(tmp_path / "after-redrive.png"), full_page=True)
    page.click("text=Queues")
    assert count(page, "payments", "ready") == ready_before + 1  # the queue depth rose
    assert target.id not in [r.id for r in driver.dead_letters()]


def test_payloads_and_reasons_with_html_are_inert_text(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    driver = dashboard.driver
    declined = next(r for r in driver.dead_letters() if "__xss=1" in r.body)
    malformed = next(r for r in driver.dead_letters() if r.body == MALFORMED_BODY)
    page.goto(dashboard.url + "/dead-letters")
    assert XSS_NOTE in page.inner_text(f'tr[data-id="{declined.id}"] td.reason')
    page.goto(f"{dashboard.url}/dead-letters/{declined.id}")
    assert XSS_NOTE.replace('"', '\\"') in page.inner_text("#payload")
    assert page.locator("main img, main script").count() == 0
    page.goto(f"{dashboard.url}/dead-letters/{malformed.id}")
    assert page.inner_text("#payload") == MALFORMED_BODY
    assert "<b>not JSON</b>" in page.inner_text("pre.reason")
    page.screenshot(path=str(tmp_path / "xss.png"), full_page=True)
    assert page.evaluate("window.__xss") is None  # no script ran, no onerror fired


def test_a_post_without_the_token_is_refused(
    page: Page, dashboard: Dashboard, console_errors: list[str]
) -> None:
    driver = dashboard.driver
    ids = [r.id for r in driver.dead_letters()]
    page.goto(dashboard.url + "/")
    for action in ("redrive", "purge"):
        answer = page.request.post(f"{dashboard.url}/dead-letters/{action}", form={"id": ids[0]})
        assert answer.status == 403
        assert "security token" in answer.text()
    # A page of another origin posting a form, as a CSRF attack would: refused too.
    page.goto("about:blank")
    page.set_content(
        f'<form method="post" action="{dashboard.url}/dead-letters/purge">'
        f'<input name="id" value="{ids[0]}"><input name="csrf_token" value="guess"></form>'
    )
    with page.expect_navigation():
        page.evaluate("document.forms[0].submit()")
    assert "Refused" in page.inner_text("h1")
    assert [r.id for r in driver.dead_letters()] == ids
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    ]
    console_errors.clear()


def test_read_only_dashboard_shows_no_actions(page: Page, tmp_path: Path) -> None:
    for dashboard in start_dashboard(tmp_path, "--read-only"):
        page.goto(dashboard.url + "/dead-letters")
        assert page.locator('input[type="checkbox"]').count() == 0
        assert page.locator("text=Redrive selected").count() == 0
        assert page.inner_text(".badge") == "read-only"
        waiting = dashboard.driver.job_history(state="scheduled")[0]
        page.goto(f"{dashboard.url}/jobs/{waiting.job_id}")
        assert page.get_attribute("#job-state", "data-job-state") == "scheduled"
        assert page.locator("#cancel-button").count() == 0
        page.goto("about:blank")  # no refresh of the page once its dashboard has stopped


def test_jobs_are_filtered_by_state_and_one_is_cancelled_by_clicking(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    driver = dashboard.driver
    lives = live_jobs(driver)
    page.goto(dashboard.url + "/")
    page.click("text=Jobs")
    assert page.locator(f'tr[data-job-id="{lives.dead}"]').count() == 1
    assert page.locator(f'tr[data-job-id="{lives.pending}"]').count() == 1

    page.select_option('#job-filters select[name="state"]', "pending")
    page.click("#job-filters button[type=submit]")
    expect(page.locator("tr[data-job-id]")).to_have_count(1)
    assert page.get_attribute("tr[data-job-id]", "data-job-id") == lives.pending
    assert page.input_value('#job-filters select[name="state"]') == "pending"
    page.screenshot(path=str(tmp_path / "jobs-pending.png"), full_page=True)

    page.click(f'tr[data-job-id="{lives.pending}"] a')
    assert page.get_attribute("#job-state", "data-job-state") == "pending"
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.once("dialog", lambda dialog: dialog.dismiss())  # "Cancel job ...?" No.
    page.click("#cancel-button")
    assert page.get_attribute("#job-state", "data-job-state") == "pending"
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("#cancel-button")
    assert posts == [f"{dashboard.url}/jobs/cancel"]  # the dismissed question sent nothing
    assert page.inner_text("#cancel-flash") == "Cancelled: it will not run."
    assert page.get_attribute("#job-state", "data-job-state") == "cancelled"
    assert page.locator("#cancel-button").count() == 0
    page.screenshot(path=str(tmp_path / "job-cancelled.png"), full_page=True)
    assert driver.job_status(lives.pending).state == "cancelled"
    assert driver.receive(["emails"], max_messages=10, wait_seconds=0) == []

    page.click("text=Jobs")
    page.select_option('#job-filters select[name="state"]', "cancelled")
    page.click("#job-filters button[type=submit]")
    expect(page.locator("tr[data-job-id]")).to_have_count(1)
    assert page.get_attribute("tr[data-job-id]", "data-job-id") == lives.pending


def test_screenshot_of_the_queues_page(page: Page, tmp_path: Path) -> None:
    for dashboard in start_dashboard(tmp_path, earlier_history=True):
        shot = tmp_path / "dashboard-queues.png"
        screenshot_queues(page, dashboard, shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        target = os.environ.get(SCREENSHOT_ENV)
        if target:
            shutil.copyfile(shot, target)
        page.goto("about:blank")  # no refresh of the page once its dashboard has stopped


# -- dead letters at scale ----------------------------------------------------------------------


def dead_rows(page: Page) -> list[str]:
    return [str(r.get_attribute("data-id")) for r in page.locator("tr[data-id]").all()]


def test_dead_letters_are_paged_filtered_and_grouped_and_a_group_redriven(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    driver = dashboard.driver
    bury(driver, 130, "SMTP 421 try again later")
    bury(driver, 3, "SMTP 550 no such user")
    ready_before = driver.stats()["emails"].ready
    page.goto(dashboard.url + "/dead-letters")
    assert page.inner_text("#match-count") == "136 dead letters, newest first."
    first = dead_rows(page)
    assert len(first) == 100 and first == sorted(first, key=int, reverse=True)
    # The actions are above the list, not under 100 rows.
    toolbar = page.locator("#actions").bounding_box()
    top_row = page.locator("tr[data-id]").first.bounding_box()
    assert toolbar is not None and top_row is not None and toolbar["y"] < top_row["y"]
    page.screenshot(path=str(tmp_path / "dead-letters.png"), full_page=True)

    page.click("#next-page")
    older = dead_rows(page)
    assert len(older) == 36 and int(older[0]) < int(first[-1])
    page.click("#newest-page")
    assert dead_rows(page) == first

    page.fill('form.filters input[name="q"]', "550")
    page.fill('form.filters input[name="queue"]', "emails")
    page.click("form.filters button")
    assert page.inner_text("#match-count") == "3 dead letters match, newest first."
    assert len(dead_rows(page)) == 3
    page.click("#clear-filters")
    assert len(dead_rows(page)) == 100

    group = page.locator("tr[data-group]", has_text="SMTP 421 try again later")
    assert group.locator("td.count").inner_text().startswith("130")
    group.get_by_text("Redrive all 130").click()
    assert page.inner_text("h1") == "Redrive all 130 dead letters?"
    assert driver.stats()["emails"].dead == 133  # asking is not doing
    page.screenshot(path=str(tmp_path / "confirm-group.png"), full_page=True)
    page.click("#confirm-button")
    page.wait_for_selector(".flash")
    assert "Redrove 130 of 130" in page.inner_text(".flash")
    assert page.locator("tr[data-group]", has_text="SMTP 421").count() == 0
    page.click("text=Queues")
    assert count(page, "emails", "ready") == ready_before + 130

    page.click("text=Dead letters")
    page.locator("tr[data-group]", has_text="SMTP 550").get_by_text("Purge all 3").click()
    page.click("#confirm-button")
    page.wait_for_selector(".flash")
    assert "Purged 3 of 3" in page.inner_text(".flash")
    assert driver.stats()["emails"].dead == 0

    # A group action without the form's token changes nothing.
    bury(driver, 2, "SMTP 421 try again later")
    newest = max(int(r.id) for r in driver.dead_letters())
    form = {"reason": "SMTP 421 try again later", "newest": str(newest)}
    answer = page.request.post(f"{dashboard.url}/dead-letters/redrive-all", form=form)
    assert answer.status == 403 and "security token" in answer.text()
    assert driver.stats()["emails"].dead == 2


def test_a_page_of_ten_thousand_dead_letters(
    page: Page, sql_dashboard: Dashboard, tmp_path: Path
) -> None:
    bury(sql_dashboard.driver, 10_000, "SMTP 421 try again later")
    page.goto(sql_dashboard.url + "/dead-letters")
    assert page.inner_text("#match-count") == "10,003 dead letters, newest first."
    assert page.locator("tr[data-id]").count() == 100
    assert "10,000" in page.locator("tr[data-group]").first.inner_text()
    older = page.locator("#next-page")
    assert older.inner_text() == "Older 100 →"
    newest = dead_rows(page)
    older.click()
    assert page.locator("tr[data-id]").count() == 100
    assert int(dead_rows(page)[0]) == int(newest[-1]) - 1
    page.screenshot(path=str(tmp_path / "ten-thousand.png"))


# -- the workers panel --------------------------------------------------------------------------

_WORKER = """
import sys
from fixtures_app.shop import ShopModule
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.worker import Worker

Worker(
    module=ShopModule, driver=SQLiteQueueDriver(sys.argv[1]), queues=["emails", "media"],
    concurrency=3, heartbeat_seconds=0.3,
).run()
"""


def test_workers_panel_shows_a_worker_process_then_that_it_is_gone(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    import subprocess
    import sys

    page.goto(dashboard.url + "/")
    assert "No worker is running" in page.inner_text("#workers")
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(tmp_path / "jobs.db")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        row = page.locator("#worker-list tr[data-worker]")
        expect(row).to_have_attribute("data-state", "alive", timeout=20000)  # live refresh
        assert f"pid {process.pid}" in row.inner_text()
        assert (
            "emails, media" in row.inner_text() and row.locator(".concurrency").inner_text() == "3"
        )
        page.screenshot(path=str(tmp_path / "workers.png"), full_page=True)
    finally:
        process.kill()  # no clean stop: its row stays, and goes quiet
        process.wait()
    expect(page.locator("#worker-list tr[data-worker]")).to_have_attribute(
        "data-state", "gone", timeout=20000
    )
    assert page.inner_text("#worker-list .state") == "gone"


# -- the page of an error, a phone's screen, lines that overlap ---------------------------------


def test_an_unknown_address_shows_the_dashboards_error_page(
    page: Page, dashboard: Dashboard, console_errors: list[str]
) -> None:
    answer = page.goto(dashboard.url + "/no/such/page")
    assert answer is not None and answer.status == 404
    assert page.inner_text("h1") == "Page not found"
    assert page.inner_text("#error-message") == "There is no page at /no/such/page."
    page.click("header >> text=Dead letters")
    assert page.inner_text("h1") == "Dead letters"
    console_errors.clear()  # the browser reports the 404 it was sent


def test_the_limits_of_the_apps_jobs_show_how_often_they_held_jobs_back(
    browser: Browser, page: Page, tmp_path: Path
) -> None:
    from test_dashboard_limits import hold_back

    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    try:
        hold_back(driver)  # claims held back 3 of paced and 1 of per_tenant
        with serve_dashboard(tmp_path, "--refresh", "1", app=LIMITED_APP) as url:
            page.goto(url + "/")
            page.click("text=Jobs")
            paced = page.locator('#limits tr[data-limited-job="paced"]')
            expect(paced.locator("td.rate")).to_have_text("10/s")
            expect(paced.locator("td.held-back")).to_have_text("3")
            per_tenant = page.locator('#limits tr[data-limited-job="per_tenant"]')
            expect(per_tenant.locator("td.once")).to_contain_text("2 per key")
            expect(per_tenant.locator("td.held-back")).to_have_text("1")
            page.locator("#limits").screenshot(path=str(tmp_path / "limits.png"))
            context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            phone = context.new_page()
            try:
                phone.goto(url + "/jobs")
                width = phone.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], f"/jobs is {width}px wide on a 375px screen"
            finally:
                context.close()
    finally:
        driver.close()


LIMITED_APP = "fixtures_app.limited:LimitedModule"
PHONE = {"width": 375, "height": 740}


def test_every_page_fits_a_phone_screen(
    browser: Browser, dashboard: Dashboard, tmp_path: Path
) -> None:
    bury(dashboard.driver, 30, "ConnectionError: " + "a very long reason without spaces " * 5)
    dead = dashboard.driver.dead_letters()[0]
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        for path in (
            "/",
            "/dead-letters",
            f"/dead-letters/{dead.id}",
            f"/dead-letters/confirm?action=redrive&id={dead.id}",
            "/jobs",
            f"/lookup?job_id={dead.job_id}",
            "/nope",
        ):
            phone.goto(dashboard.url + path)
            phone.screenshot(path=str(tmp_path / f"phone{path.replace('/', '-')[:40]}.png"))
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width}px wide on a 375px screen"
    finally:
        context.close()


def test_queues_with_the_same_depth_keep_lines_of_their_own(
    page: Page, dashboard: Dashboard
) -> None:
    page.goto(dashboard.url + "/")
    lines = page.locator("#depth-chart polyline")
    expect(lines).to_have_count(4, timeout=15000)  # default, emails, media, payments
    # default and payments both hold nothing: one line lies on the other.
    points = {line.get_attribute("points") for line in lines.all()}
    assert len(points) < 4
    dashes = lines.evaluate_all("ls => ls.map(l => getComputedStyle(l).strokeDasharray)")
    assert len(set(dashes)) == 4, dashes  # the one beneath shows through the other's gaps
