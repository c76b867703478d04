"""Provides the indicator kernels: every recursion and every window as one plain numba loop.

Recursions (true range, ema / rma, atr, the Magic Trend ratchet) carry their state in a one-row structured
array (``*_DTYPE``, made by the ``*_state`` functions) that the kernel reads and updates in place. The
vectorised functions of :mod:`engine.analysis.indicators` run a kernel over a whole history from a fresh
state; the live engines (:mod:`engine.analysis.indicators_live`) run the very same kernel over one new bar
from the state they carry. Both are one compiled loop doing the same operations in the same order, so a value
continued bar by bar has the bits of the value computed over the whole array.

Windows (sma, stdev, linreg, highest, lowest, cci) are a plain loop over the window ending at each bar: the
value at bar t reads bars t-n+1..t only, oldest first, so it is the same whatever precedes the window and
however long the array is (the live engines compute the newest bar on the last bars only). A window holding a
NaN gives NaN.

Entry points called from Python are cached on disk (``cache=True``, see :mod:`engine.jit`); the per-bar and
per-window helpers they call are compiled into them. Definitions: ``/work/shared/INDICATORS.md``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.jit import njit

FloatArray = npt.NDArray[np.float64]
State = npt.NDArray[np.void]
"""A one-row structured array of one of the ``*_DTYPE`` records below."""

# A window whose spread (standard or mean deviation) is below this ratio of its mean is flat: the spread
# is rounding noise of the mean (at most ~n * 1.1e-16 relative), so it is reported as exactly 0.
FLAT_WINDOW_RATIO = 1e-12
# Lambert's constant in the CCI definition.
CCI_CONSTANT = 0.015
# The smoothing of a seeded recursion.
WILDER, EMA = 0, 1

_TRUE_RANGE_FIELDS = [
    ("previous_close", np.float64),  # quote currency; NaN before the first bar
    ("has_previous", np.bool_),  # a bar has been seen (the next one has a previous close)
]
_RECURSION_FIELDS = [
    ("value", np.float64),  # the newest value; NaN until seeded, and for ever after a NaN input
    ("seeded", np.bool_),
    ("run_count", np.int64),  # valid inputs in a row so far, until the seed
    ("run_total", np.float64),  # their sum, oldest first
]
TRUE_RANGE_DTYPE = np.dtype(_TRUE_RANGE_FIELDS, align=True)
RECURSION_DTYPE = np.dtype(_RECURSION_FIELDS, align=True)
MAGIC_TREND_DTYPE = np.dtype([
    ("value", np.float64),  # the ratchet (quote currency); Pine's nz(prev) = 0 before any bar
    ("cci_seen", np.bool_),  # a cci has existed: from the next bar with an atr on, the trend has started
], align=True)


def _fresh(dtype: np.dtype[Any], **fields: float) -> State:
    state = np.zeros(1, dtype=dtype)
    for name, value in fields.items():
        state[0][name] = value
    return state


def true_range_state() -> State:
    """The state of a true range before its first bar."""
    return _fresh(TRUE_RANGE_DTYPE, previous_close=math.nan)


def recursion_state() -> State:
    """The state of an ema or rma before its first value."""
    return _fresh(RECURSION_DTYPE, value=math.nan)


class AtrState(NamedTuple):
    """The state of an atr: its true range's and its Wilder recursion's."""

    true_range: State
    average: State


def atr_state() -> AtrState:
    """The state of an atr before its first bar."""
    return AtrState(true_range_state(), recursion_state())


def magic_trend_state() -> State:
    """The state of a Magic Trend before its first bar (the ratchet at Pine's zero seed)."""
    return _fresh(MAGIC_TREND_DTYPE, value=0.0)


# --- recursions ---------------------------------------------------------------------------------------


@njit()
def _true_range_step(row: Any, high: float, low: float, close: float, handle_na: bool) -> float:
    """One bar of the true range: max(high - low, |high - prev close|, |low - prev close|), NaN when an
    input is NaN; the first bar has no previous close: NaN, or high - low with ``handle_na`` (Pine's tr(true))."""
    previous = row["previous_close"]
    if not row["has_previous"] and handle_na:
        value = high - low
    elif math.isnan(high) or math.isnan(low) or math.isnan(previous):
        value = math.nan
    else:
        price_range = high - low
        gap = max(abs(high - previous), abs(low - previous))
        value = gap if gap > price_range else price_range
    row["previous_close"] = close
    row["has_previous"] = True
    return value


@njit()
def _recursion_step(row: Any, value: float, period: int, smoothing: int) -> float:
    """One value of a seeded recursion: NaN until ``period`` valid values in a row, then seeded with their
    mean (summed oldest first), then Wilder's ``(prev * (n - 1) + x) / n`` or the ema's ``alpha * x +
    (1 - alpha) * prev`` (alpha = 2 / (n + 1)); a NaN after the seed makes it NaN for ever."""
    if row["seeded"]:
        previous = row["value"]
        if smoothing == WILDER:
            row["value"] = (previous * (period - 1) + value) / period
        else:
            alpha = 2.0 / (period + 1)
            row["value"] = alpha * value + (1.0 - alpha) * previous
    elif math.isnan(value):
        row["run_count"] = 0
        row["run_total"] = 0.0
    else:
        row["run_total"] += value
        row["run_count"] += 1
        if row["run_count"] == period:
            row["value"] = row["run_total"] / period
            row["seeded"] = True
    return float(row["value"])


@njit(cache=True)
def true_range_kernel(high: Any, low: Any, close: Any, out: Any, state: Any, handle_na: bool) -> None:
    """``out[t]`` = the true range of bar t, continuing ``state`` (:data:`TRUE_RANGE_DTYPE`)."""
    row = state[0]
    for t in range(len(close)):
        out[t] = _true_range_step(row, high[t], low[t], close[t], handle_na)


@njit(cache=True)
def recursion_kernel(source: Any, out: Any, state: Any, period: int, smoothing: int) -> None:
    """``out[t]`` = the seeded recursion (:data:`WILDER` or :data:`EMA`) after ``source[t]``, continuing
    ``state`` (:data:`RECURSION_DTYPE`)."""
    row = state[0]
    for t in range(len(source)):
        out[t] = _recursion_step(row, source[t], period, smoothing)


@njit(cache=True)
def atr_kernel(high: Any, low: Any, close: Any, out: Any, true_range_state: Any, average_state: Any,
               period: int) -> None:
    """``out[t]`` = Wilder's average of the true range (first bar high - low) after bar t, continuing the
    two states of an :class:`AtrState`."""
    true_range_row, average_row = true_range_state[0], average_state[0]
    for t in range(len(close)):
        true_range = _true_range_step(true_range_row, high[t], low[t], close[t], True)
        out[t] = _recursion_step(average_row, true_range, period, WILDER)


@njit(cache=True)
def magic_trend_kernel(high: Any, low: Any, cci: Any, atr: Any, coeff: float, line: Any, direction: Any,
                       state: Any) -> None:
    """``line[t]``, ``direction[t]``: the Magic Trend ratchet at bar t, continuing ``state``
    (:data:`MAGIC_TREND_DTYPE`), from the bar's cci and atr.

    ``up = low - atr * coeff``, ``down = high + atr * coeff``; with ``prev`` the ratchet: cci >= 0 ->
    ``prev if up < prev else up`` (direction +1), else ``prev if down > prev else down`` (-1; a NaN cci, a
    flat window, is a down bar as Pine's ``na >= 0`` is false). Warm-up (NaN, 0): no atr yet, or no cci has
    existed yet; in the latter Pine already takes the down branch from its zero seed, so the ratchet runs.
    """
    row = state[0]
    for t in range(len(high)):
        if not math.isnan(cci[t]):
            row["cci_seen"] = True
        if math.isnan(atr[t]):
            line[t], direction[t] = math.nan, 0
            continue
        up, down = low[t] - atr[t] * coeff, high[t] + atr[t] * coeff
        previous = row["value"]
        rising = row["cci_seen"] and cci[t] >= 0.0
        row["value"] = (previous if up < previous else up) if rising else (previous if down > previous else down)
        if row["cci_seen"]:
            line[t], direction[t] = row["value"], 1 if rising else -1
        else:
            line[t], direction[t] = math.nan, 0


# --- windows ------------------------------------------------------------------------------------------


@njit()
def _window_mean(source: Any, t: int, period: int) -> float:
    total = 0.0
    for k in range(t - period + 1, t + 1):
        total += source[k]
    return total / period


@njit()
def _window_deviation(source: Any, t: int, period: int, mean: float, power: int) -> float:
    """Mean of |x - mean| ** power (1 or 2) over the window; 0 when below the flat-window ratio of the mean."""
    total = 0.0
    for k in range(t - period + 1, t + 1):
        deviation = abs(source[k] - mean)
        total += deviation if power == 1 else deviation * deviation
    spread = total / period if power == 1 else math.sqrt(total / period)
    return 0.0 if spread <= FLAT_WINDOW_RATIO * abs(mean) else spread


@njit(cache=True)
def sma_kernel(source: Any, period: int, out: Any) -> None:
    """``out[t]`` = the mean of the ``period`` values ending at t (t >= period - 1)."""
    for t in range(period - 1, len(source)):
        out[t] = _window_mean(source, t, period)


@njit(cache=True)
def stdev_kernel(source: Any, period: int, out: Any) -> None:
    """``out[t]`` = the population standard deviation of the window ending at t: two passes (the mean,
    then the squared deviations from it), so it stays exact at high prices; a flat window gives 0."""
    for t in range(period - 1, len(source)):
        out[t] = _window_deviation(source, t, period, _window_mean(source, t, period), 2)


@njit(cache=True)
def linreg_kernel(source: Any, period: int, out: Any) -> None:
    """``out[t]`` = the least-squares line through the window ending at t, at its newest bar (x = 0..n-1)."""
    x_mean = (period - 1) / 2.0
    variance = 0.0
    for i in range(period):
        variance += (i - x_mean) * (i - x_mean)
    for t in range(period - 1, len(source)):
        y_mean = _window_mean(source, t, period)
        covariance = 0.0
        for i in range(period):
            covariance += (i - x_mean) * (source[t - period + 1 + i] - y_mean)
        slope = covariance / variance if period > 1 else 0.0  # one point: the line through it is flat
        out[t] = y_mean + slope * (period - 1 - x_mean)


@njit()
def _window_extreme(source: Any, t: int, period: int, highest: bool) -> float:
    extreme = source[t]
    for k in range(t - period + 1, t + 1):
        value = source[k]
        if math.isnan(value):
            return math.nan
        if (value > extreme) if highest else (value < extreme):
            extreme = value
    return float(extreme)


@njit(cache=True)
def highest_kernel(source: Any, period: int, out: Any) -> None:
    """``out[t]`` = the highest value of the window ending at t."""
    for t in range(period - 1, len(source)):
        out[t] = _window_extreme(source, t, period, True)


@njit(cache=True)
def lowest_kernel(source: Any, period: int, out: Any) -> None:
    """``out[t]`` = the lowest value of the window ending at t."""
    for t in range(period - 1, len(source)):
        out[t] = _window_extreme(source, t, period, False)


@njit(cache=True)
def cci_kernel(source: Any, period: int, out: Any) -> None:
    """``out[t]`` = (x - sma) / (0.015 * mean absolute deviation from that sma) over the window ending at t;
    a flat window (mean deviation 0) gives NaN, as on TradingView."""
    for t in range(period - 1, len(source)):
        mean = _window_mean(source, t, period)
        mean_deviation = _window_deviation(source, t, period, mean, 1)
        out[t] = (source[t] - mean) / (CCI_CONSTANT * mean_deviation) if mean_deviation != 0.0 else math.nan
