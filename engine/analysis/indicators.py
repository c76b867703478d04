"""Provides the technical indicators over whole histories with TradingView semantics, on the numba kernels.

Every function takes float64 arrays (anything ``np.asarray`` accepts), returns new float64 arrays of the
same length, and gives NaN during its warm-up. The value at bar ``t`` uses bars ``0..t`` only, so a value
never changes when later bars arrive (the truncation tests prove it). Definitions follow
``/work/shared/INDICATORS.md`` (TradingView / LazyBear / Magic Trend originals); where a peer library
(TA-Lib, pandas-ta, ta) differs by design, the tests say how.

Each recursion and window is one plain loop of :mod:`engine.analysis.kernels`. The recursive indicators
(``true_range``, ``ema``, ``rma``, ``atr``, ``magic_trend``) take an optional ``state`` (a ``kernels.*_state()``
record): given, the kernel continues from it and leaves it after the last bar, which is how the live engines
(:mod:`engine.analysis.indicators_live`) prime a state and then run the same kernel one bar at a time.

NaN policy: leading NaNs are warm-up. Windowed indicators (sma, stdev, linreg, cci, highest, lowest) are
NaN for any window holding a NaN; recursive ones (ema, rma, atr) seed after their first full window of
valid values and stay NaN from the first NaN that follows. Prices are assumed finite after warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.analysis import kernels
from engine.analysis.kernels import CCI_CONSTANT, FLAT_WINDOW_RATIO, AtrState, State

__all__ = ["CCI_CONSTANT", "FLAT_WINDOW_RATIO"]  # re-exported: the definitions' constants

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Int8Array = npt.NDArray[np.int8]


def _as_float(values: Any) -> FloatArray:
    """``values`` as a contiguous, writeable float64 vector: the one array type the kernels are compiled for."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not (array.flags.c_contiguous and array.flags.writeable):
        array = array.copy()
    return array


def _check_period(period: int) -> int:
    period = int(period)
    if period < 1:
        raise ValueError(f"indicator period must be >= 1, got {period}")
    return period


def _nan(length: int) -> FloatArray:
    return np.full(length, np.nan)


def true_range(high: Any, low: Any, close: Any, handle_na: bool = False, state: State | None = None) -> FloatArray:
    """True range: max(high - low, |high - prev close|, |low - prev close|), in quote currency.

    Args:
        handle_na: like Pine's ``ta.tr(handle_na)``. False (the built-in ``tr``): bar 0 is NaN because it
            has no previous close. True: bar 0 is ``high - low`` (what ``ta.atr`` uses).
        state: a ``kernels.true_range_state()`` to continue from and update (fresh when None).
    """
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    out = _nan(len(close))
    kernels.true_range_kernel(high, low, close, out, kernels.true_range_state() if state is None else state,
                              handle_na)
    return out


def _windowed(kernel: Any, source: Any, period: int) -> FloatArray:
    period, source = _check_period(period), _as_float(source)
    out = _nan(len(source))
    kernel(source, period, out)
    return out


def sma(source: Any, period: int) -> FloatArray:
    """Simple moving average of the last ``period`` values; first value at bar period-1."""
    return _windowed(kernels.sma_kernel, source, period)


def stdev(source: Any, period: int) -> FloatArray:
    """Population standard deviation (divides by ``period``, as TradingView's ``ta.stdev``).

    Two-pass (deviations from the window mean), so it stays exact at high prices; a flat window gives 0.
    """
    return _windowed(kernels.stdev_kernel, source, period)


def linreg(source: Any, period: int) -> FloatArray:
    """Least-squares line through the last ``period`` values, evaluated at the newest bar (Pine offset 0)."""
    return _windowed(kernels.linreg_kernel, source, period)


def highest(source: Any, period: int) -> FloatArray:
    """Highest value over the last ``period`` bars (Pine ``ta.highest``)."""
    return _windowed(kernels.highest_kernel, source, period)


def lowest(source: Any, period: int) -> FloatArray:
    """Lowest value over the last ``period`` bars (Pine ``ta.lowest``)."""
    return _windowed(kernels.lowest_kernel, source, period)


def cci(source: Any, period: int = 20) -> FloatArray:
    """Commodity Channel Index of ``source``: (x - sma) / (0.015 * mean absolute deviation from that sma).

    A flat window (mean deviation 0) gives NaN, as on TradingView (TA-Lib gives 0 there).
    """
    return _windowed(kernels.cci_kernel, source, period)


