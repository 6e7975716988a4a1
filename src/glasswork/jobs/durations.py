"""Turn human delays ("30s", "10m", "1h30m", 90, timedelta) into seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import ConfigurationError

Delay = str | int | float | timedelta

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration(value: Delay) -> float:
    """Return ``value`` in seconds.

    Accepts seconds as a number, a :class:`~datetime.timedelta`, or a string of
    number-unit parts with units ``ms s m h d w``: ``"30s"``, ``"10m"``, ``"1h30m"``.

    >>> parse_duration("1h30m")
    5400.0
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise TypeError("a delay must be a number of seconds, a duration string or a timedelta")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text and _WHOLE.fullmatch(text):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"cannot read delay {value!r}: use e.g. '30s', '10m', '2h', '1d', '1h30m'"
                ) from None
    else:
        raise TypeError(
            f"a delay must be a number of seconds, a duration string or a timedelta, "
            f"not {type(value).__name__}"
        )
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"a delay cannot be negative: {value!r}")
    return seconds


def positive_seconds(value: Delay, what: str) -> float:
    """``value`` as a positive, finite number of seconds; a :class:`ConfigurationError`
    naming ``what`` (an option, say ``job_timeout``) otherwise."""
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{what}: {exc}") from None
    if not 0 < seconds < float("inf"):
        raise ConfigurationError(f"{what} must be positive seconds, got {value!r}")
    return seconds


#: The longest a driver's duration setting (a lease, a poll interval, a timeout) may be: a
#: year, beyond any use, and within what every database, clock and timer can hold.
MAX_SETTING_SECONDS = 365 * 86400.0


def setting_seconds(
    value: object, what: str, *, zero: bool = False, most: float = MAX_SETTING_SECONDS
) -> float:
    """A driver's duration setting ``what`` in seconds: a finite number above 0 (or 0 too,
    with ``zero``) and at most ``most``; a :class:`ConfigurationError` naming it otherwise
    (infinity or a huge value would be accepted here and fail every call later)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not ((seconds >= 0 if zero else seconds > 0) and seconds <= most):  # NaN fails too
        low = "0 or more" if zero else "positive"
        raise ConfigurationError(
            f"{what} must be {low} seconds, at most {most:,.0f}, got {value!r}"
        )
    return seconds
