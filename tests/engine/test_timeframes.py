"""Specification of engine.domain.timeframes: parsing, UTC alignment, resampling and closed-candle selection."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.errors import DataException
from engine.domain.models import Candles
from engine.domain.timeframes import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    closed_as_of,
    closed_index,
    floor_time,
    is_aligned,
    parse_timeframe,
    resample,
    timeframe_ms,
)
from tests.shared_data import shared_data_path

T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC, a midnight and a 4h boundary


def make_candles(timeframe: str, open_times: np.ndarray, seed: int = 0) -> Candles:
    """Synthetic, internally consistent candles at the given open times."""
    rng = np.random.default_rng(seed)
    n = len(open_times)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) + rng.uniform(0.0, 1.0, n)
    low = np.minimum(open_, close) - rng.uniform(0.0, 1.0, n)
    volume = rng.uniform(1.0, 10.0, n)
    return Candles(
        "TEST/USDT", timeframe, np.asarray(open_times, dtype=np.int64), open_, high, low, close, volume
    )


def contiguous(timeframe: str, count: int, start_ms: int = T0, seed: int = 0) -> Candles:
    return make_candles(timeframe, start_ms + parse_timeframe(timeframe) * np.arange(count), seed)


def load_shared(name: str, timeframe: str) -> Candles:
    path = shared_data_path(name)
    with gzip.open(path, "rt") as handle:
        data = np.loadtxt(handle, delimiter=",", skiprows=1)
    return Candles(name, timeframe, data[:, 0].astype(np.int64), *(data[:, k] for k in range(1, 6)))


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


# --- resampling -----------------------------------------------------------------------------------


def test_resample_1h_to_4h_buckets_open_at_00_04_08_utc() -> None:
    hourly = contiguous("1h", 12)
    four = resample(hourly, "4h")
    np.testing.assert_array_equal(four.open_time_ms, T0 + HOUR_MS * np.array([0, 4, 8]))
    assert four.timeframe == "4h"
    for k in range(3):
        rows = slice(4 * k, 4 * k + 4)
        assert four.open[k] == hourly.open[4 * k]
        assert four.high[k] == hourly.high[rows].max()
        assert four.low[k] == hourly.low[rows].min()
        assert four.close[k] == hourly.close[4 * k + 3]
        assert four.volume[k] == pytest.approx(hourly.volume[rows].sum(), rel=1e-12)


def test_resample_1h_to_1d_starts_each_day_at_midnight_utc() -> None:
    hourly = contiguous("1h", 24 * 3, start_ms=T0)
    daily = resample(hourly, "1d")
    np.testing.assert_array_equal(daily.open_time_ms, [T0, T0 + DAY_MS, T0 + 2 * DAY_MS])
    assert daily.close[1] == hourly.close[47]


def test_resample_1m_to_1h_aggregates_sixty_bars() -> None:
    minutes = contiguous("1m", 180)
    hourly = resample(minutes, "1h")
    assert len(hourly) == 3
    assert hourly.high[2] == minutes.high[120:180].max()
    assert hourly.open[1] == minutes.open[60]


def test_resample_drops_partial_last_bucket_by_default() -> None:
    hourly = contiguous("1h", 10)  # 00..09: the 08:00 4h bucket has only 2 of its 4 bars
    assert resample(hourly, "4h").open_time_ms.tolist() == [T0, T0 + 4 * HOUR_MS]
    with_partial = resample(hourly, "4h", include_partial=True)
    assert with_partial.open_time_ms.tolist() == [T0, T0 + 4 * HOUR_MS, T0 + 8 * HOUR_MS]
    assert with_partial.close[2] == hourly.close[9]
    assert with_partial.high[2] == hourly.high[8:10].max()


def test_resample_drops_a_first_bucket_that_started_before_the_data() -> None:
    hourly = contiguous("1h", 10, start_ms=T0 + 2 * HOUR_MS)  # 02..11
    assert resample(hourly, "4h").open_time_ms.tolist() == [T0 + 4 * HOUR_MS, T0 + 8 * HOUR_MS]
    assert resample(hourly, "4h", include_partial=True).open_time_ms.tolist() == [
        T0,
        T0 + 4 * HOUR_MS,
        T0 + 8 * HOUR_MS,
    ]


def test_resample_builds_a_bucket_with_missing_bars_from_those_present() -> None:
    times = T0 + HOUR_MS * np.array([0, 1, 3, 4, 5, 6, 7, 12, 13, 14, 15])  # 02 missing, 08..11 missing
    hourly = make_candles("1h", times)
    four = resample(hourly, "4h")
    assert four.open_time_ms.tolist() == [T0, T0 + 4 * HOUR_MS, T0 + 12 * HOUR_MS]
    assert four.high[0] == hourly.high[:3].max()
    assert four.close[0] == hourly.close[2]
    assert four.volume[0] == pytest.approx(hourly.volume[:3].sum())


def test_resample_is_identity_when_target_equals_source() -> None:
    hourly = contiguous("1h", 7)
    same = resample(hourly, "1h")
    for column in ("open_time_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(same, column), getattr(hourly, column))


def test_resample_of_empty_and_too_short_data_is_empty() -> None:
    assert len(resample(Candles.empty("X", "1h"), "4h")) == 0
    assert len(resample(contiguous("1h", 3), "4h")) == 0


def test_resample_refuses_a_lower_or_non_multiple_target() -> None:
    with pytest.raises(ValueError, match="multiple"):
        resample(contiguous("1h", 8), "30m")
    with pytest.raises(ValueError, match="multiple"):
        resample(contiguous("1h", 8), "90m")


def test_resample_refuses_unsorted_open_times() -> None:
    with pytest.raises(DataException, match="increasing"):
        resample(make_candles("1h", T0 + HOUR_MS * np.array([0, 2, 1, 3])), "4h")


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=7))
def test_resampling_a_prefix_gives_a_prefix_of_the_full_resample(stop: int, start_hour: int) -> None:
    hourly = contiguous("1h", 60, start_ms=T0 + start_hour * HOUR_MS, seed=stop)
    full = resample(hourly, "4h")
    part = resample(hourly.slice(0, stop), "4h")
    np.testing.assert_array_equal(part.open_time_ms, full.open_time_ms[: len(part)])
    np.testing.assert_array_equal(part.close, full.close[: len(part)])
    np.testing.assert_array_equal(part.high, full.high[: len(part)])


def test_resampling_real_5m_reproduces_binance_1h_candles() -> None:
    five = load_shared("BTC_USDT-5m.csv.gz", "5m")
    hourly = load_shared("BTC_USDT-1h.csv.gz", "1h")
    mine = resample(five, "1h")
    common, mine_rows, real_rows = np.intersect1d(mine.open_time_ms, hourly.open_time_ms, return_indices=True)
    assert len(common) > 12_000
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(mine, column)[mine_rows], getattr(hourly, column)[real_rows])
    np.testing.assert_allclose(mine.volume[mine_rows], hourly.volume[real_rows], rtol=1e-12)


# --- closed candles -------------------------------------------------------------------------------


def test_closed_as_of_includes_a_candle_closing_exactly_then() -> None:
    four = resample(contiguous("1h", 16), "4h")
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
