"""Searching dead letters, the two ways drivers do it: in SQL (:func:`where`) or in memory
(:func:`search`). What a search asks (:class:`~.records.DeadLetterQuery`) and gives
(:class:`~.records.DeadLetterPage`, :class:`~.records.DeadLetterGroup`) are records of the
contract, re-exported here.

* **In SQL** (SQLite, PostgreSQL): :func:`where` is the ``WHERE`` clause of a query over a
  ``glasswork_dead_letters`` table. Cursors are ids as text: ids only grow (SQLite:
  AUTOINCREMENT; PostgreSQL: an identity column), so a page is ``id < cursor ORDER BY id
  DESC`` whatever was added or removed since. The indexes ``(queue, id)``, ``(job_name,
  id)`` and ``(failed_at)`` serve the filters; the text in a reason is found by reading the
  matching rows (no index holds substrings).
* **In memory**: a driver that can only read its dead letters (SQS peeks its DLQs), and the
  dashboard over a driver that can only list them, search what was read with
  :func:`search`, whose cursors are the failure time and id (:func:`time_cursor`).

A cursor is opaque text: only the driver that gave it reads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigurationError
from .records import (
    GROUPS,
    PAGE_SIZE,
    DeadLetterGroup,
    DeadLetterPage,
    DeadLetterQuery,
    DeadLetterRecord,
)

__all__ = [
    "GROUPS",
    "PAGE_SIZE",
    "POSTGRES",
    "SQLITE",
    "DeadLetterGroup",
    "DeadLetterPage",
    "DeadLetterQuery",
    "Dialect",
    "row_id",
    "search",
    "time_cursor",
    "where",
]

# -- in memory ---------------------------------------------------------------------------------


def time_cursor(record: DeadLetterRecord) -> str:
    """A cursor that sorts as (failure time, id): fixed-width milliseconds, then the id."""
    at = record.failed_at or datetime.fromtimestamp(0, UTC)
    return f"{int(at.timestamp() * 1000):015d}.{record.id}"


def search(
    records: Iterable[DeadLetterRecord],
    query: DeadLetterQuery,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    *,
    cursor_of: Callable[[DeadLetterRecord], str] = time_cursor,
    note: str | None = None,
) -> DeadLetterPage:
    """The page of ``records`` after ``cursor`` that ``query`` matches, searched in memory."""
    keyed = sorted(
        ((cursor_of(r), r) for r in records if query.matches(r, cursor_of(r))),
        key=lambda pair: pair[0],
        reverse=True,
    )
    after = [(key, r) for key, r in keyed if cursor is None or key < cursor]
    shown = after[:limit]
    more = len(after) > limit
    by_reason = Counter(r.reason for _, r in keyed)
    newest_of: dict[str, tuple[str, DeadLetterRecord]] = {}
    for key, r in keyed:  # newest first: the first seen of each reason is its newest
        newest_of.setdefault(r.reason, (key, r))
    # The most frequent first; of those as frequent, the one that failed last.
    ranked = sorted(by_reason.items(), key=lambda g: newest_of[g[0]][0], reverse=True)
    ranked.sort(key=lambda g: -g[1])
    groups = [
        DeadLetterGroup(reason, count, newest_of[reason][0], newest_of[reason][1].failed_at)
        for reason, count in ranked[:GROUPS]
    ]
    return DeadLetterPage(
        [r for _, r in shown],
        shown[-1][0] if more else None,
        len(keyed),
        keyed[0][0] if keyed else None,
        groups,
        len(by_reason),
        note,
    )


# -- in SQL ------------------------------------------------------------------------------------


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
