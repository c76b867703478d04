"""Specification of engine.analysis.indicators: definitions on hand-made cases, no look-ahead, edge cases."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis import indicators as ind

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _ohlc(closes: list[float], spreads: list[float]) -> Arrays:
    close = np.asarray(closes, dtype=float)
    spread = np.asarray(spreads[: len(closes)] + [1.0] * (len(closes) - len(spreads)), dtype=float)
    return close + spread, close - spread, close


@st.composite
def price_series(draw: st.DrawFn, min_size: int = 1, max_size: int = 90) -> Arrays:
    steps = draw(st.lists(st.floats(-3.0, 3.0), min_size=min_size, max_size=max_size))
    spreads = draw(st.lists(st.floats(0.0, 2.0), min_size=len(steps), max_size=len(steps)))
    # Flat stretches (repeated closes, zero ranges) are common in real low-volume data: include them.
    closes = list(100.0 + np.cumsum(np.round(steps, 1)))
    return _ohlc(closes, spreads)


# Every indicator as f(high, low, close) -> tuple of arrays, for the generic properties.
INDICATORS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, ...]]] = {
    "true_range": lambda hi, lo, cl: (ind.true_range(hi, lo, cl), ind.true_range(hi, lo, cl, handle_na=True)),
    "sma": lambda hi, lo, cl: (ind.sma(cl, 5),),
    "ema": lambda hi, lo, cl: (ind.ema(cl, 5),),
    "rma": lambda hi, lo, cl: (ind.rma(cl, 7),),
    "stdev": lambda hi, lo, cl: (ind.stdev(cl, 5),),
    "linreg": lambda hi, lo, cl: (ind.linreg(cl, 6),),
    "highest": lambda hi, lo, cl: (ind.highest(hi, 4), ind.lowest(lo, 4)),
    "atr": lambda hi, lo, cl: (ind.atr(hi, lo, cl, 5),),
    "cci": lambda hi, lo, cl: (ind.cci(cl, 8),),
    "bollinger": lambda hi, lo, cl: tuple(vars(ind.bollinger(cl, 6)).values()),
    "keltner": lambda hi, lo, cl: tuple(vars(ind.keltner(hi, lo, cl, 6)).values()),
    "squeeze": lambda hi, lo, cl: tuple(vars(ind.squeeze_momentum(hi, lo, cl, 6, 2.0, 5, 1.5)).values()),
    "magic_trend": lambda hi, lo, cl: tuple(vars(ind.magic_trend(hi, lo, cl, 6, 3)).values()),
}
RECURSIVE = {"ema", "rma", "atr"}


def _same_bits(actual: np.ndarray, expected: np.ndarray) -> bool:
    """Equal to the last bit (float64 compared as int64, so NaNs count too)."""
    if expected.dtype == np.float64:
        return np.array_equal(actual.view(np.int64), expected.view(np.int64))
    return np.array_equal(actual, expected)


@pytest.mark.parametrize("name", sorted(INDICATORS))
@settings(max_examples=40, deadline=None)
@given(data=price_series(min_size=1), cut=st.integers(0, 200))
def test_values_up_to_t_do_not_depend_on_later_bars(name: str, data: Arrays, cut: int) -> None:
    high, low, close = data
    t = cut % len(close)
    full = INDICATORS[name](high, low, close)
    truncated = INDICATORS[name](high[: t + 1], low[: t + 1], close[: t + 1])
    for whole, prefix in zip(full, truncated, strict=True):
        assert _same_bits(prefix, whole[: t + 1])


@pytest.mark.parametrize("name", sorted(INDICATORS))
@pytest.mark.parametrize("length", [0, 1, 3])
def test_fewer_bars_than_warmup_give_warmup_values_without_error(name: str, length: int) -> None:
    high, low, close = _ohlc([100.0 + i for i in range(length)], [])
    for output in INDICATORS[name](high, low, close):
        assert len(output) == length
        if output.dtype == np.float64 and name not in ("true_range", "highest"):
            assert np.isnan(output).all()


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_flat_prices_give_no_exception_and_no_infinities(name: str) -> None:
    high = low = close = np.full(80, 42.4242)
    for output in INDICATORS[name](high, low, close):
        assert not np.isinf(output.astype(float)).any()


def test_true_range_first_bar_is_nan_unless_handle_na() -> None:
    high, low, close = np.array([10.0, 12.0, 11.0]), np.array([8.0, 10.5, 7.0]), np.array([9.0, 11.0, 8.0])
    np.testing.assert_array_equal(ind.true_range(high, low, close), [np.nan, 3.0, 4.0])
    np.testing.assert_array_equal(ind.true_range(high, low, close, handle_na=True), [2.0, 3.0, 4.0])


def test_sma_is_the_mean_of_the_last_n_values() -> None:
    np.testing.assert_allclose(ind.sma([1.0, 2.0, 6.0, 7.0], 3), [np.nan, np.nan, 3.0, 5.0])


def test_sma_window_holding_a_nan_is_nan() -> None:
    out = ind.sma([1.0, np.nan, 3.0, 4.0, 5.0, 6.0], 2)
    np.testing.assert_array_equal(np.isnan(out), [True, True, True, False, False, False])


def test_ema_seeds_with_sma_then_recurses_with_alpha_two_over_n_plus_one() -> None:
    out = ind.ema([2.0, 4.0, 6.0, 10.0], 3)
    seed = 4.0
    assert np.isnan(out[:2]).all()
    assert out[2] == pytest.approx(seed)
    assert out[3] == pytest.approx(0.5 * 10.0 + 0.5 * seed)


def test_rma_seeds_after_leading_nans_with_sma_of_first_n_valid_values() -> None:
    out = ind.rma([np.nan, np.nan, 3.0, 6.0, 9.0, 3.0], 3)
    assert np.isnan(out[:4]).all()
    assert out[4] == pytest.approx(6.0)
    assert out[5] == pytest.approx((6.0 * 2 + 3.0) / 3)


def test_rma_stays_nan_after_a_nan_that_follows_the_seed() -> None:
    out = ind.rma([1.0, 2.0, 3.0, np.nan, 5.0], 2)
    assert not np.isnan(out[1:3]).any()
    assert np.isnan(out[3:]).all()


def test_long_recursion_agrees_with_a_sequential_loop_to_1e12() -> None:
    rng = np.random.default_rng(3)
    source = 50_000 + np.cumsum(rng.normal(0, 50, 5000))
    expected, value = np.full(5000, np.nan), float(np.mean(source[:14]))
    expected[13] = value
    for t in range(14, 5000):
        value = (value * 13 + source[t]) / 14
        expected[t] = value
    np.testing.assert_allclose(ind.rma(source, 14), expected, rtol=1e-12)


def test_atr_first_value_is_mean_of_true_ranges_with_tr0_high_minus_low() -> None:
    high, low = np.array([10.0, 11.0, 13.0, 12.0]), np.array([9.0, 9.5, 10.0, 8.0])
    close = np.array([9.5, 10.0, 12.5, 9.0])
    out = ind.atr(high, low, close, 3)
    first = (1.0 + 1.5 + 3.0) / 3  # tr0 = high0 - low0 = 1
    assert np.isnan(out[:2]).all()
    assert out[2] == pytest.approx(first)
    assert out[3] == pytest.approx((first * 2 + 4.5) / 3)  # tr3 = max(4, |12 - 12.5|, |8 - 12.5|)


def test_stdev_is_population_standard_deviation() -> None:
    assert ind.stdev([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], 8)[-1] == pytest.approx(2.0)


def test_stdev_of_flat_window_at_high_price_is_exactly_zero() -> None:
    assert np.all(ind.stdev(np.full(30, 98_765.4321), 20)[19:] == 0.0)


def test_linreg_of_a_line_is_the_line_and_window_of_one_is_the_value() -> None:
    line = 3.0 + 0.5 * np.arange(10)
    np.testing.assert_allclose(ind.linreg(line, 4)[3:], line[3:])
    np.testing.assert_array_equal(ind.linreg(line, 1), line)


def test_linreg_is_least_squares_fit_evaluated_at_the_newest_bar() -> None:
    window = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    slope, intercept = np.polyfit(np.arange(5), window, 1)
    assert ind.linreg(window, 5)[-1] == pytest.approx(intercept + slope * 4)


def test_cci_is_deviation_from_sma_over_0015_mean_deviation() -> None:
    source = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    mean = source.mean()
    mean_deviation = np.abs(source - mean).mean()
    assert ind.cci(source, 5)[-1] == pytest.approx((10.0 - mean) / (0.015 * mean_deviation))


def test_highest_and_lowest_look_back_n_bars_including_the_current() -> None:
    values = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.0])
    np.testing.assert_array_equal(ind.highest(values, 3), [np.nan, np.nan, 5.0, 4.0, 4.0, 3.0])
    np.testing.assert_array_equal(ind.lowest(values, 3), [np.nan, np.nan, 1.0, 1.0, 2.0, 0.0])


def test_period_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="period"):
        ind.sma([1.0, 2.0], 0)


def _squeeze_data() -> Arrays:
    rng = np.random.default_rng(11)
    wild = 100 + np.cumsum(rng.normal(0, 2.0, 60))
    calm = wild[-1] + np.cumsum(rng.normal(0, 0.05, 60))
    close = np.concatenate([wild, calm, calm[-1] + np.cumsum(rng.normal(0.8, 1.5, 40))])
    spread = np.abs(rng.normal(0, 0.6, len(close))) + 0.3
    return close + spread, close - spread, close


def test_squeeze_flags_follow_bands_inside_or_outside_the_channel() -> None:
    high, low, close = _squeeze_data()
    result = ind.squeeze_momentum(high, low, close)
    bands, channel = ind.bollinger(close, 20, 1.5), ind.keltner(high, low, close, 20, 1.5)
    np.testing.assert_array_equal(result.squeeze_on, (bands.lower > channel.lower) & (bands.upper < channel.upper))
    np.testing.assert_array_equal(result.squeeze_off, (bands.lower < channel.lower) & (bands.upper > channel.upper))
    assert result.squeeze_on.any() and result.squeeze_off.any()
    assert not (result.squeeze_on & result.squeeze_off).any()


def test_lazybear_compat_uses_kc_mult_for_bollinger_and_off_uses_bb_mult() -> None:
    high, low, close = _squeeze_data()
    compat = ind.squeeze_momentum(high, low, close, bb_mult=2.0, kc_mult=1.5)
    plain = ind.squeeze_momentum(high, low, close, bb_mult=2.0, kc_mult=1.5, lazybear_compat=False)
    channel = ind.keltner(high, low, close, 20, 1.5)
    two_sigma = ind.bollinger(close, 20, 2.0)
    np.testing.assert_array_equal(
        plain.squeeze_on, (two_sigma.lower > channel.lower) & (two_sigma.upper < channel.upper)
    )
    assert compat.squeeze_on.sum() > plain.squeeze_on.sum()
    np.testing.assert_array_equal(compat.value, plain.value)


def test_squeeze_momentum_is_linreg_of_close_minus_donchian_sma_midline() -> None:
    high, low, close = _squeeze_data()
    midline = ((ind.highest(high, 20) + ind.lowest(low, 20)) / 2 + ind.sma(close, 20)) / 2
    np.testing.assert_array_equal(ind.squeeze_momentum(high, low, close).value, ind.linreg(close - midline, 20))
    assert np.isnan(ind.squeeze_momentum(high, low, close).value[:38]).all()


def test_squeeze_flags_are_false_during_warmup_and_true_range_keltner_starts_at_bar_n() -> None:
    high, low, close = _squeeze_data()
    result = ind.squeeze_momentum(high, low, close)
    assert not (result.squeeze_on[:20] | result.squeeze_off[:20]).any()
    assert np.isnan(ind.keltner(high, low, close, 20).upper[:20]).all()
    assert not np.isnan(ind.keltner(high, low, close, 20, use_true_range=False).upper[19])


def _pine_magic_trend(high: np.ndarray, low: np.ndarray, close: np.ndarray, cci_period: int, atr_period: int) -> list:
    cci = ind.cci(close, cci_period)
    atr = ind.sma(ind.true_range(high, low, close), atr_period)
    out, prev = [], math.nan
    for t in range(len(close)):
        up, down, nz_prev = low[t] - atr[t], high[t] + atr[t], (0.0 if math.isnan(prev) else prev)
        value = (nz_prev if up < nz_prev else up) if cci[t] >= 0 else (nz_prev if down > nz_prev else down)
        out.append(value)
        prev = value
    return out


@settings(max_examples=60, deadline=None)
@given(data=price_series(min_size=1, max_size=120))
def test_magic_trend_equals_the_bar_by_bar_pine_recursion_after_warmup(data: Arrays) -> None:
    high, low, close = data
    result = ind.magic_trend(high, low, close, cci_period=6, atr_period=3)
    reference = _pine_magic_trend(high, low, close, 6, 3)
    started = np.flatnonzero(result.direction != 0)
    if len(started):
        np.testing.assert_array_equal(result.line[started[0] :], reference[started[0] :])
        assert np.isnan(result.line[: started[0]]).all()


def test_magic_trend_line_ratchets_up_in_up_regime_and_down_in_down_regime() -> None:
    high, low, close = _squeeze_data()
    result = ind.magic_trend(high, low, close)
    same = result.direction[1:] == result.direction[:-1]
    step = np.diff(result.line)
    assert np.all(step[same & (result.direction[1:] == 1)] >= 0)
    assert np.all(step[same & (result.direction[1:] == -1)] <= 0)


def test_magic_trend_stays_at_zero_seed_while_first_regime_is_down() -> None:
    close = np.concatenate([np.linspace(200, 100, 40), np.linspace(100, 150, 30)])
    high, low = close + 1, close - 1
    result = ind.magic_trend(high, low, close)
    first_up = int(np.argmax(result.direction == 1))
    assert np.all(result.direction[19:first_up] == -1)
    assert np.all(result.line[19:first_up] == 0.0)
    atr = ind.sma(ind.true_range(high, low, close), 5)
    assert result.line[first_up] == low[first_up] - atr[first_up]


def test_magic_trend_warmup_is_nan_with_direction_zero() -> None:
    high, low, close = _squeeze_data()
    result = ind.magic_trend(high, low, close, cci_period=20, atr_period=5)
    assert np.isnan(result.line[:19]).all() and np.all(result.direction[:19] == 0)
    assert not np.isnan(result.line[19]) and result.direction[19] != 0
    assert result.direction.dtype == np.int8


def test_magic_trend_on_flat_prices_is_down_with_nan_cci_as_in_pine() -> None:
    flat = np.full(50, 10.0)
    result = ind.magic_trend(flat, flat, flat)
    assert np.all(result.direction == 0)  # cci never exists on a flat series: all warm-up
    assert np.isnan(result.line).all()


@pytest.mark.parametrize("name", sorted(RECURSIVE))
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(130, 1100))
def test_recursions_spanning_many_blocks_do_not_depend_on_later_bars(name: str, seed: int, cut: int) -> None:
    rng = np.random.default_rng(seed)
    close = 1_000 + np.cumsum(rng.normal(0, 5, 1200))
    high, low = close + rng.uniform(0, 3, 1200), close - rng.uniform(0, 3, 1200)
    full = INDICATORS[name](high, low, close)
    truncated = INDICATORS[name](high[:cut], low[:cut], close[:cut])
    for whole, prefix in zip(full, truncated, strict=True):
        assert _same_bits(prefix, whole[:cut])
