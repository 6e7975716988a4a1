"""Schedules: rate(...), AWS cron(...) and plain cron, all in UTC."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from glasswork.jobs.errors import ConfigurationError
from glasswork.jobs.schedules import parse_schedule

AT = datetime(2026, 11, 25, 3, 7, 30, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("rate(5 minutes)", datetime(2026, 11, 25, 3, 10, tzinfo=UTC)),
        ("rate(1 minute)", datetime(2026, 11, 25, 3, 8, tzinfo=UTC)),
        ("rate(1 hour)", datetime(2026, 11, 25, 4, 0, tzinfo=UTC)),
        ("rate(2 days)", datetime(2026, 11, 27, tzinfo=UTC)),  # even days since 1970
        ("rate(10 seconds)", datetime(2026, 11, 25, 3, 7, 40, tzinfo=UTC)),
        ("RATE( 5 Minutes )", datetime(2026, 11, 25, 3, 10, tzinfo=UTC)),
    ],
)
def test_rate_fires_on_multiples_of_its_interval(expression: str, expected: datetime) -> None:
    assert parse_schedule(expression).next_after(AT) == expected


def test_next_fire_is_strictly_after_a_fire_time() -> None:
    schedule = parse_schedule("rate(5 minutes)")
    at = datetime(2026, 11, 25, 3, 10, tzinfo=UTC)
    assert schedule.next_after(at) == at + timedelta(minutes=5)
    cron = parse_schedule("0 3 * * *")
    three = datetime(2026, 11, 25, 3, tzinfo=UTC)
    assert cron.next_after(three) == three + timedelta(days=1)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 3 * * *", datetime(2026, 11, 26, 3, tzinfo=UTC)),
        ("*/15 * * * *", datetime(2026, 11, 25, 3, 15, tzinfo=UTC)),
        ("cron(0 3 * * ? *)", datetime(2026, 11, 26, 3, tzinfo=UTC)),
        ("cron(0/10 * ? * * *)", datetime(2026, 11, 25, 3, 10, tzinfo=UTC)),
        # AWS numbers days from Sunday = 1: 2 is Monday.
        ("cron(0 12 ? * 2 *)", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("cron(0 12 ? * MON-FRI *)", datetime(2026, 11, 25, 12, tzinfo=UTC)),
        ("cron(0 12 ? * 2-6 *)", datetime(2026, 11, 25, 12, tzinfo=UTC)),
        ("cron(0 9 ? * 6L *)", datetime(2026, 11, 27, 9, tzinfo=UTC)),  # last Friday
        ("cron(0 9 ? * 2#1 *)", datetime(2026, 12, 7, 9, tzinfo=UTC)),  # first Monday
        ("cron(0 0 1 * ? 2027)", datetime(2027, 1, 1, tzinfo=UTC)),
        ("cron(0 0 L * ? *)", datetime(2026, 11, 30, tzinfo=UTC)),
    ],
)
def test_cron_next_fire_in_utc(expression: str, expected: datetime) -> None:
    assert parse_schedule(expression).next_after(AT) == expected


def test_aware_times_in_other_zones_are_converted() -> None:
    local = AT.astimezone(timezone(timedelta(hours=5)))
    assert parse_schedule("0 3 * * *").next_after(local) == datetime(2026, 11, 26, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("every day", "use 'rate(5 minutes)'"),
        ("rate(5 fortnights)", "minute(s), hour(s), day(s)"),
        ("rate(0 minutes)", "at least 1"),
        ("cron(0 3 * * *)", "AWS cron has 6 fields"),
        ("cron(0 3 * * 1 *)", "'?' in exactly one"),
        ("cron(0 3 ? * 8 *)", "run 1-7"),
        ("61 3 * * *", "cannot read cron schedule"),
        ("", "non-empty"),
    ],
)
def test_bad_schedules_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_schedule(expression)


def test_schedules_are_checked_when_defined_even_without_croniter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from glasswork.jobs import ConfigurationError, define_periodic_job

    monkeypatch.setitem(sys.modules, "croniter", None)  # as on a Lambda without the cron extra
    job = define_periodic_job(name="nightly", handler=lambda: None, schedule="cron(0 3 * * ? *)")
    assert job.schedule == "cron(0 3 * * ? *)"
    for bad in ("every 5 minutes", "cron(0 3 * * * *)", "rate(1 minutes)", "rate(2 hour)"):
        with pytest.raises(ConfigurationError, match="periodic job 'nightly'"):
            define_periodic_job(name="nightly", handler=lambda: None, schedule=bad)
