"""The mock driver's memory of ended jobs: each :class:`~..records.JobStatus` kept for its
``keep_for`` seconds, forgotten lazily when read after that, and the paging of a history."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..lifecycle import check_state
from ..records import JobStatus


@dataclass(slots=True)
class _Kept:
    status: JobStatus
    expires: float  # time.monotonic()
    order: int  # ties of updated_at keep the order they ended in


class EndedJobs:
    """Statuses of ended jobs by job id, each until it expires (not thread-safe: the driver
    holds its lock)."""

    __slots__ = ("_kept", "_order")

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}
        self._order = 0

    def keep(self, status: JobStatus, keep_for: float) -> None:
        """Keep ``status`` ``keep_for`` seconds (0 or less: forget the job now)."""
        if keep_for <= 0:
            self._kept.pop(status.job_id, None)
            return
        self._order += 1
        self._kept[status.job_id] = _Kept(status, time.monotonic() + keep_for, self._order)

    def get(self, job_id: str) -> JobStatus | None:
        """The kept status of ``job_id``, None when there is none (or it expired)."""
        kept = self._kept.get(job_id)
        if kept is None:
            return None
        if kept.expires <= time.monotonic():
            del self._kept[job_id]
            return None
        return kept.status

    def all(self) -> list[JobStatus]:
        """Every status still kept (the expired ones are forgotten now)."""
        now = time.monotonic()
        for job_id in [j for j, k in self._kept.items() if k.expires <= now]:
            del self._kept[job_id]
        return [k.status for k in sorted(self._kept.values(), key=lambda k: k.order)]

    def clear(self) -> None:
        self._kept.clear()


def history_page(
    statuses: Iterable[JobStatus],
    *,
    state: str | None,
    job_name: str | None,
    queue: str | None,
    limit: int,
    before: str | None,
) -> list[JobStatus]:
    """The page of ``statuses`` (given oldest first) a ``job_history`` call asks for: newest
    first by ``updated_at``, filtered, after the job ``before``."""
    check_state(state)
    matching = [
        s
        for s in statuses
        if (state is None or s.state == state)
        and (job_name is None or s.job_name == job_name)
        and (queue is None or s.queue == queue)
    ]
    # Stable sort, reversed input: among equal times the one given last comes first.
    matching.reverse()
    matching.sort(key=lambda s: s.updated_at.timestamp() if s.updated_at else 0.0, reverse=True)
    if before is not None:
        ids = [s.job_id for s in matching]
        matching = matching[ids.index(before) + 1 :] if before in ids else []
    return matching[: max(limit, 0)]
