"""Provides the technical indicators as pure, vectorised numpy functions with TradingView semantics.

Every function takes float64 arrays (anything ``np.asarray`` accepts), returns new float64 arrays of the
same length, and gives NaN during its warm-up. The value at bar ``t`` uses bars ``0..t`` only, so a value
never changes when later bars arrive (the truncation tests prove it). Definitions follow
``/work/shared/INDICATORS.md`` (TradingView / LazyBear / Magic Trend originals); where a peer library
(TA-Lib, pandas-ta, ta) differs by design, the tests say how.

NaN policy: leading NaNs are warm-up. Windowed indicators (sma, stdev, linreg, cci, highest, lowest) are
NaN for any window holding a NaN; recursive ones (ema, rma, atr) seed after their first full window of
valid values and stay NaN from the first NaN that follows. Prices are assumed finite after warm-up.

Speed: windowed sums are direct convolutions (no cumulative-sum drift), rolling extremes use the van Herk /
Gil-Werman block scan and the Magic Trend ratchet is a segmented running max/min done with a lexicographic
complex-number scan; each runs on a year of 1m bars (525,600) in a few to a few tens of ms (see
``benchmarks/bench_indicators.py``). The exponential recursions (ema, rma, atr) are a plain loop over the
scalar steps below (~15 ms per 60k bars, ~180 ms per year of 1m bars), so that the incremental engines,
which call the same steps one bar at a time, give the same bits; a value never depends on the array length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Int8Array = npt.NDArray[np.int8]

# A window whose spread (standard or mean deviation) is below this ratio of its mean is flat: the spread
# is rounding noise of the mean (at most ~n * 1.1e-16 relative), so it is reported as exactly 0.
FLAT_WINDOW_RATIO = 1e-12
# Lambert's constant in the CCI definition.
CCI_CONSTANT = 0.015
# Rows per chunk of the windowed mean deviation.
_WINDOW_CHUNK_ROWS = 16384


def _as_float(values: Any) -> FloatArray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _check_period(period: int) -> int:
    period = int(period)
    if period < 1:
        raise ValueError(f"indicator period must be >= 1, got {period}")
    return period


def _nan(length: int) -> FloatArray:
    return np.full(length, np.nan)


def _first_valid(values: FloatArray) -> int:
    """Index of the first non-NaN value, or len(values) when there is none."""
    valid = ~np.isnan(values)
    return int(np.argmax(valid)) if valid.any() else len(values)


def _weighted_window_sum(values: FloatArray, weights: FloatArray) -> FloatArray:
    """sum_i weights[i] * values[t - n + 1 + i] for t >= n - 1 (weights oldest first), NaN before."""
    n = len(weights)
    out = _nan(len(values))
    if len(values) >= n:
        # np.convolve flips the kernel; it is a direct (not FFT) sum, so it has no drift.
        out[n - 1 :] = np.convolve(values, weights[::-1], mode="valid")
    return out


def true_range(high: Any, low: Any, close: Any, handle_na: bool = False) -> FloatArray:
    """True range: max(high - low, |high - prev close|, |low - prev close|), in quote currency.

    Args:
        handle_na: like Pine's ``ta.tr(handle_na)``. False (the built-in ``tr``): bar 0 is NaN because it
            has no previous close. True: bar 0 is ``high - low`` (what ``ta.atr`` uses).
    """
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    out = _nan(len(close))
    if len(close) == 0:
        return out
    prev_close = close[:-1]
    gap_up = np.abs(np.subtract(high[1:], prev_close))
    gap_down = np.abs(np.subtract(low[1:], prev_close))
    np.maximum(gap_up, gap_down, out=gap_up)
    np.maximum(np.subtract(high[1:], low[1:]), gap_up, out=out[1:])
    if handle_na:
        out[0] = high[0] - low[0]
    return out


def sma(source: Any, period: int) -> FloatArray:
    """Simple moving average of the last ``period`` values; first value at bar period-1."""
    period = _check_period(period)
    source = _as_float(source)
    return _weighted_window_sum(source, np.ones(period)) / period


def _window_deviations(source: FloatArray, period: int, mean: FloatArray, power: int) -> FloatArray:
    """Mean over each window of |x - window mean| ** power (power 1 or 2); NaN where mean is NaN."""
    length = len(source)
    out = _nan(length)
    if length < period:
        return out
    rows = length - period + 1
    result = out[period - 1 :]
    result[:] = 0.0
    window_means = mean[period - 1 :]
    scratch = np.empty(min(rows, _WINDOW_CHUNK_ROWS))
    # One pass per window offset, oldest first, over chunks small enough to stay in cache; the sum order
    # per bar is fixed, so a value never depends on the array length.
    for start in range(0, rows, _WINDOW_CHUNK_ROWS):
        stop = min(start + _WINDOW_CHUNK_ROWS, rows)
        total, deviation, chunk_mean = result[start:stop], scratch[: stop - start], window_means[start:stop]
        for offset in range(period):
            np.subtract(source[start + offset : stop + offset], chunk_mean, out=deviation)
            if power == 1:
                np.abs(deviation, out=deviation)
            else:
                np.multiply(deviation, deviation, out=deviation)
            total += deviation
    result /= period
    return out


def _zero_flat(spread: FloatArray, mean: FloatArray) -> FloatArray:
    flat = spread <= FLAT_WINDOW_RATIO * np.abs(mean)
    spread[flat] = 0.0
    return spread


def stdev(source: Any, period: int) -> FloatArray:
    """Population standard deviation (divides by ``period``, as TradingView's ``ta.stdev``).

    Two-pass (deviations from the window mean), so it stays exact at high prices; a flat window gives 0.
    """
    period = _check_period(period)
    source = _as_float(source)
    return _stdev_around(source, period, sma(source, period))


def _stdev_around(source: FloatArray, period: int, mean: FloatArray) -> FloatArray:
    return _zero_flat(np.sqrt(_window_deviations(source, period, mean, power=2)), mean)


def linreg(source: Any, period: int) -> FloatArray:
    """Least-squares line through the last ``period`` values, evaluated at the newest bar (Pine offset 0).

    The fitted value is a fixed linear combination of the window, so it is computed as one convolution.
    """
    period = _check_period(period)
    source = _as_float(source)
    if period == 1:
        return np.array(source, dtype=np.float64)
    x = np.arange(period, dtype=np.float64)
    x_mean = x.mean()
    sxx = float(((x - x_mean) ** 2).sum())
    weights = 1.0 / period + (x - x_mean) * (period - 1 - x_mean) / sxx
    return _weighted_window_sum(source, weights)


def _rolling_extreme(source: FloatArray, period: int, ufunc: np.ufunc, pad: float) -> FloatArray:
    # van Herk / Gil-Werman: per block of `period` bars, prefix and suffix running extremes; a window
    # ending at t spans the suffix of one block and the prefix of the next, so it never sees bars > t.
    length = len(source)
    out = _nan(length)
    if length < period:
        return out
    blocks = -(-length // period)
    padded = np.full(blocks * period, pad)
    padded[:length] = source
    grid = padded.reshape(blocks, period)
    prefix, suffix = grid.copy(), grid.copy()
    # Column by column (each op spans all blocks): much faster than accumulate along the short axis.
    for column in range(1, period):
        ufunc(prefix[:, column - 1], grid[:, column], out=prefix[:, column])
        ufunc(suffix[:, period - column], grid[:, period - 1 - column], out=suffix[:, period - 1 - column])
    prefix_flat, suffix_flat = prefix.reshape(-1), suffix.reshape(-1)
    out[period - 1 :] = ufunc(suffix_flat[: length - period + 1], prefix_flat[period - 1 : length])
    return out


def highest(source: Any, period: int) -> FloatArray:
    """Highest value over the last ``period`` bars (Pine ``ta.highest``)."""
    return _rolling_extreme(_as_float(source), _check_period(period), np.maximum, -np.inf)


def lowest(source: Any, period: int) -> FloatArray:
    """Lowest value over the last ``period`` bars (Pine ``ta.lowest``)."""
    return _rolling_extreme(_as_float(source), _check_period(period), np.minimum, np.inf)


# --- scalar steps --------------------------------------------------------------------------------------
# The one implementation of each recursion: the vectorised loops below and the incremental (live) engines
# (engine.analysis.indicators_live, strategy_live, signals_live, mtf_live) call these same functions, so both paths
# perform the same floating-point operations in the same order and agree bit for bit. Pure functions of
# floats, so they can be compiled (numba) without change.


def true_range_step(high: float, low: float, previous_close: float) -> float:
    """One bar of :func:`true_range` given the previous close: the same operations as the vectorised form
    (``max(high - low, max(|high - prev|, |low - prev|))``), and NaN when any input is NaN, as np.maximum."""
    if math.isnan(high) or math.isnan(low) or math.isnan(previous_close):
        return math.nan
    gap_up, gap_down = abs(high - previous_close), abs(low - previous_close)
    gap = gap_down if gap_down > gap_up else gap_up
    price_range = high - low
    return gap if gap > price_range else price_range


def wilder_step(previous: float, value: float, period: int) -> float:
    """Wilder's smoothing (``rma``, ``atr``) one bar on: ``(previous * (period - 1) + value) / period``."""
    return (previous * (period - 1) + value) / period


def ema_step(previous: float, value: float, period: int) -> float:
    """The ema one bar on, in Pine's form ``alpha * value + (1 - alpha) * previous``, alpha = 2 / (period + 1)."""
    alpha = 2.0 / (period + 1)
    return alpha * value + (1.0 - alpha) * previous


def window_mean(window: Sequence[float]) -> float:
    """The seed of the ema / rma recursions: the window's values summed oldest first, over their count."""
    total = 0.0
    for value in window:
        total += value
    return total / len(window)


RecursionStep = Callable[[float, float, int], float]
"""``step(previous, value, period) -> next``: :func:`wilder_step` or :func:`ema_step`."""


def run_recursion(step: RecursionStep, initial: float, values: Sequence[float], period: int) -> list[float]:
    """``step`` folded over ``values`` from ``initial``: the value after each one (a plain loop, ~10 ms per
    60k values; exact rather than fast, so the incremental engines can continue it bit for bit)."""
    results: list[float] = []
    append = results.append
    current = initial
    for value in values:
        current = step(current, value, period)
        append(current)
    return results


def seed_index(source: FloatArray, period: int) -> int:
    """Bar of a recursion's seed: the end of the first run of ``period`` valid values (len(source): none)."""
    valid = ~np.isnan(source)
    index = np.arange(len(source))
    valid_run = index - np.maximum.accumulate(np.where(valid, -1, index))
    return _first_valid(np.where(valid_run >= period, 1.0, np.nan))


def seeded_recursion(source: FloatArray, period: int, step: RecursionStep) -> FloatArray:
    """``step`` over ``source`` seeded with the :func:`window_mean` of its first ``period`` valid values in a
    row (at bar :func:`seed_index`), NaN before and from the first NaN after the seed (ema, rma, atr)."""
    out = _nan(len(source))
    seed = seed_index(source, period)
    if seed >= len(source):
        return out
    out[seed] = window_mean(source[seed - period + 1 : seed + 1].tolist())
    tail = source[seed + 1 :]
    stop = _first_valid(np.where(np.isnan(tail), 1.0, np.nan))  # first NaN after the seed, if any
    out[seed + 1 : seed + 1 + stop] = run_recursion(step, float(out[seed]), tail[:stop].tolist(), period)
    return out


def ema(source: Any, period: int) -> FloatArray:
    """Exponential moving average, alpha = 2 / (period + 1), seeded with the sma of the first window.

    The sma seed (first value at bar period-1) is TradingView's ``ta.ema`` start-up and TA-Lib's default.
    """
    period = _check_period(period)
    return seeded_recursion(_as_float(source), period, ema_step)


def rma(source: Any, period: int) -> FloatArray:
    """Wilder's moving average (Pine ``ta.rma``, alpha = 1 / period): :func:`wilder_step` seeded with the
    mean of the first ``period`` valid values."""
    period = _check_period(period)
    return seeded_recursion(_as_float(source), period, wilder_step)


def atr(high: Any, low: Any, close: Any, period: int = 14) -> FloatArray:
    """Average true range as TradingView's ``ta.atr``: ``rma(tr(true), period)``, first value at bar
    period-1 (TA-Lib starts one bar later from tr[1..n]; the two converge). Quote currency."""
    return rma(true_range(high, low, close, handle_na=True), period)


def cci(source: Any, period: int = 20) -> FloatArray:
    """Commodity Channel Index of ``source``: (x - sma) / (0.015 * mean absolute deviation from that sma).

    A flat window (mean deviation 0) gives NaN, as on TradingView (TA-Lib gives 0 there).
    """
    period = _check_period(period)
    source = _as_float(source)
    mean = sma(source, period)
    mean_deviation = _zero_flat(_window_deviations(source, period, mean, power=1), mean)
    out = _nan(len(source))
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(source - mean, CCI_CONSTANT * mean_deviation, out=out)
    out[mean_deviation == 0.0] = np.nan
    return out


@dataclass(frozen=True, eq=False)
class Bands:
    """An envelope around a basis line, prices in quote currency."""

    basis: FloatArray
    upper: FloatArray
    lower: FloatArray


def bollinger(source: Any, period: int = 20, mult: float = 2.0) -> Bands:
    """Bollinger bands: sma(source, period) ± mult * population stdev(source, period)."""
    period = _check_period(period)
    source = _as_float(source)
    basis = sma(source, period)
    width = mult * _stdev_around(source, period, basis)
    return Bands(basis, basis + width, basis - width)


def keltner(high: Any, low: Any, close: Any, period: int = 20, mult: float = 1.5, use_true_range: bool = True) -> Bands:
    """Keltner channel as LazyBear's squeeze draws it: sma(close) ± mult * sma(range).

    ``range`` is the built-in true range (bar 0 NaN, so the first value is at bar ``period``) or, with
    ``use_true_range=False``, high - low (first value at bar period-1).
    """
    return _keltner_around(_as_float(high), _as_float(low), _as_float(close), period, mult, use_true_range)


def _keltner_around(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    period: int,
    mult: float,
    use_true_range: bool,
    basis: FloatArray | None = None,
) -> Bands:
    price_range = true_range(high, low, close) if use_true_range else high - low
    basis = sma(close, period) if basis is None else basis
    width = mult * sma(price_range, period)
    return Bands(basis, basis + width, basis - width)


@dataclass(frozen=True, eq=False)
class SqueezeMomentum:
    """LazyBear's Squeeze Momentum (SQZMOM_LB).

    Attributes:
        value: momentum histogram (quote currency), NaN during warm-up (first value at bar 2*kc_length-2).
        squeeze_on: Bollinger bands inside the Keltner channel (black dots on TradingView).
        squeeze_off: Bollinger bands outside the Keltner channel (grey dots). Neither flag = no squeeze
            (blue dots); both are False during warm-up.
    """

    value: FloatArray
    squeeze_on: BoolArray
    squeeze_off: BoolArray

    @property
    def no_squeeze(self) -> BoolArray:
        return ~(self.squeeze_on | self.squeeze_off)


def squeeze_momentum(
    high: Any,
    low: Any,
    close: Any,
    bb_length: int = 20,
    bb_mult: float = 2.0,
    kc_length: int = 20,
    kc_mult: float = 1.5,
    use_true_range: bool = True,
    lazybear_compat: bool = True,
) -> SqueezeMomentum:
    """Squeeze Momentum as LazyBear's published script computes it.

    Args:
        lazybear_compat: True (default) reproduces the published script, whose Bollinger deviation uses
            ``kc_mult`` (its ``bb_mult`` input is declared but never used), so the dots match TradingView.
            False uses ``bb_mult`` for the Bollinger deviation.
    """
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    bb_length, kc_length = _check_period(bb_length), _check_period(kc_length)
    bands = bollinger(close, bb_length, kc_mult if lazybear_compat else bb_mult)
    kc_basis = bands.basis if kc_length == bb_length else sma(close, kc_length)
    channel = _keltner_around(high, low, close, kc_length, kc_mult, use_true_range, kc_basis)
    squeeze_on = (bands.lower > channel.lower) & (bands.upper < channel.upper)
    squeeze_off = (bands.lower < channel.lower) & (bands.upper > channel.upper)
    midline = ((highest(high, kc_length) + lowest(low, kc_length)) / 2.0 + kc_basis) / 2.0
    value = linreg(close - midline, kc_length)
    return SqueezeMomentum(value, squeeze_on, squeeze_off)


def _prefix_clamps(floor: FloatArray, ceiling: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Compose clamps v -> min(max(v, floor[k]), ceiling[k]) left to right (Hillis-Steele scan).

    Applying clamp [a1, b1] then [a2, b2] equals the clamp [clip(a1, a2, b2), clip(b1, a2, b2)]. Only
    min/max are used, so the result is exact.
    """
    floor, ceiling = floor.copy(), ceiling.copy()
    step = 1
    while step < len(floor):
        later_floor, later_ceiling = floor[step:], ceiling[step:]
        new_floor = np.minimum(np.maximum(floor[:-step], later_floor), later_ceiling)
        new_ceiling = np.minimum(np.maximum(ceiling[:-step], later_floor), later_ceiling)
        floor[step:], ceiling[step:] = new_floor, new_ceiling
        step *= 2
    return floor, ceiling


@dataclass(frozen=True, eq=False)
class MagicTrend:
    """Magic Trend line (quote currency) and direction (+1 up while cci >= 0, -1 down, 0 in warm-up)."""

    line: FloatArray
    direction: Int8Array


def magic_trend(
    high: Any, low: Any, close: Any, cci_period: int = 20, atr_period: int = 5, coeff: float = 1.0
) -> MagicTrend:
    """Magic Trend: a ratchet on ``low - atr*coeff`` while cci(close) >= 0, on ``high + atr*coeff`` below.

    Its ATR is ``sma(tr, atr_period)`` (simple, built-in tr with bar 0 NaN). With ``prev`` the previous
    value (0 when there is none): cci >= 0 -> max(prev, up); otherwise min(prev, down).

    Warm-up: bars before both cci and atr exist are NaN with direction 0 (TradingView draws 0 where only
    the atr exists; that changes nothing after, since the recursion carries nz(prev) = 0 either way). The
    zero seed is kept as in the original: if the first regime after warm-up is down, the line is min(0,
    down) = 0 until the first up regime lifts it to ``up``. A later flat close window (cci NaN) counts as
    down, as Pine's ``na >= 0`` is false. The series depends on where the history starts.
    """
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    length = len(close)
    line = _nan(length)
    direction = np.zeros(length, dtype=np.int8)
    cci_values = cci(close, cci_period)
    atr_values = sma(true_range(high, low, close), atr_period)
    up = low - atr_values * coeff
    down = high + atr_values * coeff
    atr_start, cci_start = _first_valid(atr_values), _first_valid(cci_values)
    start = max(atr_start, cci_start)
    if start >= length:
        return MagicTrend(line, direction)
    # While the atr exists but the cci does not, Pine takes the down branch from nz(prev) = 0.
    carried = min(0.0, float(np.min(down[atr_start:start]))) if atr_start < start else 0.0

    rising = cci_values[start:] >= 0.0  # NaN compares False: a down bar, as in Pine
    up, down = up[start:], down[start:]
    starts = np.flatnonzero(np.concatenate(([True], rising[1:] != rising[:-1])))
    segment_rising = rising[starts]
    extreme = np.where(segment_rising, np.maximum.reduceat(up, starts), np.minimum.reduceat(down, starts))
    # Each segment maps its entry value v to max(v, extreme) (rising) or min(v, extreme): a clamp to
    # [floor, ceiling]. Clamps compose into clamps, so a prefix scan gives every segment's exit value.
    floor = np.where(segment_rising, extreme, -np.inf)
    ceiling = np.where(segment_rising, np.inf, extreme)
    floor, ceiling = _prefix_clamps(floor, ceiling)
    exit_values = np.minimum(np.maximum(carried, floor), ceiling)
    entry = np.concatenate(([carried], exit_values[:-1]))  # the line just before each segment
    candidate = np.where(rising, up, down)
    candidate[starts] = np.where(segment_rising, np.maximum(entry, up[starts]), np.minimum(entry, down[starts]))
    # Segmented running max/min in one scan: complex numbers order lexicographically (real, then imag),
    # so a real part that grows with the segment number restarts the scan at each segment, exactly.
    segment_start = np.zeros(len(rising))
    segment_start[starts] = 1.0
    segment_id = np.cumsum(segment_start)
    keyed = np.empty(len(rising), dtype=np.complex128)
    keyed.real, keyed.imag = segment_id, candidate
    running_max = np.maximum.accumulate(keyed).imag
    keyed.real = -segment_id
    running_min = np.minimum.accumulate(keyed).imag
    line[start:] = np.where(rising, running_max, running_min)
    direction[start:] = np.where(rising, 1, -1)
    return MagicTrend(line, direction)
