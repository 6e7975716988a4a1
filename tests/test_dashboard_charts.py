"""The queues page's charts as geometry: count axes whose ticks are whole numbers, evenly
spaced, reaching the largest count (never 0 / 2 / 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

pytest.importorskip("starlette")

from glasswork.dashboard.charts import DepthSampler, Grid, outcome_chart
from glasswork.jobs.drivers.records import OutcomeCount, QueueStats

NOW = datetime(2024, 5, 1, 12, 30, 20, tzinfo=UTC)


def labels(grid: list[Grid]) -> list[int]:
    return [int(g.label.replace(",", "")) for g in grid]


def assert_even_whole_ticks(grid: list[Grid], reaching: int) -> None:
    values = labels(grid)
    steps = {b - a for a, b in pairwise(values)}
    assert values[0] == 0 and len(steps) == 1 and values[-1] >= reaching, values
    gaps = {round(a.y - b.y, 6) for a, b in pairwise(grid)}
    assert len(gaps) == 1, gaps  # drawn evenly spaced too
    assert 2 <= len(values) <= 5


@pytest.mark.parametrize("most", [1, 2, 3, 5, 7, 9, 11, 17, 61, 99, 101, 1234, 98765])
def test_outcome_axis_ticks_are_whole_evenly_spaced_numbers(most: int) -> None:
    minute = NOW.replace(second=0)
    history = [OutcomeCount(minute, "q", "job", "done", most)]
    chart = outcome_chart(history, NOW)
    assert_even_whole_ticks(chart.grid, most)


def test_five_runs_are_charted_on_0_2_4_6() -> None:
    history = [OutcomeCount(NOW.replace(second=0), "q", "job", "done", 5)]
    assert labels(outcome_chart(history, NOW).grid) == [0, 2, 4, 6]


def test_depth_axis_ticks_are_whole_evenly_spaced_numbers() -> None:
    sampler = DepthSampler(every=1)
    start = NOW.timestamp()
    for i, depth in enumerate((0, 5, 3)):
        sampler.add([QueueStats("emails", ready=depth)], now=start + i * 2)
    chart = sampler.chart(now=start + 4)
    assert chart is not None
    assert labels(chart.grid) == [0, 2, 4, 6]
    assert_even_whole_ticks(chart.grid, 5)


def test_an_empty_hour_has_an_axis_of_0_and_1() -> None:
    chart = outcome_chart([], NOW - timedelta(hours=2))
    assert labels(chart.grid) == [0, 1]
