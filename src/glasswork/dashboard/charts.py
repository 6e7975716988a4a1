"""The queues page's charts, as geometry for server-rendered SVG (templates/_charts.html).

* :func:`outcome_chart`: done / retried / dead-lettered / discarded runs per minute over the
  last hour, stacked, from the outcome counts workers record.
* :class:`DepthSampler`: queue depths sampled each time the page reads the stats, charted
  as one line per queue; it works with every driver that reports stats (SQS included).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..jobs.drivers.records import OUTCOME_KINDS, OutcomeCount, QueueStats

WIDTH, HEIGHT = 960.0, 190.0
LEFT, RIGHT, TOP, BOTTOM = 44.0, 24.0, 8.0, 22.0
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
#: Steps of a count axis at most.
MAX_INTERVALS = 4
LABELS = {
    "done": "done",
    "retry": "retried",
    "dead_letter": "dead-lettered",
    "discarded": "discarded",
    "cancelled": "cancelled",
}


@dataclass(frozen=True, slots=True)
class Rect:
    kind: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Column:
    """One minute: its stacked rectangles and a tooltip."""

    title: str
    rects: list[Rect]


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str
    anchor: str = "middle"


@dataclass(frozen=True, slots=True)
class Grid:
    y: float
    label: str


@dataclass(slots=True)
class OutcomeChart:
    columns: list[Column]
    totals: dict[str, int]
    ticks: list[Tick]
    grid: list[Grid]
    labels: dict[str, str] = field(default_factory=lambda: dict(LABELS))
    width: float = WIDTH
    height: float = HEIGHT
    left: float = LEFT
    right: float = WIDTH - RIGHT

    @property
    def empty(self) -> bool:
        return not any(self.totals.values())


def outcome_chart(
    history: Iterable[OutcomeCount], now: datetime, minutes: int = 60
) -> OutcomeChart:
    """Stacked bars of outcome kinds per minute, for the ``minutes`` up to ``now``."""
    last = now.astimezone(UTC).replace(second=0, microsecond=0)
    first = last - timedelta(minutes=minutes - 1)
    per_minute: dict[datetime, dict[str, int]] = {
        first + timedelta(minutes=i): dict.fromkeys(OUTCOME_KINDS, 0) for i in range(minutes)
    }
    totals = dict.fromkeys(OUTCOME_KINDS, 0)
    for count in history:
        slot = per_minute.get(count.minute.astimezone(UTC))
        if slot is not None and count.outcome in slot:
            slot[count.outcome] += count.count
            totals[count.outcome] += count.count
    top = _nice_ceiling(max((sum(c.values()) for c in per_minute.values()), default=0))
    step = PLOT_W / minutes
    columns = []
    for i, (minute, counts) in enumerate(per_minute.items()):
        x = LEFT + i * step + step * 0.1
        y = TOP + PLOT_H
        rects = []
        for kind in OUTCOME_KINDS:
            if counts[kind]:
                height = PLOT_H * counts[kind] / top
                y -= height
                rects.append(Rect(kind, x, y, step * 0.8, height))
        shown = ", ".join(f"{LABELS[k]} {counts[k]}" for k in OUTCOME_KINDS if counts[k])
        columns.append(Column(f"{minute:%H:%M} UTC: {shown or 'no runs'}", rects))
    ticks = [
        Tick(LEFT + i * step, f"{(first + timedelta(minutes=i)):%H:%M}")
        for i in range(0, minutes, max(1, minutes // 6))
    ]
    ticks.append(Tick(LEFT + PLOT_W, "now", "end"))
    return OutcomeChart(columns, totals, ticks, _grid(top))


# -- queue depth, sampled -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    queue: str
    color: int
    points: str
    latest: int


@dataclass(slots=True)
class DepthChart:
    lines: list[Line]
    ticks: list[Tick]
    grid: list[Grid]
    samples: int
    width: float = WIDTH
    height: float = HEIGHT
    left: float = LEFT
    right: float = WIDTH - RIGHT


class DepthSampler:
    """Pending jobs (ready + delayed + in flight) per queue, a point at most every ``every``
    seconds, kept for ``keep`` seconds. Shared by every request (thread-safe)."""

    COLORS = 6

    def __init__(self, every: float = 5.0, keep: float = 3600.0) -> None:
        self.every = every
        self.keep = keep
        self._samples: deque[tuple[float, dict[str, int]]] = deque()
        self._lock = threading.Lock()

    def add(self, stats: Iterable[QueueStats], now: float | None = None) -> None:
        now = time.time() if now is None else now
        sample = (now, {s.queue: s.pending for s in stats})
        with self._lock:
            # Points stay ``every`` apart, but the last one is always the latest reading.
            if len(self._samples) >= 2 and now - self._samples[-2][0] < self.every:
                self._samples[-1] = sample
            else:
                self._samples.append(sample)
            while self._samples and self._samples[0][0] < now - self.keep:
                self._samples.popleft()

    def chart(self, now: float | None = None) -> DepthChart | None:
        """The chart of the samples so far (None until there are two)."""
        now = time.time() if now is None else now
        with self._lock:
            samples = list(self._samples)
        if len(samples) < 2:
            return None
        queues = sorted({q for _, depths in samples for q in depths})
        top = _nice_ceiling(max((max(d.values(), default=0) for _, d in samples), default=0))
        # From the first sample (at most ``keep`` ago, at least a minute) to now.
        span = max(60.0, now - samples[0][0])

        def x(at: float) -> float:
            return LEFT + PLOT_W * max(0.0, at - (now - span)) / span

        lines = []
        for i, queue in enumerate(queues):
            points = " ".join(
                f"{x(at):.1f},{TOP + PLOT_H * (1 - d.get(queue, 0) / top):.1f}" for at, d in samples
            )
            lines.append(Line(queue, i % self.COLORS, points, samples[-1][1].get(queue, 0)))
        ticks = [Tick(LEFT + PLOT_W * i / 4, _ago(span * (4 - i) / 4)) for i in range(4)]
        ticks.append(Tick(LEFT + PLOT_W, "now", "end"))
        return DepthChart(lines, ticks, _grid(top), len(samples))


def _grid(top: float) -> list[Grid]:
    """A grid line at each tick of a count axis whose top is ``top`` (see
    :func:`_nice_ceiling`): whole numbers, evenly spaced."""
    step = _step(top)
    ticks = round(top / step)
    return [Grid(TOP + PLOT_H * (1 - i / ticks), f"{i * step:,}") for i in range(ticks + 1)]


def _ago(seconds: float) -> str:
    return f"-{seconds / 60:.0f}m" if seconds >= 120 else f"-{seconds:.0f}s"


def _nice_ceiling(value: float) -> float:
    """The top of a count axis reaching ``value``: a whole number of steps of
    :func:`_step`, so every tick is a whole number and the ticks are evenly spaced (5 jobs:
    0, 2, 4, 6; never 0, 2, 5)."""
    step = _step(value)
    return float(step * math.ceil(max(1.0, value) / step))


def _step(value: float) -> int:
    """The smallest step (1, 2 or 5 times a power of ten) that reaches ``value`` (at least
    1) in at most :data:`MAX_INTERVALS` steps. The top it gives has the same step."""
    target = max(1.0, value)
    power = 1
    while True:
        for factor in (1, 2, 5):
            if math.ceil(target / (power * factor)) <= MAX_INTERVALS:
                return power * factor
        power *= 10
