"""Searching dead letters: which ones (:class:`DeadLetterQuery`), a page of them newest first
with a cursor to the next (:class:`DeadLetterPage`), and how many share each reason
(:class:`DeadLetterGroup`).

The SQLite and PostgreSQL drivers search in SQL (keyset pages on the id, which is never
reused). A driver that can only read its dead letters (SQS peeks its DLQs) searches what it
read with :func:`search`, whose cursors are the failure time and id (:func:`time_cursor`).
A cursor is opaque text: only the driver that gave it reads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .drivers.base import DeadLetterRecord

#: Dead letters on a page, unless asked otherwise.
PAGE_SIZE = 100
#: Reasons a page groups its dead letters by, the most frequent first.
GROUPS = 20


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    """Which dead letters: each field set narrows the search (None: any).

    * ``queue``, ``job_name``: exactly these (dead letters without a queue are ``default``'s);
    * ``reason``: exactly this reason (a group); ``reason_contains``: this text anywhere in
      the reason, ignoring case (ASCII letters only, on SQLite);
    * ``failed_from`` (inclusive) and ``failed_until`` (exclusive): when they failed;
    * ``newest``: none newer than the dead letter with this cursor, so an action confirmed on
      what a page showed leaves dead letters that arrived since alone.
    """

    queue: str | None = None
    job_name: str | None = None
    reason: str | None = None
    reason_contains: str | None = None
    failed_from: datetime | None = None
    failed_until: datetime | None = None
    newest: str | None = None

    def matches(self, record: DeadLetterRecord, cursor: str) -> bool:
        """Whether ``record`` (whose cursor is ``cursor``) is one of these (for drivers that
        search in memory)."""
        if self.queue is not None and (record.queue or "default") != self.queue:
            return False
        if self.job_name is not None and record.job_name != self.job_name:
            return False
        if self.reason is not None and record.reason != self.reason:
            return False
        if self.reason_contains and self.reason_contains.casefold() not in (
            record.reason.casefold()
        ):
            return False
        if self.failed_from is not None or self.failed_until is not None:
            at = record.failed_at
            if at is None:
                return False
            if self.failed_from is not None and at < self.failed_from:
                return False
            if self.failed_until is not None and at >= self.failed_until:
                return False
        return self.newest is None or cursor <= self.newest


@dataclass(frozen=True, slots=True)
class DeadLetterGroup:
    """``count`` dead letters with this ``reason``; ``newest`` is the cursor of the newest
    of them (what an action on the group passes as :attr:`DeadLetterQuery.newest`)."""

    reason: str
    count: int
    newest: str
    last_failed: datetime | None


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """One page of a search, newest first.

    ``next_cursor`` asks for the page after this one (None: this is the last);
    ``total`` counts every match and ``newest`` is the cursor of the newest match (None: no
    match); ``groups`` are the most frequent reasons among the matches, of
    ``group_count`` distinct ones. ``note`` says where the driver could not look (SQS)."""

    records: list[DeadLetterRecord]
    next_cursor: str | None
    total: int
    newest: str | None
    groups: list[DeadLetterGroup] = field(default_factory=list)
    group_count: int = 0
    note: str | None = None


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
