"""Schedules of periodic jobs: ``rate(...)``, AWS ``cron(...)`` and plain 5-field cron.

All times are UTC, as on EventBridge. Cron parsing uses croniter (``pip install
'glasswork[cron]'``), imported only when a cron expression is parsed.

>>> parse_schedule("rate(5 minutes)").next_after(datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
datetime.datetime(2026, 1, 1, 0, 5, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .errors import ConfigurationError
from .extras import needs_extra

_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)", re.IGNORECASE)
_CRON = re.compile(r"cron\((.*)\)", re.IGNORECASE | re.DOTALL)
_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Schedule(Protocol):
    """When a periodic job fires."""

    expression: str

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (an aware datetime), in UTC."""
        ...


@dataclass(frozen=True, slots=True)
class RateSchedule:
    """``rate(N unit)``: every ``seconds``, aligned to multiples of the interval since the Unix
    epoch, so every worker computes the same fire times."""

    expression: str
    seconds: int

    def next_after(self, moment: datetime) -> datetime:
        elapsed = (moment.astimezone(UTC) - _EPOCH).total_seconds()
        steps = int(elapsed // self.seconds) + 1
        return _EPOCH + timedelta(seconds=steps * self.seconds)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression; ``cron_fields`` is what croniter reads (5 fields, or 7 with
    seconds and year for AWS expressions)."""

    expression: str
    cron_fields: str

    def next_after(self, moment: datetime) -> datetime:
        from croniter import croniter

        nxt: datetime = croniter(self.cron_fields, moment.astimezone(UTC)).get_next(datetime)
        return nxt.astimezone(UTC)


def parse_schedule(expression: str) -> RateSchedule | CronSchedule:
    """Read ``rate(5 minutes)``, AWS ``cron(0 3 * * ? *)`` or plain cron ``0 3 * * *``.

    ``rate`` takes minute(s), hour(s), day(s) and, for the long-running worker only (EventBridge
    refuses it), second(s). AWS cron has 6 fields (minutes hours day-of-month month
    day-of-week year), numbers days of the week 1-7 from Sunday, and needs ``?`` in one of
    the two day fields. Raises :class:`ConfigurationError` saying what is wrong.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigurationError(f"a schedule must be a non-empty string, got {expression!r}")
    text = expression.strip()
    if text.lower().startswith("rate"):
        return _parse_rate(text)
    match = _CRON.fullmatch(text)
    if match:
        return CronSchedule(text, _aws_cron_to_croniter(text, match.group(1).split()))
    fields = text.split()
    if len(fields) != 5:
        raise ConfigurationError(
            f"cannot read schedule {expression!r}: use 'rate(5 minutes)', AWS "
            "'cron(0 3 * * ? *)' (6 fields) or a 5-field cron expression like '0 3 * * *'"
        )
    _check_cron(expression, text)
    return CronSchedule(text, text)


def _parse_rate(text: str) -> RateSchedule:
    match = _RATE.fullmatch(text)
    unit = match.group(2).lower().removesuffix("s") if match else ""
    if match is None or unit not in _RATE_UNITS:
        raise ConfigurationError(
            f"cannot read schedule {text!r}: a rate is 'rate(N unit)' with unit "
            "minute(s), hour(s), day(s) or second(s), e.g. 'rate(5 minutes)'"
        )
    value = int(match.group(1))
    if value < 1:
        raise ConfigurationError(f"schedule {text!r}: the rate must be at least 1")
    plural = match.group(2).lower().endswith("s")
    if plural != (value > 1):
        # EventBridge refuses "rate(1 minutes)" and "rate(5 minute)".
        fixed = f"rate({value} {unit}{'s' if value > 1 else ''})"
        raise ConfigurationError(
            f"schedule {text!r}: EventBridge needs the singular unit for 1 and the plural "
            f"otherwise: {fixed!r}"
        )
    return RateSchedule(text, value * _RATE_UNITS[unit])


def _aws_cron_to_croniter(text: str, fields: list[str]) -> str:
    if len(fields) != 6:
        raise ConfigurationError(
            f"cannot read schedule {text!r}: AWS cron has 6 fields (minutes hours "
            f"day-of-month month day-of-week year), got {len(fields)}"
        )
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ConfigurationError(
            f"schedule {text!r}: AWS cron needs '?' in exactly one of day-of-month ({dom!r}) "
            f"and day-of-week ({dow!r}), e.g. 'cron(0 3 * * ? *)'"
        )
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else _aws_day_of_week(text, dow)
    # croniter's 7-field form is: minute hour dom month dow second year.
    converted = f"{minute} {hour} {dom} {month} {dow} 0 {year}"
    _check_cron(text, converted)
    return converted


def _aws_day_of_week(text: str, field: str) -> str:
    """AWS numbers days 1-7 from Sunday; cron numbers them 0-6."""

    def shift(token: str) -> str:
        if not token.isdigit():
            return token  # names (MON) mean the same in both
        day = int(token)
        if not 1 <= day <= 7:
            raise ConfigurationError(
                f"schedule {text!r}: AWS day-of-week numbers run 1-7 (1 is Sunday), got {day}"
            )
        return str(day - 1)

    parts = []
    for item in field.split(","):
        if item == "L":
            parts.append("6")  # AWS: L alone is the last day of the week, Saturday
        elif item.endswith("L"):
            parts.append("L" + shift(item[:-1]))  # 6L (last Friday) is L5 to croniter
        elif "#" in item:
            day, nth = item.split("#", 1)
            parts.append(f"{shift(day)}#{nth}")
        else:
            step = ""
            if "/" in item:
                item, step = item.split("/", 1)
                step = "/" + step
            parts.append("-".join(shift(t) for t in item.split("-")) + step)
    return ",".join(parts)


class _CroniterMissing(ConfigurationError):
    """A cron expression passed every check that needs no croniter."""


def validate_schedule(expression: str) -> None:
    """Check ``expression`` as :func:`parse_schedule` does, when a periodic job is defined.

    Without croniter installed, cron expressions get the checks that need no croniter (field
    count, AWS's ``?`` rule, day-of-week numbers); the worker checks the rest when it
    starts, so Lambda-only apps need no croniter."""
    with contextlib.suppress(_CroniterMissing):
        parse_schedule(expression)


def _check_cron(original: str, fields: str) -> None:
    needs = f"schedule {original!r} is a cron expression, which needs croniter"
    with needs_extra("cron", needs, _CroniterMissing):
        from croniter import croniter
    try:
        croniter(fields, datetime.now(UTC))
    except Exception as exc:
        raise ConfigurationError(f"cannot read cron schedule {original!r}: {exc}") from None


def schedule_of(job: Any) -> RateSchedule | CronSchedule | None:
    """The parsed schedule of a periodic job definition (None when it has none)."""
    expression = getattr(job, "schedule", None)
    if not expression:
        return None
    try:
        return parse_schedule(expression)
    except ConfigurationError as exc:
        raise ConfigurationError(f"periodic job {job.name!r}: {exc}") from None
