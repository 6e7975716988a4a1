"""The dashboard's view of flow limits (the jobs page's Limits section) through Starlette's
TestClient: per limited job of the app, its rate limit, how many may run at once (per key
or per job), and how often its limits held deliveries back across every worker (the
driver's throttle counts, here from real claims on SQLite and PostgreSQL); a driver that
holds no limits says so. In Chromium: test_dashboard_browser.py."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient

from fixtures_app.limited import LimitedModule
from fixtures_app.shop import ShopModule
from glasswork.dashboard import create_app
from glasswork.jobs import JobMessage, JobService, QueueDriver
from glasswork.jobs.drivers.contract import Consuming
from glasswork.jobs.drivers.records import EnqueueResult, ReceivedMessage
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.limits import JobLimits, RateLimit
from pgtest import POSTGRESQL

BASE = "http://127.0.0.1:8765"


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


def hold_back(driver: Any) -> None:
    """Claims that hold back 3 deliveries of ``paced`` (its rate) and 1 of ``per_tenant``
    (its key's 2 slots), as workers' claims would."""
    jobs = JobService(driver)
    jobs.enqueue_many(LimitedModule.jobs[0], [{"key": f"p{i}"} for i in range(4)])
    jobs.enqueue_many(LimitedModule.jobs[1], [{"key": f"t{i}", "tenant": "t"} for i in range(3)])
    claims = driver.limited_claims(
        {"paced": JobLimits(RateLimit(1, 60.0), None), "per_tenant": JobLimits(None, 2)}
    )
    batch = claims.claim(None, 10, 0.0, 10)
    assert batch.throttled == {("paced", "default"): 3, ("per_tenant", "default"): 1}


def limits_shown(page: str) -> dict[str, list[str]]:
    """The Limits section's rows: job -> its cells' text."""
    section = page[page.index('<section id="limits"') :]
    rows = re.findall(r'<tr data-limited-job="([^"]+)">(.*?)</tr>', section, re.S)
    return {
        name: [
            html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)
        ]
        for name, cells in rows
    }


def test_each_limited_job_shows_its_limits_and_how_often_they_held_jobs_back(
    driver: Any,
) -> None:
    hold_back(driver)
    client = TestClient(create_app(driver, module=LimitedModule), base_url=BASE)
    page = client.get("/jobs").text
    assert limits_shown(page) == {
        "paced": ["default", "10/s", "", "3"],
        "per_tenant": [
            "default",
            "",
            "2 per key (fixtures_app.limited.<lambda>)",
            "1",
        ],
    }


def test_a_limited_job_never_held_back_shows_zero(tmp_path: Path) -> None:
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    try:
        page = TestClient(create_app(driver, module=LimitedModule), base_url=BASE).get("/jobs")
        assert limits_shown(page.text) == {
            "paced": ["default", "10/s", "", "0"],
            "per_tenant": ["default", "", "2 per key (fixtures_app.limited.<lambda>)", "0"],
        }
    finally:
        driver.close()


def test_an_app_without_limited_jobs_says_so_and_asks_the_driver_nothing(tmp_path: Path) -> None:
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    try:
        asked: list[bool] = []
        driver.throttle_counts = lambda: asked.append(True) or {}  # type: ignore[method-assign]
        page = TestClient(create_app(driver, module=ShopModule), base_url=BASE).get("/jobs").text
        assert 'id="no-limits">No job of the app has a rate or concurrency limit.' in page
        assert asked == []
    finally:
        driver.close()


def test_without_the_app_the_counts_the_driver_holds_are_listed(tmp_path: Path) -> None:
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    try:
        hold_back(driver)
        page = TestClient(create_app(driver), base_url=BASE).get("/jobs").text
        assert limits_shown(page) == {"paced": ["3"], "per_tenant": ["1"]}
        assert "<code>--app</code> to see each job" in page
    finally:
        driver.close()


class NoLimitsDriver(QueueDriver, Consuming):
    """A driver written against the contract without FlowLimits."""

    name = "nolimits"

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        raise NotImplementedError

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        raise NotImplementedError

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        return []

    def ack(self, received: ReceivedMessage) -> None:
        return None

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        return None


def test_a_driver_without_flow_limits_shows_that_it_holds_none() -> None:
    client = TestClient(create_app(NoLimitsDriver(), module=LimitedModule), base_url=BASE)
    page = client.get("/jobs").text
    note = re.search(r'<p class="notice" id="limits-note">(.*?)</p>', page, re.S)
    assert note is not None
    assert note.group(1) == (
        "No limits held here: the nolimits driver cannot hold rate or concurrency limits, "
        "so workers on it refuse the app's limited jobs."
    )
    # The app's limits are still shown, with nothing held back to count.
    assert limits_shown(page)["paced"] == ["default", "10/s", "", ""]
