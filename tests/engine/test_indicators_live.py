"""Specification of the indicators one bar at a time: the vectorised kernels continued from a carried state.

Every recursion continued bar by bar from a state primed on any prefix has the bits of the vectorised value
over the whole series (compared as int64 views, so even NaN payloads count), and every window computed on
its last bars has the bits of the full history's value: the live engines and the backtest run the same code.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis import indicators as ind
from engine.analysis import kernels
from engine.analysis.indicators_live import IncrementalAtr, IncrementalEma, IncrementalMagicTrend

PERIODS = st.sampled_from([1, 2, 3, 14, 20])


def assert_same_bits(actual: np.ndarray | list[float], expected: np.ndarray) -> None:
    actual = np.asarray(actual, dtype=expected.dtype)
    view = np.int64 if expected.dtype == np.float64 else expected.dtype
    assert np.array_equal(actual.view(view), expected.view(view)), f"{actual} != {expected}"


@st.composite
def prices(draw: st.DrawFn, with_nan: bool = True) -> np.ndarray:
    """Prices with flat stretches, spikes, tiny magnitudes and (optionally) NaN runs (warm-up and a break)."""
    steps = draw(st.lists(st.sampled_from([0.0, 0.0, 0.1, -0.1, 1.7, -2.3, 40.0, -40.0]), min_size=1, max_size=160))
    scale = draw(st.sampled_from([1e-8, 1.0, 6e4]))
    values = (100.0 + np.abs(np.cumsum(steps))) * scale
    for _ in range(draw(st.integers(0, 2)) if with_nan else 0):
        start = draw(st.integers(0, len(values) - 1))
        values[start : start + draw(st.integers(1, 4))] = np.nan
    return values


def _bars(close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    high, low = close * 1.001, close * 0.999
    high[::7] = close[::7]  # some bars with no range: flat windows, cci NaN
    low[::7] = close[::7]
    return high, low, close


@settings(max_examples=60, deadline=None)
@given(source=prices(), cut=st.integers(0, 160), period=PERIODS)
def test_an_ema_continued_value_by_value_is_the_vectorised_ema_bit_for_bit(
    source: np.ndarray, cut: int, period: int
) -> None:
    cut = min(cut, len(source))
    whole = ind.ema(source, period)
    live = IncrementalEma(period)
    assert_same_bits(live.prime(source[:cut]), whole[:cut])
    assert_same_bits([live.update(value) for value in source[cut:].tolist()], whole[cut:])


@settings(max_examples=60, deadline=None)
@given(source=prices(), cut=st.integers(0, 160), period=PERIODS)
def test_an_rma_continued_from_its_state_is_the_vectorised_rma_bit_for_bit(
    source: np.ndarray, cut: int, period: int
) -> None:
    cut = min(cut, len(source))
    state = kernels.recursion_state()
    primed = ind.rma(source[:cut], period, state)
    continued = [ind.rma(source[t : t + 1], period, state)[0] for t in range(cut, len(source))]
    assert_same_bits(np.concatenate([primed, continued]), ind.rma(source, period))


@settings(max_examples=40, deadline=None)
@given(close=prices(), cut=st.integers(0, 160), handle_na=st.booleans())
def test_a_true_range_continued_from_its_state_is_the_vectorised_true_range_bit_for_bit(
    close: np.ndarray, cut: int, handle_na: bool
) -> None:
    high, low, close = _bars(close)
    cut = min(cut, len(close))
    state = kernels.true_range_state()
    primed = ind.true_range(high[:cut], low[:cut], close[:cut], handle_na, state)
    continued = [ind.true_range(high[t : t + 1], low[t : t + 1], close[t : t + 1], handle_na, state)[0]
                 for t in range(cut, len(close))]
    assert_same_bits(np.concatenate([primed, continued]), ind.true_range(high, low, close, handle_na))


@settings(max_examples=60, deadline=None)
@given(close=prices(), cut=st.integers(0, 160), period=PERIODS)
def test_an_atr_continued_bar_by_bar_is_the_vectorised_atr_bit_for_bit(
    close: np.ndarray, cut: int, period: int
) -> None:
    high, low, close = _bars(close)
    cut = min(cut, len(close))
    whole = ind.atr(high, low, close, period)
    live = IncrementalAtr(period)
    assert_same_bits(live.prime(high[:cut], low[:cut], close[:cut]), whole[:cut])
    assert_same_bits([live.update(high[t], low[t], close[t]) for t in range(cut, len(close))], whole[cut:])


@settings(max_examples=40, deadline=None)
@given(source=prices(with_nan=False), cut=st.integers(0, 160))
def test_the_magic_trend_continued_bar_by_bar_is_the_vectorised_one_bit_for_bit(source: np.ndarray, cut: int) -> None:
    high, low, close = _bars(source)
    cut = min(cut, len(close))
    whole = ind.magic_trend(high, low, close, cci_period=6, atr_period=3)
    live = IncrementalMagicTrend(cci_period=6, atr_period=3)
    primed = live.prime(high[:cut], low[:cut], close[:cut])
    assert_same_bits(primed.line, whole.line[:cut])
    steps = [live.update(high[: t + 1], low[: t + 1], close[: t + 1]) for t in range(cut, len(close))]
    assert_same_bits([direction for direction, _ in steps], whole.direction[cut:])
    assert_same_bits([line for _, line in steps], whole.line[cut:])


def test_priming_again_starts_from_a_fresh_state() -> None:
    close = 100.0 + np.arange(40.0)
    live = IncrementalEma(5)
    live.prime(close)
    assert_same_bits(live.prime(close[:20]), ind.ema(close[:20], 5))
    assert_same_bits([live.update(value) for value in close[20:].tolist()], ind.ema(close, 5)[20:])


WINDOWS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "sma": ind.sma, "stdev": ind.stdev, "linreg": ind.linreg, "highest": ind.highest, "lowest": ind.lowest,
    "cci": ind.cci,
}


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(WINDOWS)), source=prices(), period=PERIODS)
def test_a_window_computed_on_its_last_bars_is_the_full_history_value_bit_for_bit(
    name: str, source: np.ndarray, period: int
) -> None:
    window = WINDOWS[name]
    whole = window(source, period)
    newest = [window(source[max(0, t - period + 1) : t + 1], period)[-1] for t in range(len(source))]
    assert_same_bits(newest, whole)
