"""Specification of engine.domain.timeframes: parsing, UTC alignment and closed-candle selection."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.timeframes import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    closed_as_of,
    closed_index,
    floor_time,
    is_aligned,
    parse_timeframe,
    timeframe_ms,
)
from tests.engine.timeframe_candles import T0, contiguous

# --- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1m", MINUTE_MS),
        ("5m", 5 * MINUTE_MS),
        ("15m", 15 * MINUTE_MS),
        ("30m", 30 * MINUTE_MS),
        ("1h", HOUR_MS),
        ("2h", 2 * HOUR_MS),
        ("4h", 4 * HOUR_MS),
        ("1d", DAY_MS),
        ("3d", 3 * DAY_MS),
        ("1w", 7 * DAY_MS),
        ("1s", 1_000),
        ("1H", HOUR_MS),
    ],
)
def test_parse_timeframe_returns_length_in_ms(text: str, expected: int) -> None:
    assert parse_timeframe(text) == expected


@pytest.mark.parametrize("garbage", ["", "h", "1", "0m", "-5m", "1.5h", "1x", "m1", "1M", "1 h", "05m"])
def test_parse_timeframe_rejects_garbage_naming_the_value(garbage: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(garbage))):
        parse_timeframe(garbage)


def test_timeframe_ms_accepts_strings_and_positive_lengths_only() -> None:
    assert timeframe_ms("1h") == HOUR_MS
    assert timeframe_ms(HOUR_MS) == HOUR_MS
    with pytest.raises(ValueError, match="-1"):
        timeframe_ms(-1)
    with pytest.raises(ValueError):
        timeframe_ms(True)  # type: ignore[arg-type]


# --- alignment ------------------------------------------------------------------------------------


def test_floor_time_aligns_to_utc_boundaries() -> None:
    assert floor_time(T0 + 5 * HOUR_MS + 59 * MINUTE_MS, "4h") == T0 + 4 * HOUR_MS
    assert floor_time(T0 + 23 * HOUR_MS, "1d") == T0
    assert floor_time(T0 + 4 * HOUR_MS, "4h") == T0 + 4 * HOUR_MS


def test_weekly_buckets_open_on_monday_utc() -> None:
    monday = 1_735_516_800_000  # 2024-12-30 00:00 UTC, a Monday
    assert floor_time(T0, "1w") == monday
    assert floor_time(monday + 7 * DAY_MS - 1, "1w") == monday


def test_floor_time_works_on_arrays() -> None:
    times = np.array([T0, T0 + 1, T0 + HOUR_MS - 1, T0 + HOUR_MS])
    np.testing.assert_array_equal(floor_time(times, "1h"), [T0, T0, T0, T0 + HOUR_MS])


def test_is_aligned_for_scalars_and_arrays() -> None:
    assert is_aligned(T0 + 8 * HOUR_MS, "4h")
    assert not is_aligned(T0 + 9 * HOUR_MS, "4h")
    np.testing.assert_array_equal(is_aligned(np.array([T0, T0 + MINUTE_MS]), "1h"), [True, False])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=4_000_000_000_000),
    st.sampled_from(["1m", "5m", "1h", "4h", "1d", "1w"]),
)
def test_floor_time_is_the_aligned_start_of_the_containing_bucket(time_ms: int, timeframe: str) -> None:
    start = floor_time(time_ms, timeframe)
    assert isinstance(start, int)
    assert start <= time_ms < start + parse_timeframe(timeframe)
    assert is_aligned(start, timeframe)


# --- closed candles -------------------------------------------------------------------------------


def test_closed_as_of_includes_a_candle_closing_exactly_then() -> None:
    four = contiguous("4h", 4)
    assert len(closed_as_of(four, T0 + 4 * HOUR_MS - 1)) == 0
    assert len(closed_as_of(four, T0 + 4 * HOUR_MS)) == 1
    assert len(closed_as_of(four, T0 + 8 * HOUR_MS - 1)) == 1
    assert len(closed_as_of(four, T0 + 100 * HOUR_MS)) == 4


def test_closed_index_points_at_last_closed_higher_candle() -> None:
    four_opens = T0 + HOUR_MS * np.array([0, 4, 8])
    hourly_close_times = T0 + HOUR_MS * np.arange(1, 13)  # closes of the 00:00..11:00 hourly bars
    index = closed_index(four_opens, 4 * HOUR_MS, hourly_close_times)
    assert index.dtype == np.int64
    assert index.tolist() == [-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2]


def test_closed_index_skips_gaps_in_the_higher_timeframe() -> None:
    four_opens = T0 + HOUR_MS * np.array([0, 12])  # the 04:00 and 08:00 candles are missing
    index = closed_index(four_opens, 4 * HOUR_MS, T0 + HOUR_MS * np.array([4, 10, 15, 16]))
    assert index.tolist() == [0, 0, 0, 1]
