"""The mock's round-robin across fairness keys: the order the SQL drivers claim in, in
memory (see :mod:`glasswork.jobs.drivers.sqlite.fairness`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from ...message import JobMessage


class Waiting(Protocol):
    """What the order reads of a waiting job."""

    @property
    def message(self) -> JobMessage: ...


W = TypeVar("W", bound=Waiting)


def key_of(item: Waiting) -> str:
    """Its fairness key; ``''`` (no real key is empty) for the group of jobs without one."""
    return item.message.fairness_key or ""


def fair_queues(ready: Sequence[Waiting]) -> set[str]:
    """The queues of ``ready`` holding a job with a fairness key."""
    return {item.message.queue for item in ready if item.message.fairness_key is not None}


def fair_order(ready: Sequence[W], fair: set[str], cursors: dict[str, str]) -> list[W]:
    """``ready`` (in the plain order: priority, then due time) as the fair claims would hand
    it out: each queue of ``fair`` round-robin across its keys, after the key it served
    last (``cursors``), a key's own jobs in their plain order; the other queues' jobs as
    they were. The fair queues and the rest then take turns, one job each."""
    plain: list[W] = []
    groups: dict[str, dict[str, list[W]]] = {}
    for item in ready:
        queue = item.message.queue
        if queue in fair:
            groups.setdefault(queue, {}).setdefault(key_of(item), []).append(item)
        else:
            plain.append(item)
    lanes = [plain] if plain else []
    for queue, keys in groups.items():
        cursor = cursors.get(queue, "")
        ring = sorted(k for k in keys if k > cursor) + sorted(k for k in keys if k <= cursor)
        rounds = max(len(jobs) for jobs in keys.values())
        lanes.append([keys[k][n] for n in range(rounds) for k in ring if n < len(keys[k])])
    longest = max((len(lane) for lane in lanes), default=0)
    return [lane[n] for n in range(longest) for lane in lanes if n < len(lane)]


def turned(taken: Sequence[Waiting], fair: set[str], cursors: dict[str, str]) -> None:
    """Move the cursor of each queue of ``fair`` to the last key of its round that
    ``taken`` served."""
    last: dict[str, tuple[bool, str]] = {}
    for item in taken:
        queue = item.message.queue
        if queue not in fair:
            continue
        key = key_of(item)
        # The round starts after the cursor: a key after it comes before any key up to it.
        place = (key <= cursors.get(queue, ""), key)
        if queue not in last or place > last[queue]:
            last[queue] = place
    cursors.update((queue, key) for queue, (_, key) in last.items())
