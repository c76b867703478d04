"""Specification of engine.analysis.volume: confirmation, spikes, breakouts, divergence and volume strength."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.volume import MAX_RELATIVE_VOLUME, VolumeAnalyzer, VolumeFrame
from engine.domain.models import Candles, SignalType
from tests.shared_data import shared_data_path

T0 = 1_735_689_600_000
HOUR_MS = 3_600_000
FLOAT_COLUMNS = (
    "relative_volume",
    "confirmation_strength",
    "spike_strength",
    "breakout_strength",
    "breakout_level",
    "divergence_strength",
    "divergence_volume_ratio",
    "volume_strength",
)
FLAG_COLUMNS = ("move_direction", "body_direction", "spike", "breakout_direction", "divergence_direction")


def candles_from(close: np.ndarray, volume: np.ndarray, spread: float = 0.5) -> Candles:
    close = np.asarray(close, dtype=np.float64)
    open_ = np.concatenate(([close[0]], close[:-1]))
    return Candles(
        "TEST/USDT",
        "1h",
        T0 + HOUR_MS * np.arange(len(close)),
        open_,
        np.maximum(open_, close) + spread,
        np.minimum(open_, close) - spread,
        close,
        np.asarray(volume, dtype=np.float64),
    )


def random_candles(count: int, seed: int) -> Candles:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, count))
    volume = rng.lognormal(3.0, 0.8, count)
    volume[rng.random(count) < 0.05] = 0.0
    return candles_from(close, volume)


def load_shared(name: str, timeframe: str) -> Candles:
    with gzip.open(shared_data_path(name), "rt") as handle:
        data = np.loadtxt(handle, delimiter=",", skiprows=1, max_rows=3000)
    return Candles(name, timeframe, data[:, 0].astype(np.int64), *(data[:, k] for k in range(1, 6)))


def assert_rows_equal(left: VolumeFrame, left_row: int, right: VolumeFrame, right_row: int) -> None:
    for column in FLOAT_COLUMNS + FLAG_COLUMNS:
        np.testing.assert_array_equal(
            getattr(left, column)[left_row], getattr(right, column)[right_row], err_msg=column
        )


SMALL = VolumeAnalyzer(lookback_periods=10, breakout_lookback=5, divergence_lookback=5, divergence_window=3)


# --- individual measures ---------------------------------------------------------------------------------


def test_relative_volume_compares_with_the_median_of_previous_bars_only() -> None:
    volume = np.r_[np.full(10, 10.0), 40.0]
    frame = SMALL.analyze(candles_from(np.full(11, 100.0), volume))
    assert frame.relative_volume[10] == 4.0  # the 40 is not part of its own baseline
    assert np.isnan(frame.relative_volume[:10]).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=1_000), st.sampled_from([10, 11]))
def test_relative_volume_baseline_is_the_exact_median_of_the_window(seed: int, lookback: int) -> None:
    rng = np.random.default_rng(seed)
    volume = np.round(rng.lognormal(2.0, 1.0, 60), 1)  # rounding makes ties
    volume[rng.random(60) < 0.2] = 0.0
    frame = VolumeAnalyzer(lookback_periods=lookback).analyze(candles_from(np.full(60, 100.0), volume))
    for bar in range(lookback, 60):
        median = np.median(volume[bar - lookback : bar])
        expected = volume[bar] / median if median > 0 else (1.0 if volume[bar] == 0 else MAX_RELATIVE_VOLUME)
        assert frame.relative_volume[bar] == min(expected, MAX_RELATIVE_VOLUME)


def test_confirmation_needs_a_move_in_the_direction_on_above_median_volume() -> None:
    close = np.r_[np.full(10, 100.0), 101.0, 100.0]
    volume = np.r_[np.full(10, 10.0), 15.0, 15.0]
    frame = SMALL.analyze(candles_from(close, volume))
    up_bar = frame.confirmation_at(10, SignalType.LONG)
    assert up_bar.confirmed and up_bar.strength == 1.0  # 1.5x the median = the full-strength ratio
    assert not frame.confirmation_at(10, SignalType.SHORT).confirmed
    assert frame.confirmation_at(11, SignalType.SHORT).confirmed


def test_confirmation_strength_rises_linearly_from_median_volume() -> None:
    volume = np.r_[np.full(10, 10.0), 12.5]
    frame = SMALL.analyze(candles_from(np.r_[np.full(10, 100.0), 101.0], volume))
    assert frame.confirmation_at(10, SignalType.LONG).strength == pytest.approx(0.5)


def test_volume_at_or_below_median_does_not_confirm() -> None:
    frame = SMALL.analyze(candles_from(np.r_[np.full(10, 100.0), 101.0], np.full(11, 10.0)))
    result = frame.confirmation_at(10, SignalType.LONG)
    assert not result.confirmed and result.strength == 0.0


def test_spike_is_flagged_from_the_named_multiple_of_median_volume() -> None:
    volume = np.r_[np.full(10, 10.0), 29.0, 30.0, 90.0]
    frame = SMALL.analyze(candles_from(np.r_[np.full(10, 100.0), 99.0, 98.0, 99.0], volume))
    assert [frame.institutional_at(i).detected for i in (10, 11, 12)] == [False, True, True]
    assert frame.institutional_at(11).strength == pytest.approx(0.5)
    assert frame.institutional_at(12).strength == 1.0
    assert frame.institutional_at(11).direction == -1  # a red bar: selling


def test_breakout_needs_a_close_beyond_the_range_and_heavy_volume() -> None:
    close = np.r_[np.full(10, 100.0), 105.0, 105.0]
    volume = np.r_[np.full(10, 10.0), 20.0, 10.0]
    frame = SMALL.analyze(candles_from(close, volume))
    breakout = frame.breakout_at(10)
    assert breakout.detected and breakout.direction == 1
    assert breakout.level == pytest.approx(100.5)  # the highest high of the previous 5 bars
    assert breakout.strength == pytest.approx(20.0 / 10.0 / 3.0)
    assert not frame.breakout_at(11).detected  # beyond the range again, but on median volume


def test_downside_breakout_has_direction_minus_one() -> None:
    close = np.r_[np.full(10, 100.0), 95.0]
    frame = SMALL.analyze(candles_from(close, np.r_[np.full(10, 10.0), 30.0]))
    assert frame.breakout_at(10).direction == -1
    assert frame.breakout_at(10).level == pytest.approx(99.5)


def test_new_high_on_falling_volume_is_a_bearish_divergence() -> None:
    close = np.r_[np.full(10, 100.0), 101.0, 102.0, 103.0]
    volume = np.r_[np.full(10, 10.0), 5.0, 4.0, 3.0]
    divergence = SMALL.analyze(candles_from(close, volume)).divergence_at(12)
    assert divergence.detected and divergence.direction == -1
    assert divergence.volume_ratio == pytest.approx(4.0 / 10.0)
    assert divergence.strength == 1.0


def test_new_low_on_falling_volume_is_a_bullish_divergence() -> None:
    close = np.r_[np.full(10, 100.0), 99.0, 98.0, 97.0]
    volume = np.r_[np.full(10, 10.0), 8.0, 7.0, 6.0]
    divergence = SMALL.analyze(candles_from(close, volume)).divergence_at(12)
    assert divergence.direction == 1
    assert divergence.strength == pytest.approx(0.8 / (2 * 0.7))


def test_new_high_on_rising_volume_is_not_a_divergence() -> None:
    close = np.r_[np.full(10, 100.0), 101.0, 102.0, 103.0]
    volume = np.r_[np.full(10, 10.0), 12.0, 14.0, 16.0]
    assert not SMALL.analyze(candles_from(close, volume)).divergence_at(12).detected


def test_volume_strength_is_the_percentile_rank_among_previous_bars() -> None:
    volume = np.r_[np.arange(1.0, 11.0), 7.0]  # 6 smaller, 1 tie among 10
    frame = SMALL.analyze(candles_from(np.full(11, 100.0), volume))
    assert frame.volume_strength_at(10).strength == pytest.approx(6.5 / 10)


def test_analyzer_rejects_nonsense_thresholds_naming_them() -> None:
    with pytest.raises(ValueError, match="spike_multiple"):
        VolumeAnalyzer(spike_multiple=0.5)
    with pytest.raises(ValueError, match="divergence_volume_ratio"):
        VolumeAnalyzer(divergence_volume_ratio=1.2)


# --- edge cases ------------------------------------------------------------------------------------------


def test_zero_volume_and_flat_prices_give_finite_values_after_warm_up() -> None:
    volume = np.r_[np.zeros(30), 5.0, np.zeros(5)]
    frame = SMALL.analyze(candles_from(np.full(36, 100.0), volume, spread=0.0))
    for column in FLOAT_COLUMNS:
        values = getattr(frame, column)[SMALL.warmup_bars :]
        assert np.isfinite(values).all(), column
    assert frame.relative_volume[30] == MAX_RELATIVE_VOLUME
    assert frame.relative_volume[29] == 1.0  # 0 against a 0 baseline: ordinary
    assert frame.spike[30] and not frame.breakout[30] and not frame.divergence.any()


def test_nan_appears_only_in_each_measures_warm_up() -> None:
    frame = SMALL.analyze(random_candles(60, seed=3))
    assert np.isnan(frame.relative_volume[:10]).all() and not np.isnan(frame.relative_volume[10:]).any()
    assert np.isnan(frame.breakout_strength[:10]).all() and not np.isnan(frame.breakout_strength[10:]).any()
    assert np.isnan(frame.divergence_strength[:5]).all()
    assert not np.isnan(frame.divergence_strength[5:]).any()


def test_fewer_bars_than_warm_up_give_no_flags_and_not_ready_results() -> None:
    candles = random_candles(4, seed=1)
    frame = VolumeAnalyzer().analyze(candles)
    assert len(frame) == 4
    assert not frame.spike.any() and not frame.breakout.any() and not frame.divergence.any()
    assert np.isnan(frame.volume_strength).all()
    latest = VolumeAnalyzer().confirm_volume(candles, SignalType.LONG)
    assert not latest.ready and latest.strength == 0.0 and not latest.confirmed


def test_empty_candles_analyse_to_an_empty_frame_and_have_no_newest_bar() -> None:
    empty = Candles.empty("TEST/USDT", "1h")
    assert len(VolumeAnalyzer().analyze(empty)) == 0
    with pytest.raises(ValueError, match="no candles"):
        VolumeAnalyzer().detect_breakout(empty)


# --- look-ahead and the live path ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=80), st.integers(min_value=0, max_value=1_000))
def test_results_up_to_a_bar_do_not_depend_on_later_bars(stop: int, seed: int) -> None:
    candles = random_candles(80, seed)
    full = SMALL.analyze(candles)
    part = SMALL.analyze(candles.slice(0, stop))
    for row in range(stop):
        assert_rows_equal(part, row, full, row)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=80), st.integers(min_value=0, max_value=1_000))
def test_newest_bar_path_equals_the_vectorised_frame(stop: int, seed: int) -> None:
    candles = random_candles(80, seed).slice(0, stop)
    full = SMALL.analyze(candles)
    latest = SMALL.analyze_latest(candles)
    assert_rows_equal(latest, -1, full, stop - 1)
    assert SMALL.detect_divergence(candles) == full.divergence_at(stop - 1)
    assert SMALL.detect_breakout(candles) == full.breakout_at(stop - 1)
    assert SMALL.detect_institutional_activity(candles) == full.institutional_at(stop - 1)
    assert SMALL.calculate_volume_strength(candles) == full.volume_strength_at(stop - 1)
    for direction in (SignalType.LONG, SignalType.SHORT):
        assert SMALL.confirm_volume(candles, direction) == full.confirmation_at(stop - 1, direction)


def test_real_btc_data_newest_bar_path_matches_and_strengths_stay_in_unit_range() -> None:
    candles = load_shared("BTC_USDT-5m.csv.gz", "5m")
    analyzer = VolumeAnalyzer()
    frame = analyzer.analyze(candles)
    for column in ("confirmation_strength", "spike_strength", "breakout_strength", "volume_strength"):
        values = getattr(frame, column)[analyzer.warmup_bars :]
        assert ((values >= 0.0) & (values <= 1.0)).all(), column
    assert 0.0 < frame.spike.mean() < 0.25  # spikes are the exception, not the rule
    for stop in (analyzer.warmup_bars, 1000, len(candles)):
        assert_rows_equal(analyzer.analyze_latest(candles.slice(0, stop)), -1, frame, stop - 1)


def test_frame_direction_argument_must_be_long_or_short() -> None:
    frame = SMALL.analyze(random_candles(20, seed=0))
    with pytest.raises(ValueError, match="LONG or SHORT"):
        frame.confirmation_at(15, SignalType.EXIT)
