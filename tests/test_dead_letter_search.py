"""Searching dead letters in memory (what SQS's peeked DLQs and drivers that can only list
their dead letters get): filters, pages newest first by (failure time, id), groups by
reason, and the ``newest`` pin of an action confirmed on a page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from glasswork.jobs.drivers.dead_letter_search import search, time_cursor
from glasswork.jobs.drivers.records import DeadLetterQuery, DeadLetterRecord

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def record(
    n: int, reason: str, queue: str | None = "emails", job: str = "send"
) -> DeadLetterRecord:
    return DeadLetterRecord(
        f"m-{n:03d}", queue, job, f"job-{n}", "{}", reason, START + timedelta(minutes=n)
    )


RECORDS = [
    *(record(n, "SMTP 421") for n in range(0, 30)),
    *(record(n, "SMTP 550 no such user", job="notify") for n in range(30, 35)),
    *(record(n, "TimeoutError", queue=None) for n in range(35, 40)),
]


def test_pages_are_newest_first_and_reach_every_match_once() -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = search(RECORDS, DeadLetterQuery(), cursor, limit=15)
        seen += [r.id for r in page.records]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"m-{n:03d}" for n in range(39, -1, -1)]
    assert page.total == 40 and page.newest == time_cursor(RECORDS[-1])


def test_filters_match_as_the_sql_drivers_do() -> None:
    def ids(**fields: object) -> int:
        return search(RECORDS, DeadLetterQuery(**fields), limit=100).total  # type: ignore[arg-type]

    assert ids(queue="emails") == 35
    assert ids(queue="default") == 5  # no queue counts as the default queue's
    assert ids(job_name="notify") == 5
    assert ids(reason="SMTP 421") == 30
    assert ids(reason_contains="smtp") == 35
    assert ids(failed_from=START + timedelta(minutes=30)) == 10
    assert ids(failed_until=START + timedelta(minutes=30)) == 30
    assert ids(reason="SMTP 421", newest=time_cursor(RECORDS[9])) == 10


def test_groups_count_every_match_most_frequent_first() -> None:
    page = search(RECORDS, DeadLetterQuery(queue="emails"), limit=5)
    assert [(g.reason, g.count) for g in page.groups] == [
        ("SMTP 421", 30),
        ("SMTP 550 no such user", 5),
    ]
    assert page.groups[0].newest == time_cursor(RECORDS[29])
    assert page.groups[0].last_failed == START + timedelta(minutes=29)
    assert page.group_count == 2 and len(page.records) == 5