def _seeded_recursion(source: Any, period: int, smoothing: int, state: State | None) -> FloatArray:
    period, source = _check_period(period), _as_float(source)
    out = _nan(len(source))
    kernels.recursion_kernel(source, out, kernels.recursion_state() if state is None else state, period, smoothing)
    return out


def ema(source: Any, period: int, state: State | None = None) -> FloatArray:
    """Exponential moving average, alpha = 2 / (period + 1), seeded with the sma of the first window.

    The sma seed (first value at bar period-1) is TradingView's ``ta.ema`` start-up and TA-Lib's default.
    ``state``: a ``kernels.recursion_state()`` to continue from and update (fresh when None).
    """
    return _seeded_recursion(source, period, kernels.EMA, state)


def rma(source: Any, period: int, state: State | None = None) -> FloatArray:
    """Wilder's moving average (Pine ``ta.rma``, alpha = 1 / period), seeded with the mean of the first
    ``period`` valid values in a row. ``state``: as :func:`ema`'s."""
    return _seeded_recursion(source, period, kernels.WILDER, state)


def atr(high: Any, low: Any, close: Any, period: int = 14, state: AtrState | None = None) -> FloatArray:
    """Average true range as TradingView's ``ta.atr``: ``rma(tr(true), period)``, first value at bar
    period-1 (TA-Lib starts one bar later from tr[1..n]; the two converge). Quote currency.

    ``state``: a ``kernels.atr_state()`` to continue from and update (fresh when None).
    """
    period = _check_period(period)
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    out = _nan(len(close))
    state = kernels.atr_state() if state is None else state
    kernels.atr_kernel(high, low, close, out, state.true_range, state.average, period)
    return out


@dataclass(frozen=True, eq=False)
class Bands:
    """An envelope around a basis line, prices in quote currency."""

    basis: FloatArray
    upper: FloatArray
    lower: FloatArray


def bollinger(source: Any, period: int = 20, mult: float = 2.0) -> Bands:
    """Bollinger bands: sma(source, period) ± mult * population stdev(source, period)."""
    source = _as_float(source)
    basis = sma(source, period)
    width = mult * stdev(source, period)
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


@dataclass(frozen=True, eq=False)
class MagicTrend:
    """Magic Trend line (quote currency) and direction (+1 up while cci >= 0, -1 down, 0 in warm-up)."""

    line: FloatArray
    direction: Int8Array


def magic_trend_inputs(
    high: Any, low: Any, close: Any, cci_period: int, atr_period: int
) -> tuple[FloatArray, FloatArray]:
    """The Magic Trend's windows: ``cci(close, cci_period)`` and its atr, ``sma(tr, atr_period)`` (a simple
    average of the built-in tr, bar 0 NaN, not Wilder's)."""
    return cci(close, cci_period), sma(true_range(high, low, close), atr_period)


def magic_trend(
    high: Any, low: Any, close: Any, cci_period: int = 20, atr_period: int = 5, coeff: float = 1.0,
    state: State | None = None,
) -> MagicTrend:
    """Magic Trend: a ratchet on ``low - atr*coeff`` while cci(close) >= 0, on ``high + atr*coeff`` below.

    Its ATR is ``sma(tr, atr_period)`` (simple, built-in tr with bar 0 NaN). With ``prev`` the previous
    value (0 when there is none): cci >= 0 -> max(prev, up); otherwise min(prev, down).

    Warm-up: bars before both cci and atr exist are NaN with direction 0 (TradingView draws 0 where only
    the atr exists; that changes nothing after, since the recursion carries nz(prev) = 0 either way). The
    zero seed is kept as in the original: if the first regime after warm-up is down, the line is min(0,
    down) = 0 until the first up regime lifts it to ``up``. A later flat close window (cci NaN) counts as
    down, as Pine's ``na >= 0`` is false. The series depends on where the history starts.

    Args:
        state: a ``kernels.magic_trend_state()`` the ratchet starts from (fresh when None) and is left at
            after the last bar; the windows are computed over the given bars.
    """
    high, low, close = _as_float(high), _as_float(low), _as_float(close)
    cci_values, atr_values = magic_trend_inputs(high, low, close, cci_period, atr_period)
    line, direction = _nan(len(close)), np.zeros(len(close), dtype=np.int8)
    kernels.magic_trend_kernel(high, low, cci_values, atr_values, float(coeff), line, direction,
                               kernels.magic_trend_state() if state is None else state)
    return MagicTrend(line, direction)
