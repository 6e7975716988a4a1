from datetime import timedelta

import pytest

from glasswork.jobs.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        (" 10M ", 600.0),
        ("45", 45.0),
        (90, 90.0),
        (2.5, 2.5),
        (timedelta(minutes=3), 180.0),
    ],
)
def test_parse_duration_reads_units_numbers_and_timedeltas(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "ten minutes", "10x", "m10", "1h-30m"])
def test_unreadable_duration_is_a_value_error_with_examples(bad):
    with pytest.raises(ValueError, match="1h30m"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [-1, timedelta(seconds=-5), "-10s"])
def test_negative_duration_is_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [None, True, [1]])
def test_duration_of_wrong_type_is_a_type_error(bad):
    with pytest.raises(TypeError):
        parse_duration(bad)
