"""Schedules of periodic jobs: ``rate(...)``, AWS ``cron(...)`` and plain 5-field cron.

All times are UTC, as on EventBridge. Cron parsing uses croniter (``pip install
'glasswork[cron]'``), imported only when a cron expression is parsed. Also what a worker
does about fires missed while no worker ran (:class:`PeriodicPolicy`, :func:`catch_up`).

>>> parse_schedule("rate(5 minutes)").next_after(datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
datetime.datetime(2026, 1, 1, 0, 5, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, get_args

from .errors import ConfigurationError
from .extras import needs_extra

_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)", re.IGNORECASE)
_CRON = re.compile(r"cron\((.*)\)", re.IGNORECASE | re.DOTALL)
_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)


class Schedule(Protocol):
    """When a periodic job fires."""

    expression: str

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (an aware datetime), in UTC."""
        ...

    def previous_before(self, moment: datetime) -> datetime:
        """The last fire time strictly before ``moment`` (an aware datetime), in UTC."""
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

    def previous_before(self, moment: datetime) -> datetime:
        steps = (self._ticks(moment) - 1) // self._period
        return _EPOCH + timedelta(seconds=steps * self.seconds)

    def count_between(self, after: datetime, until: datetime) -> int:
        """How many fires fall in ``(after, until]``."""
        return max(0, self._ticks(until) // self._period - self._ticks(after) // self._period)

    @property
    def _period(self) -> int:
        return self.seconds * 1_000_000

    @staticmethod
    def _ticks(moment: datetime) -> int:
        return (moment.astimezone(UTC) - _EPOCH) // _TICK  # exact: no float rounding


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

    def previous_before(self, moment: datetime) -> datetime:
        from croniter import croniter

        prev: datetime = croniter(self.cron_fields, moment.astimezone(UTC)).get_prev(datetime)
        return prev.astimezone(UTC)


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


#: ``catchup=``: what a worker does about fires missed while no worker ran.
Catchup = Literal["none", "latest", "all"]
#: How many missed fires ``catchup="all"`` runs at most, unless ``catchup_limit`` says.
DEFAULT_CATCHUP_LIMIT = 100
#: A fire less late than this when a worker starts is fired as usual, not missed: it is
#: probably being fired by a running worker this very moment.
ON_TIME = timedelta(seconds=1)
#: Missed cron fires are counted up to this many (a rate's are counted exactly).
COUNT_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class PeriodicPolicy:
    """How the long-running worker fires one periodic job besides its schedule.

    ``catchup``: of the fires missed while no worker ran, run ``"none"``, the ``"latest"``
    or ``"all"`` (the most recent ``catchup_limit`` of them). ``overlap=False``: skip a
    fire while an earlier run of the job is pending, running or waiting to retry."""

    catchup: Catchup = "none"
    catchup_limit: int = DEFAULT_CATCHUP_LIMIT
    overlap: bool = True

    @classmethod
    def of(
        cls, job: str, catchup: object, catchup_limit: object, overlap: object
    ) -> PeriodicPolicy:
        """The policy of ``define_periodic_job(catchup=, catchup_limit=, overlap=)``;
        raises :class:`ConfigurationError` naming ``job`` and the bad value."""
        where = f"periodic job {job!r}"
        if catchup not in get_args(Catchup):
            raise ConfigurationError(
                f"{where}: catchup must be 'none', 'latest' or 'all', got {catchup!r}"
            )
        if catchup_limit is None:
            catchup_limit = DEFAULT_CATCHUP_LIMIT
        elif catchup != "all":
            raise ConfigurationError(
                f"{where}: catchup_limit bounds catchup='all'; with catchup={catchup!r} leave "
                "it out"
            )
        if isinstance(catchup_limit, bool) or not isinstance(catchup_limit, int):
            raise ConfigurationError(
                f"{where}: catchup_limit must be a whole number, got {catchup_limit!r}"
            )
        if catchup_limit < 1:
            raise ConfigurationError(
                f"{where}: catchup_limit must be at least 1, got {catchup_limit}"
            )
        if not isinstance(overlap, bool):
            raise ConfigurationError(f"{where}: overlap must be True or False, got {overlap!r}")
        if catchup == "all" and not overlap:
            # The missed fires are enqueued at once: all but the first would be skipped.
            raise ConfigurationError(
                f"{where}: catchup='all' enqueues the missed fires together, and overlap=False "
                "would skip all but the first; use catchup='latest' with overlap=False"
            )
        return cls(catchup, catchup_limit, overlap)  # type: ignore[arg-type]

    @property
    def runs_missed(self) -> int:
        """How many of the missed fires are run (the most recent ones)."""
        return {"none": 0, "latest": 1, "all": self.catchup_limit}[self.catchup]


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What a worker starting after fires were missed does: ``run`` (oldest first) are
    fired now; ``dropped`` fires, from ``dropped_first`` to ``dropped_last``, are not;
    ``resume`` is the first fire of the usual schedule."""

    resume: datetime
    run: tuple[datetime, ...] = ()
    dropped: int = 0
    dropped_first: datetime | None = None
    dropped_last: datetime | None = None


def catch_up(
    schedule: RateSchedule | CronSchedule,
    policy: PeriodicPolicy,
    last: datetime | None,
    now: datetime,
) -> CatchUp:
    """The fires due in ``(last, now]`` that no worker fired, as ``policy`` handles them.

    ``last`` is the last fire claimed on the backend (None: the job never fired there, so
    nothing was missed). The latest fire due, when less than :data:`ON_TIME` late, is not
    missed: the usual schedule resumes with it."""
    current = schedule.previous_before(now + _TICK)  # the latest fire at or before now
    if last is None or current <= last:
        return CatchUp(schedule.next_after(now))
    on_time = now - current < ON_TIME
    resume = current if on_time else schedule.next_after(now)
    until = schedule.previous_before(current) if on_time else current
    if until <= last:
        return CatchUp(resume)
    keep = policy.runs_missed
    count, latest = _fires_between(schedule, last, until, keep + 1)
    run = tuple(latest[len(latest) - min(keep, len(latest)) :])
    dropped = count - len(run)
    if not dropped:
        return CatchUp(resume, run)
    return CatchUp(
        resume, run, dropped, schedule.next_after(last), latest[len(latest) - len(run) - 1]
    )


def _fires_between(
    schedule: RateSchedule | CronSchedule, after: datetime, until: datetime, latest: int
) -> tuple[int, list[datetime]]:
    """How many fires fall in ``(after, until]`` (``until`` being a fire time), and the
    most recent ``latest`` of them, oldest first."""
    found: list[datetime] = []
    fire = until
    count = 0
    exact = schedule.count_between(after, until) if isinstance(schedule, RateSchedule) else None
    while fire > after and count < COUNT_LIMIT:
        if len(found) < latest:
            found.append(fire)
        elif exact is not None:
            break  # a rate's count is known: no need to walk further back
        count += 1
        fire = schedule.previous_before(fire)
    found.reverse()
    return (exact if exact is not None else count), found
