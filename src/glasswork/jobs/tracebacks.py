"""The traceback of a job's failure: kept with its dead letter, logged with its first failure.

One rule for both: a :class:`~glasswork.jobs.TransientJobError` or
:class:`~glasswork.jobs.PermanentJobError` raised on purpose (chaining no other error) says
all in its message, so it gets no traceback; every other failure (an unexpected exception,
or a job error raised ``from`` one, or inside an ``except`` block) gets the whole formatted
traceback, chained errors included, bounded to :data:`MAX_TRACEBACK_CHARS` with the end (where
it was raised) kept.
"""

from __future__ import annotations

import traceback

from .errors import PermanentJobError, TransientJobError

#: The longest traceback kept with a dead letter, in characters (the end is kept).
MAX_TRACEBACK_CHARS = 8192
_CUT = "[... {} characters cut ...]\n"


def is_deliberate(error: BaseException) -> bool:
    """Whether ``error`` is a job error raised on purpose: a :class:`TransientJobError` or
    :class:`PermanentJobError` (their subclasses too: an invalid payload, an unknown job, a
    timeout) with no ``__cause__`` and no shown ``__context__``."""
    return (
        isinstance(error, TransientJobError | PermanentJobError)
        and error.__cause__ is None
        and (error.__context__ is None or error.__suppress_context__)
    )


def failure_traceback(error: BaseException) -> str | None:
    """The formatted traceback of ``error`` (bounded, see :func:`bounded`), or None for a
    deliberate job error (:func:`is_deliberate`)."""
    if is_deliberate(error):
        return None
    return bounded("".join(traceback.format_exception(error)))


def bounded(text: str, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, keeping its end (the innermost frames
    and the error), marked where it was cut."""
    if len(text) <= limit:
        return text
    keep = limit - len(_CUT.format(len(text)))
    return _CUT.format(len(text) - keep) + text[len(text) - keep :]
