"""The dead-letter pages at scale, through Starlette's TestClient, on SQLite and PostgreSQL
(the shop seeded by a real worker, plus dead letters added in bulk): pages newest first with
a cursor to every one, filters, groups by reason and the actions on a group (confirmed,
CSRF-protected, acting on what the confirmation showed), the actions above the list, the
job lookup's links past the first thousand, and tracebacks. SQS:
tests/integration/test_dashboard_sqs.py; in Chromium: test_dashboard_browser.py."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx2")

from starlette.testclient import TestClient

from dashboard_support import Seeded, bury, seed, set_failed_at, shop_driver
from fixtures_app.shop import ShopModule
from glasswork.dashboard import create_app
from glasswork.jobs.drivers.records import DeadLetterPage, DeadLetterQuery, DeadLetterRecord
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from pgtest import SLOW_POSTGRESQL

BASE = "http://127.0.0.1:8765"
TOKEN = "test-token-0123456789"


@pytest.fixture(params=["sqlite", SLOW_POSTGRESQL])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Seeded]]:
    with shop_driver(request.param, tmp_path) as seeded:
        yield seeded


def client_for(driver: Any, **options: Any) -> TestClient:
    app = create_app(driver, module=ShopModule, csrf_token=TOKEN, **options)
    return TestClient(app, base_url=BASE, follow_redirects=False)


def rows(page: str) -> list[str]:
    """The dead-letter ids a page lists, in order."""
    return re.findall(r'<tr data-id="([^"]+)">', page)


def href(page: str, element_id: str) -> str | None:
    found = re.search(rf'href="([^"]+)" id="{element_id}"|id="{element_id}" href="([^"]+)"', page)
    return html.unescape(found.group(1) or found.group(2)) if found else None


def group_row(page: str, reason: str) -> str:
    found = [
        row for row in re.findall(r"<tr data-group=.*?</tr>", page, re.S) if f">{reason}<" in row
    ]
    assert len(found) == 1, f"no group of {reason!r} in {page}"
    return found[0]


def links(row: str) -> dict[str, str]:
    """The links of a row by their text."""
    return {
        text.strip(): html.unescape(url)
        for url, text in re.findall(r'href="([^"]+)">([^<]+)<', row)
    }


def hidden_fields(page: str, *, leave_out: str = "") -> dict[str, list[str]]:
    """The hidden fields of the form on a confirmation page (but ``leave_out``), as a form
    posts them."""
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page):
        if name != leave_out:
            fields.setdefault(name, []).append(html.unescape(value))
    return fields


def form_action(page: str) -> str:
    found = re.search(r'<form method="post" action="([^"]+)">', page)
    assert found is not None
    return found.group(1)


def dead_in(driver: Any, queue: str) -> int:
    return int(driver.stats()[queue].dead)


# -- reaching every dead letter -----------------------------------------------------------------


def test_every_dead_letter_is_reached_newest_first_page_by_page(shop: tuple[Any, Seeded]) -> None:
    driver, _ = shop
    bury(driver, 250, "SMTP 421 try again later")
    client = client_for(driver)
    page = client.get("/dead-letters").text
    assert "<b>253</b> dead letters, newest first." in page
    pages = [rows(page)]
    while (following := href(page, "next-page")) is not None:
        page = client.get(following).text
        pages.append(rows(page))
        assert len(pages) < 10
    assert [len(p) for p in pages] == [100, 100, 53]
    seen = [int(i) for p in pages for i in p]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 253  # none twice, none left
    assert href(page, "newest-page") is not None  # back to the start from a later page


def test_the_actions_sit_above_the_list(shop: tuple[Any, Seeded]) -> None:
    driver, _ = shop
    bury(driver, 120, "boom")
    page = client_for(driver).get("/dead-letters").text
    first_row = page.index("<tr data-id=")
    for action in ("Redrive selected", "Purge selected", 'id="redrive-all"', 'id="purge-all"'):
        assert page.index(action) < first_row, action


def test_the_lookup_links_every_dead_letter_to_a_page_that_shows_it(
    shop: tuple[Any, Seeded],
) -> None:
    driver, _ = shop
    job_ids = bury(driver, 1200, "boom")
    client = client_for(driver)
    for job_id in (job_ids[0], job_ids[-1]):  # the oldest and the newest of 1,203
        found = client.get(f"/lookup?job_id={job_id}").text
        link = re.search(r'href="([^"]+/dead-letters/[^"]+)">dead letter #', found)
        assert link is not None, found
        detail = client.get(html.unescape(link.group(1)))
        assert detail.status_code == 200, detail.text
        assert f"<code>{job_id}</code>" in detail.text


# -- filters ------------------------------------------------------------------------------------


def test_filters_by_queue_job_reason_text_and_time(shop: tuple[Any, Seeded]) -> None:
    driver, _ = shop
    old = bury(driver, 5, "SMTP 421 try again later")
    set_failed_at(driver, old, datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    bury(driver, 4, "SMTP 421 try again later")
    bury(driver, 3, "TimeoutError: 30s", queue="media", job_name="resize-image")
    client = client_for(driver)

    def shown(**query: str) -> list[str]:
        page = client.get(f"/dead-letters?{urlencode(query)}").text
        found = rows(page)
        count = re.search(r"<b>([\d,]+)</b> dead letters? match", page)
        assert count is not None and int(count.group(1)) == len(found), page
        return found

    assert len(shown(queue="media")) == 3
    assert len(shown(job="resize-image")) == 3
    assert len(shown(queue="emails")) == 9
    assert len(shown(q="smtp 421")) == 9  # text anywhere in the reason, any case
    assert len(shown(q="declined")) == 2  # the seed's charges
    assert len(shown(**{"from": "2024-05-01T11:00", "until": "2024-05-01T13:00"})) == 5
    assert len(shown(until="2024-05-02T00:00")) == 5
    assert len(shown(**{"from": "2024-05-02T00:00", "queue": "emails", "q": "SMTP"})) == 4
    nothing = client.get("/dead-letters?queue=emails&job=charge-card").text
    assert "No dead letters match these filters." in nothing
    bad = client.get("/dead-letters?from=yesterday").text
    assert "&#39;yesterday&#39; is not a time" in bad and "(left out)" in bad
    assert len(rows(bad)) == 15  # every dead letter: the filter that cannot be read is not applied


# -- groups and the actions on them -------------------------------------------------------------


def test_a_group_is_redriven_exactly_as_confirmed(shop: tuple[Any, Seeded]) -> None:
    driver, _ = shop
    bury(driver, 59, "SMTP 421")
    bury(driver, 3, "SMTP 550 no such user")
    client = client_for(driver)
    listing = client.get("/dead-letters").text
    group = group_row(listing, "SMTP 421")
    assert "59&thinsp;\N{MULTIPLICATION SIGN}" in group
    confirm = client.get(links(group)["Redrive all 59"])
    assert confirm.status_code == 200
    assert "Redrive all 59 dead letters?" in confirm.text
    assert dead_in(driver, "emails") == 62  # asking is not doing
    late = bury(driver, 1, "SMTP 421")  # fails after the confirmation was shown
    fields = hidden_fields(confirm.text)
    without_token = hidden_fields(confirm.text, leave_out="csrf_token")
    assert client.post(form_action(confirm.text), data=without_token).status_code == 403
    assert dead_in(driver, "emails") == 63

    done = client.post(form_action(confirm.text), data=fields)
    assert done.status_code == 303
    assert done.headers["location"] == "/dead-letters?redrove=59&asked=59"
    stats = driver.stats()["emails"]
    assert (stats.ready, stats.dead) == (59, 4)  # the late one and the other group stay
    left = client.get(done.headers["location"]).text
    assert "Redrove 59 of 59" in left
    assert "1&thinsp;\N{MULTIPLICATION SIGN}" in group_row(left, "SMTP 421")
    assert driver.find_job(late[0])[0].state == "dead"


def test_a_group_of_a_filtered_list_is_purged_and_the_list_keeps_its_filters(
    shop: tuple[Any, Seeded],
) -> None:
    driver, _ = shop
    bury(driver, 4, "TimeoutError: 30s", queue="media", job_name="resize-image")
    bury(driver, 2, "TimeoutError: 30s", queue="emails")
    client = client_for(driver)
    listing = client.get("/dead-letters?queue=media").text
    confirm = client.get(links(group_row(listing, "TimeoutError: 30s"))["Purge all 4"]).text
    assert "Purge all 4 dead letters?" in confirm and "<dt>Queue</dt><dd>media</dd>" in confirm
    done = client.post(form_action(confirm), data=hidden_fields(confirm))
    assert done.headers["location"] == "/dead-letters?queue=media&purged=4&asked=4"
    assert dead_in(driver, "emails") == 2  # the same reason on another queue: not in the group
    assert "media" not in driver.stats() or dead_in(driver, "media") == 0


def test_all_matching_a_search_are_redriven_after_confirmation(shop: tuple[Any, Seeded]) -> None:
    driver, _ = shop
    bury(driver, 130, "SMTP 421")
    client = client_for(driver)
    listing = client.get("/dead-letters?queue=emails").text
    confirm = client.get(href(listing, "redrive-all") or "").text
    assert "Redrive all 130 dead letters?" in confirm and "and 120 more" in confirm
    done = client.post(form_action(confirm), data=hidden_fields(confirm))
    assert done.headers["location"] == "/dead-letters?queue=emails&redrove=130&asked=130"
    assert driver.stats()["emails"].ready == 130
    assert dead_in(driver, "payments") == 2  # the other queues' dead letters stay


def test_a_reason_spanning_lines_is_matched_exactly(shop: tuple[Any, Seeded]) -> None:
    driver, _ = shop
    reason = 'ValueError: bad row\n  line 2 <b>"quoted"</b>\r\n  line 3'
    bury(driver, 3, reason)
    client = client_for(driver)
    listing = client.get("/dead-letters").text
    row = next(r for r in re.findall(r"<tr data-group=.*?</tr>", listing, re.S) if "bad row" in r)
    confirm = client.get(links(row)["Purge all 3"]).text
    # A browser submits line breaks as CR LF: the reason travels JSON-encoded instead.
    fields = {k: [v.replace("\n", "\r\n") for v in vs] for k, vs in hidden_fields(confirm).items()}
    done = client.post(form_action(confirm), data=fields)
    assert "purged=3&asked=3" in done.headers["location"]


def test_a_group_action_without_a_pinned_newest_or_in_read_only_mode_is_refused(
    shop: tuple[Any, Seeded],
) -> None:
    driver, _ = shop
    bury(driver, 3, "SMTP 421")
    client = client_for(driver)
    form = {"csrf_token": TOKEN, "reason_json": '"SMTP 421"'}
    assert client.post("/dead-letters/purge-all", data=form).status_code == 400
    read_only = client_for(driver, read_only=True)
    listing = read_only.get("/dead-letters").text
    assert "Redrive all" not in listing and "Purge all" not in listing
    assert read_only.get("/dead-letters/confirm-all?action=purge").status_code == 403
    pinned = {**form, "newest": "999999999"}
    assert read_only.post("/dead-letters/purge-all", data=pinned).status_code == 403
    assert dead_in(driver, "emails") == 3


# -- tracebacks ---------------------------------------------------------------------------------

TRACEBACK = 'Traceback (most recent call last):\n  File "shop.py", line 9\n<b>declined</b>'


def _traced(record: DeadLetterRecord) -> DeadLetterRecord:
    if record.job_name != "charge-card":
        return record
    return replace(record, traceback=TRACEBACK)


class _WithTracebacks(SQLiteQueueDriver):
    """A driver that keeps the tracebacks of declined charges."""

    def dead_letter_page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        page = super().dead_letter_page(query, cursor, limit)
        return replace(page, records=[_traced(r) for r in page.records])

    def find_dead_letter(self, record_id: str) -> DeadLetterRecord | None:
        found = super().find_dead_letter(record_id)
        return _traced(found) if found else None


def test_tracebacks_are_shown_collapsed_where_a_driver_keeps_them(tmp_path: Path) -> None:
    seed(tmp_path / "jobs.db")
    driver = _WithTracebacks(tmp_path / "jobs.db")
    client = client_for(driver)
    listing = client.get("/dead-letters").text
    shown = re.findall(
        r'<details class="traceback"><summary>Traceback</summary><pre>(.*?)</pre>', listing, re.S
    )
    escaped = html.escape(TRACEBACK, quote=True).replace("&#x27;", "&#39;")
    assert shown == [escaped.replace("&quot;", "&#34;")] * 2  # the two declined charges only
    declined = next(r for r in driver.dead_letters() if r.job_name == "charge-card")
    malformed = next(r for r in driver.dead_letters() if r.job_name is None)
    assert 'id="traceback"' in client.get(f"/dead-letters/{declined.id}").text
    assert 'id="traceback"' not in client.get(f"/dead-letters/{malformed.id}").text
    driver.close()
