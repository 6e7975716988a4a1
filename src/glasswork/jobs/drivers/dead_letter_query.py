"""Searching dead letters: which ones (:class:`DeadLetterQuery`), a page of them newest first
with a cursor to the next (:class:`DeadLetterPage`), and how many share each reason
(:class:`DeadLetterGroup`); the three are part of the driver contract
(:mod:`glasswork.jobs.drivers.base`), re-exported here.

The SQLite and PostgreSQL drivers search in SQL (keyset pages on the id, which is never
reused). A driver that can only read its dead letters (SQS peeks its DLQs) searches what it
read with :func:`search`, whose cursors are the failure time and id (:func:`time_cursor`).
A cursor is opaque text: only the driver that gave it reads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from .base import DeadLetterGroup, DeadLetterPage, DeadLetterQuery, DeadLetterRecord

__all__ = [
    "GROUPS",
    "PAGE_SIZE",
    "DeadLetterGroup",
    "DeadLetterPage",
    "DeadLetterQuery",
    "search",
    "time_cursor",
]

#: Dead letters on a page, unless asked otherwise.
PAGE_SIZE = 100
#: Reasons a page groups its dead letters by, the most frequent first.
GROUPS = 20


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
