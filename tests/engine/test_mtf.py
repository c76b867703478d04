"""Specification of engine.analysis.mtf: per-timeframe trends, confluence rules and closed-candle visibility."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.buckets import resample
from engine.analysis.indicators import magic_trend
from engine.analysis.mtf import MtfFrame, MultiTimeframeAnalyzer
from engine.domain.models import Candles, PositionSide, SignalType
from engine.domain.timeframes import HOUR_MS
from tests.shared_data import shared_data_path

T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC
LONG, SHORT = SignalType.LONG, SignalType.SHORT
FAST = dict(cci_period=5, atr_period=3, ema_fast=3, ema_slow=8)


def candles_from(close: np.ndarray, timeframe: str = "1h", start_ms: int = T0, step_ms: int = HOUR_MS) -> Candles:
    close = np.asarray(close, dtype=np.float64)
    open_ = np.concatenate(([close[0]], close[:-1]))
    return Candles(
        "TEST/USDT",
        timeframe,
        start_ms + step_ms * np.arange(len(close)),
        open_,
        np.maximum(open_, close) + 0.5,
        np.minimum(open_, close) - 0.5,
        close,
        np.full(len(close), 10.0),
    )


def random_walk(count: int, seed: int, start_ms: int = T0) -> Candles:
    rng = np.random.default_rng(seed)
    return candles_from(1000.0 + np.cumsum(rng.normal(0.0, 5.0, count)), start_ms=start_ms)


def load_shared(name: str, timeframe: str) -> Candles:
    with gzip.open(shared_data_path(name), "rt") as handle:
        data = np.loadtxt(handle, delimiter=",", skiprows=1)
    return Candles(name, timeframe, data[:, 0].astype(np.int64), *(data[:, k] for k in range(1, 6)))


def assert_frames_agree_up_to(part: MtfFrame, full: MtfFrame, stop: int) -> None:
    for timeframe in full.timeframes:
        np.testing.assert_array_equal(part.trends[timeframe], full.trends[timeframe][:stop], err_msg=timeframe)
    np.testing.assert_array_equal(part.long_multiplier, full.long_multiplier[:stop])
    np.testing.assert_array_equal(part.short_multiplier, full.short_multiplier[:stop])
    np.testing.assert_array_equal(part.long_conflicting, full.long_conflicting[:stop])


# --- confluence rules ------------------------------------------------------------------------------------

ANALYZER = MultiTimeframeAnalyzer()


@pytest.mark.parametrize(
    ("trends", "aligned", "opposed", "multiplier", "conflicting"),
    [
        ((1, 1, 1), 3, 0, 1.0, False),
        ((1, 1, 0), 2, 0, 0.75, False),
        ((1, -1, 1), 2, 1, 0.75, False),
        ((0, 1, 0), 1, 0, 0.5, False),
        ((1, -1, 0), 1, 1, 0.0, True),
        ((0, 0, -1), 0, 1, 0.0, True),
        ((-1, -1, 1), 1, 2, 0.0, True),
        ((0, 0, 0), 0, 0, 0.0, False),
    ],
)
def test_long_confluence_multiplier_follows_the_alignment_table(
    trends: tuple[int, int, int], aligned: int, opposed: int, multiplier: float, conflicting: bool
) -> None:
    result = ANALYZER.analyze_confluence(dict(zip(("1h", "4h", "1d"), trends, strict=True)), LONG)
    assert (result.aligned, result.opposed) == (aligned, opposed)
    assert result.multiplier == pytest.approx(multiplier)
    assert result.conflicting is conflicting


def test_short_confluence_mirrors_long() -> None:
    result = ANALYZER.analyze_confluence({"1h": -1, "4h": -1, "1d": 1}, SHORT)
    assert (result.aligned, result.opposed, result.multiplier) == (2, 1, 0.75)


def test_missing_timeframes_count_as_neutral() -> None:
    result = ANALYZER.analyze_confluence({"1h": 1}, LONG)
    assert result.trends == {"1h": 1, "4h": 0, "1d": 0}
    assert result.multiplier == 0.5


def test_signal_strength_is_scaled_by_the_multiplier() -> None:
    confluence = ANALYZER.analyze_confluence({"1h": 1, "4h": 1, "1d": 0}, LONG)
    assert ANALYZER.calculate_signal_strength(0.8, confluence) == pytest.approx(0.6)
    conflicting = ANALYZER.analyze_confluence({"1h": 1, "4h": -1, "1d": -1}, LONG)
    assert ANALYZER.calculate_signal_strength(0.9, conflicting) == 0.0
    with pytest.raises(ValueError, match="ratio"):
        ANALYZER.calculate_signal_strength(1.5, confluence)


def test_position_is_reduced_when_the_timeframes_turn_against_it() -> None:
    against_long = ANALYZER.analyze_confluence({"1h": 1, "4h": -1, "1d": -1}, LONG)
    assert ANALYZER.should_reduce_position(PositionSide.LONG, against_long)
    assert not ANALYZER.should_reduce_position(PositionSide.SHORT, against_long)
    mostly_with_long = ANALYZER.analyze_confluence({"1h": 1, "4h": 1, "1d": -1}, SHORT)
    assert not ANALYZER.should_reduce_position(PositionSide.LONG, mostly_with_long)


def test_two_timeframes_scale_from_single_to_full_alignment() -> None:
    pair = MultiTimeframeAnalyzer(timeframes=("4h", "1h"))
    assert pair.timeframes == ("1h", "4h")  # sorted by length
    assert pair.analyze_confluence({"1h": 1, "4h": 0}, LONG).multiplier == 0.5
    assert pair.analyze_confluence({"1h": 1, "4h": 1}, LONG).multiplier == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(timeframes=()), "at least one"),
        (dict(timeframes=("1h", "60m")), "distinct"),
        (dict(timeframes=("1h", "bogus")), "bogus"),
        (dict(trend_method="rsi"), "trend_method"),
        (dict(ema_fast=50, ema_slow=20), "ema_fast"),
        (dict(single_alignment_multiplier=1.5), "ratios"),
    ],
)
def test_analyzer_rejects_bad_settings_naming_them(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MultiTimeframeAnalyzer(**kwargs)  # type: ignore[arg-type]


def test_direction_must_be_long_or_short() -> None:
    with pytest.raises(ValueError, match="LONG or SHORT"):
        ANALYZER.analyze_confluence({}, SignalType.EXIT)


# --- trend definitions -----------------------------------------------------------------------------------


def test_ema_trend_is_up_above_the_band_down_below_and_neutral_inside() -> None:
    analyzer = MultiTimeframeAnalyzer(trend_method="ema", neutral_band_pct=0.5, **FAST)
    rising = analyzer.trend(candles_from(np.linspace(100.0, 200.0, 40)))
    falling = analyzer.trend(candles_from(np.linspace(200.0, 100.0, 40)))
    drifting = analyzer.trend(candles_from(100.0 + 0.001 * np.arange(40)))
    assert (rising[:7] == 0).all() and (rising[10:] == 1).all()  # neutral in the slow ema's warm-up
    assert (falling[10:] == -1).all()
    assert (drifting == 0).all()  # gap far inside the 0.5 % band


def test_magic_trend_method_is_the_magic_trend_direction() -> None:
    candles = random_walk(200, seed=5)
    analyzer = MultiTimeframeAnalyzer(trend_method="magic_trend", **FAST)
    expected = magic_trend(candles.high, candles.low, candles.close, 5, 3, 1.0).direction
    np.testing.assert_array_equal(analyzer.trend(candles), expected)


def test_combined_trend_is_neutral_where_magic_trend_and_ema_disagree() -> None:
    candles = random_walk(300, seed=9)
    both = MultiTimeframeAnalyzer(**FAST).trend(candles)
    magic = MultiTimeframeAnalyzer(trend_method="magic_trend", **FAST).trend(candles)
    emas = MultiTimeframeAnalyzer(trend_method="ema", **FAST).trend(candles)
    np.testing.assert_array_equal(both, np.where(magic == emas, magic, 0))
    assert (both == 0).any() and (both != 0).any()


# --- visibility of higher-timeframe candles --------------------------------------------------------------


def four_hour_history_ending_with_a_crash() -> Candles:
    """Rising 4h candles up to 20:00 on Dec 31, then the 00:00 Jan 1 candle crashes."""
    closes = np.r_[np.linspace(100.0, 200.0, 30), 50.0, 50.0]
    return candles_from(closes, "4h", start_ms=T0 - 30 * 4 * HOUR_MS, step_ms=4 * HOUR_MS)


def test_4h_candle_is_invisible_until_it_has_closed_at_the_base_bar_close() -> None:
    analyzer = MultiTimeframeAnalyzer(timeframes=("1h", "4h"), trend_method="ema", **FAST)
    four = four_hour_history_ending_with_a_crash()
    per_candle = analyzer.trend(four)
    assert (per_candle[29], per_candle[30]) == (1, -1)  # 20:00 candle up, 00:00 candle down
    base = candles_from(np.full(8, 50.0))  # 1h bars 00:00 .. 07:00 on Jan 1
    frame = analyzer.prepare(base, {"4h": four})
    # the 01:00 bar closes at 02:00: the 00:00 4h candle is still open, the 20:00 one is the latest closed
    assert frame.trends["4h"][1] == 1
    assert frame.trends["4h"][2] == 1
    # the 03:00 bar closes at 04:00, exactly when the 00:00 4h candle closes
    assert frame.trends["4h"][3] == -1
    # the 07:00 bar closes at 08:00, when the 04:00 4h candle closes: it becomes the visible one
    assert frame.trends["4h"][6] == per_candle[30]
    assert frame.trends["4h"][7] == per_candle[31]


def test_unfinished_higher_candle_supplied_by_a_feed_stays_invisible() -> None:
    analyzer = MultiTimeframeAnalyzer(timeframes=("1h", "4h"), trend_method="ema", **FAST)
    four = four_hour_history_ending_with_a_crash()  # its last candle (04:00) is still running at 05:00
    base = candles_from(np.full(6, 50.0))  # up to the 05:00 bar, which closes at 06:00
    assert analyzer.latest_trends(base, {"4h": four})["4h"] == analyzer.trend(four)[30]
    assert analyzer.prepare(base, {"4h": four}).trends["4h"][-1] == analyzer.trend(four)[30]


def test_resampled_4h_trend_appears_on_the_bar_that_completes_the_bucket() -> None:
    analyzer = MultiTimeframeAnalyzer(timeframes=("1h", "4h"), **FAST)
    base = random_walk(400, seed=2)
    four = resample(base, "4h")
    per_candle = analyzer.trend(four)
    frame = analyzer.prepare(base)
    for bar in range(3, 400, 4):  # 03:00, 07:00, ... close the buckets
        bucket = (bar - 3) // 4
        assert frame.trends["4h"][bar] == per_candle[bucket]
        if bar + 1 < 400:
            assert frame.trends["4h"][bar + 1] == per_candle[bucket]  # unchanged until the next close
    assert frame.trends["1h"].tolist() == analyzer.trend(base).tolist()


def test_a_timeframe_lower_than_the_base_is_refused() -> None:
    with pytest.raises(ValueError, match="lower"):
        MultiTimeframeAnalyzer(timeframes=("15m", "1h")).prepare(random_walk(10, seed=0))


# --- vectorised vs single-bar and live paths -------------------------------------------------------------


def test_frame_multipliers_equal_the_typed_confluence_per_bar() -> None:
    analyzer = MultiTimeframeAnalyzer(**FAST)
    frame = analyzer.prepare(random_walk(600, seed=4))
    for bar in range(len(frame)):
        for direction in (LONG, SHORT):
            result = analyzer.confluence_at(frame, bar, direction)
            assert result.multiplier == frame.multiplier_for(direction)[bar]
            assert result.conflicting == frame.conflicting_for(direction)[bar]


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=1, max_value=500), st.integers(0, 23), st.integers(0, 1000))
def test_results_up_to_a_bar_do_not_depend_on_later_bars(stop: int, start_hour: int, seed: int) -> None:
    analyzer = MultiTimeframeAnalyzer(**FAST)
    base = random_walk(500, seed, start_ms=T0 + start_hour * HOUR_MS)
    full = analyzer.prepare(base)
    assert_frames_agree_up_to(analyzer.prepare(base.slice(0, stop)), full, stop)


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=1, max_value=500), st.integers(0, 1000))
def test_newest_bar_path_equals_the_vectorised_frame(stop: int, seed: int) -> None:
    analyzer = MultiTimeframeAnalyzer(**FAST)
    base = random_walk(500, seed).slice(0, stop)
    frame = analyzer.prepare(base)
    assert analyzer.latest_trends(base) == frame.trends_at(stop - 1)
    for direction in (LONG, SHORT):
        assert analyzer.confluence_latest(base, direction) == analyzer.confluence_at(frame, stop - 1, direction)


def test_newest_bar_path_memo_follows_new_closed_candles() -> None:
    analyzer = MultiTimeframeAnalyzer(**FAST)
    base = random_walk(600, seed=11)
    frame = analyzer.prepare(base)
    for stop in range(450, 600):  # walk bar by bar as live would, through several 4h and 1d closes
        assert analyzer.latest_trends(base.slice(0, stop)) == frame.trends_at(stop - 1)


# --- edge cases and real data ----------------------------------------------------------------------------


def test_fewer_bars_than_warm_up_give_neutral_trends_and_no_trade() -> None:
    frame = MultiTimeframeAnalyzer().prepare(random_walk(5, seed=1))
    assert all((frame.trends[tf] == 0).all() for tf in frame.timeframes)
    assert (frame.long_multiplier == 0).all() and not frame.long_conflicting.any()


def test_empty_base_gives_an_empty_frame_and_no_newest_bar() -> None:
    empty = Candles.empty("TEST/USDT", "1h")
    assert len(MultiTimeframeAnalyzer().prepare(empty)) == 0
    with pytest.raises(ValueError, match="no candles"):
        MultiTimeframeAnalyzer().latest_trends(empty)


def test_flat_prices_are_neutral_without_errors() -> None:
    frame = MultiTimeframeAnalyzer(**FAST).prepare(candles_from(np.full(300, 100.0)))
    assert all((frame.trends[tf] == 0).all() for tf in frame.timeframes)


def test_gaps_in_the_base_data_still_align_by_time() -> None:
    analyzer = MultiTimeframeAnalyzer(timeframes=("1h", "4h"), **FAST)
    full = random_walk(300, seed=8)
    keep = np.ones(300, dtype=bool)
    keep[101:103] = False  # two missing hours inside a 4h bucket
    gappy = Candles(
        full.symbol, "1h", *(getattr(full, c)[keep] for c in ("open_time_ms", "open", "high", "low", "close", "volume"))
    )
    frame = analyzer.prepare(gappy)
    per_candle = analyzer.trend(resample(gappy, "4h"))
    bar_closing_0400_bucket_25 = int(np.searchsorted(gappy.open_time_ms, T0 + 103 * HOUR_MS))
    assert frame.trends["4h"][bar_closing_0400_bucket_25] == per_candle[25]
    assert frame.trends["4h"][bar_closing_0400_bucket_25 - 1] == per_candle[24]


def test_real_btc_frame_uses_only_the_design_multipliers_and_matches_the_live_path() -> None:
    base = load_shared("BTC_USDT-1h.csv.gz", "1h")
    analyzer = MultiTimeframeAnalyzer()
    frame = analyzer.prepare(base)
    assert set(np.unique(frame.long_multiplier)) <= {0.0, 0.5, 0.75, 1.0}
    assert (frame.long_multiplier == 1.0).any() and (frame.short_multiplier == 1.0).any()
    for stop in (100, 5_000, len(base)):
        assert analyzer.latest_trends(base.slice(0, stop)) == frame.trends_at(stop - 1)
