"""Specification of engine.analysis.buckets: resampling to UTC buckets, vectorised and one base bar at a time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.buckets import IncrementalResampler, resample
from engine.domain.errors import DataException
from engine.domain.models import Candles
from engine.domain.timeframes import DAY_MS, HOUR_MS, floor_time, parse_timeframe
from tests.engine.timeframe_candles import T0, contiguous, load_shared, make_candles

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


# --- the oracle: the aggregation written with numpy's segmented reductions ------------------------------


def reference_resample(candles: Candles, timeframe: str) -> Candles:
    """Each UTC bucket of the data reduced at once, the partial first and last buckets dropped."""
    base_ms, length_ms = parse_timeframe(candles.timeframe), parse_timeframe(timeframe)
    bucket = np.asarray(floor_time(candles.open_time_ms, length_ms))
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [len(bucket)])) - 1
    keep = np.ones(len(starts), dtype=bool)
    keep[0] &= bool(candles.open_time_ms[0] == bucket[0])
    keep[-1] &= bool(candles.open_time_ms[-1] + base_ms >= bucket[-1] + length_ms)
    starts, ends = starts[keep], ends[keep]
    return Candles(candles.symbol, timeframe, bucket[starts], candles.open[starts],
                   np.array([candles.high[a : b + 1].max() for a, b in zip(starts, ends, strict=True)]),
                   np.array([candles.low[a : b + 1].min() for a, b in zip(starts, ends, strict=True)]),
                   candles.close[ends],
                   np.array([candles.volume[a : b + 1].sum() for a, b in zip(starts, ends, strict=True)]))


def _gappy(seed: int, count: int, start_hour: int, holes: list[tuple[int, int]]) -> Candles:
    keep = np.ones(count, dtype=bool)
    for start, length in holes:
        keep[start : start + length] = False
    keep[-1] = True  # never empty
    return make_candles("1h", (T0 + start_hour * HOUR_MS + HOUR_MS * np.arange(count))[keep], seed)


GAPPY = st.builds(_gappy, st.integers(0, 99), st.integers(1, 200), st.integers(0, 30),
                  st.lists(st.tuples(st.integers(0, 199), st.integers(1, 50)), max_size=4))
TARGETS = st.sampled_from(["1h", "2h", "4h", "1d", "1w"])


def _assert_same_candles(actual: Candles, expected: Candles) -> None:
    for column in ("open_time_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(actual, column), getattr(expected, column), err_msg=column)


@settings(max_examples=80, deadline=None)
@given(hourly=GAPPY, timeframe=TARGETS)
def test_resample_equals_the_segmented_reduction_oracle(hourly: Candles, timeframe: str) -> None:
    expected = reference_resample(hourly, timeframe)
    actual = resample(hourly, timeframe)
    _assert_same_candles(actual, Candles(expected.symbol, timeframe, expected.open_time_ms, expected.open,
                                         expected.high, expected.low, expected.close, actual.volume))
    np.testing.assert_allclose(actual.volume, expected.volume, rtol=1e-12)  # summation order may differ


@settings(max_examples=80, deadline=None)
@given(hourly=GAPPY, timeframe=TARGETS, cut=st.integers(0, 200))
def test_resampling_continued_bar_by_bar_gives_the_whole_history_s_candles(
    hourly: Candles, timeframe: str, cut: int
) -> None:
    cut = min(cut, len(hourly))
    resampler = IncrementalResampler("1h", timeframe)
    pieces = [resampler.prime(hourly.slice(0, cut))]
    for t in range(cut, len(hourly)):
        pieces.append(resampler.update(int(hourly.open_time_ms[t]), *(float(getattr(hourly, column)[t])
                                       for column in ("open", "high", "low", "close", "volume"))))
    columns = ("open_time_ms", "open", "high", "low", "close", "volume")
    joined = Candles(hourly.symbol, timeframe, *(np.concatenate([getattr(p, c) for p in pieces]) for c in columns))
    _assert_same_candles(joined, resample(hourly, timeframe))


def test_a_bar_after_a_gap_closes_the_bucket_the_gap_ended_and_its_own() -> None:
    hourly = make_candles("1h", T0 + HOUR_MS * np.array([0, 1, 7]))  # 00:00 bucket left early; 07:00 ends 04:00's
    resampler = IncrementalResampler("1h", "4h")
    resampler.prime(hourly.slice(0, 2))
    closed = resampler.update(int(hourly.open_time_ms[2]), *(float(getattr(hourly, c)[2])
                              for c in ("open", "high", "low", "close", "volume")))
    assert closed.open_time_ms.tolist() == [T0, T0 + 4 * HOUR_MS]
    assert closed.close.tolist() == [hourly.close[1], hourly.close[2]]


def test_weekly_buckets_open_on_monday() -> None:
    daily = contiguous("1d", 21, start_ms=T0 - 2 * DAY_MS)  # 2024-12-30, a Monday
    weekly = resample(daily, "1w")
    assert weekly.open_time_ms.tolist() == [T0 - 2 * DAY_MS + 7 * DAY_MS * k for k in range(3)]
