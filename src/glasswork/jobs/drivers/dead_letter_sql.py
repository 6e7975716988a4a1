"""The WHERE clause of a dead-letter search (:class:`~glasswork.jobs.drivers.dead_letter_query.
DeadLetterQuery`) over a ``glasswork_dead_letters`` table, for SQLite and PostgreSQL.

Cursors are ids as text: ids only grow (SQLite: AUTOINCREMENT; PostgreSQL: an identity
column), so a page is ``id < cursor ORDER BY id DESC`` whatever was added or removed since.
The indexes ``(queue, id)``, ``(job_name, id)`` and ``(failed_at)`` serve the filters; the
text in a reason is found by reading the matching rows (no index holds substrings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import ConfigurationError
from .dead_letter_query import DeadLetterQuery


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells a parameter, a case-insensitive substring test, a time."""

    name: str
    mark: str
    contains: str  # "{mark}" stands for the parameter
    time: Callable[[datetime], Any]


SQLITE = Dialect("SQLite", "?", "instr(lower(reason), lower(?)) > 0", lambda t: t.timestamp())
POSTGRES = Dialect("PostgreSQL", "%s", "strpos(lower(reason), lower(%s)) > 0", lambda t: t)


def where(
    query: DeadLetterQuery, dialect: Dialect, *, before: str | None = None
) -> tuple[str, list[Any]]:
    """``"WHERE ..."`` (or ``""``) and its parameters: the rows ``query`` matches, older than
    the cursor ``before`` when given."""
    mark = dialect.mark
    clauses: list[str] = []
    params: list[Any] = []
    if query.queue is not None:
        # Dead letters kept without a queue are counted as the default queue's.
        extra = " OR queue IS NULL" if query.queue == "default" else ""
        clauses.append(f"(queue = {mark}{extra})")
        params.append(query.queue)
    for column, value in (("job_name", query.job_name), ("reason", query.reason)):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    if query.reason_contains:
        clauses.append(dialect.contains)
        params.append(query.reason_contains)
    if query.failed_from is not None:
        clauses.append(f"failed_at >= {mark}")
        params.append(dialect.time(query.failed_from))
    if query.failed_until is not None:
        clauses.append(f"failed_at < {mark}")
        params.append(dialect.time(query.failed_until))
    if query.newest is not None:
        clauses.append(f"id <= {mark}")
        params.append(row_id(query.newest, dialect))
    if before is not None:
        clauses.append(f"id < {mark}")
        params.append(row_id(before, dialect))
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def row_id(text: str, dialect: Dialect) -> int:
    """A dead-letter id or cursor as its row number."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number < 2**63:  # SQLite's and PostgreSQL's largest integer
        raise ConfigurationError(
            f"{dialect.name} dead-letter ids and cursors are whole numbers, got {text!r}"
        )
    return number
