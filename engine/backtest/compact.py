"""Provides the backtester's compact form of a PreparedSymbol: only what the bar loop reads, in small dtypes.

``Strategy.prepare`` keeps every intermediate of the signal, volume and multi-timeframe analysers (the
live console shows them), about 100 MB per symbol for a year of 1m bars. A backtest reads only the
decision arrays plus, on the few bars where it decides, the text of the signal's reasons. This keeps:

* every decision array the loop indexes, unchanged (the same float64 values, so results are identical);
* for the reasons: the signal code, exit causes, trend direction, squeeze flags and squeeze length as
  they are, and momentum and its slope reduced to the only facts the reason text uses (sign, NaN) as
  float16 -1/+1/NaN. The text itself is still produced by ``engine.analysis.signals`` (one source of the
  wording); ``signal_at(i).reasons`` and ``trends_at(i)`` are equal to the full frame's for every bar;
* nothing of the volume frame (already folded into the entry arrays), and for trailing policies other
  than ``swing`` no swing levels (only that policy reads them).

A dropped array becomes a read-only zero-stride view of NaN (or 0) of the right length, which costs no
memory; it is never read by the backtest. Compact symbols never leave the backtester: a caller that
wants the analysers' intermediates uses ``BacktestEngine.prepare``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import numpy as np

from engine.analysis.strategy import PreparedSymbol
from engine.analysis.volume import VolumeFrame
from engine.config import RiskConfig


def _absent(length: int, fill: Any = np.nan, dtype: Any = np.float64) -> np.ndarray:
    """A read-only array of ``length`` copies of ``fill`` that takes no memory (zero stride)."""
    return np.broadcast_to(np.asarray(fill, dtype=dtype), (length,))


def _sign_or_nan(values: np.ndarray) -> np.ndarray:
    """+1 where > 0, -1 where <= 0, NaN where NaN: all the reason text reads from a value (float16)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(values), np.nan, np.where(values > 0, 1.0, -1.0)).astype(np.float16)


def _small_ints(values: np.ndarray) -> np.ndarray:
    """The same integers in int32 when they fit (squeeze lengths are small)."""
    if len(values) and (values.min() < np.iinfo(np.int32).min or values.max() > np.iinfo(np.int32).max):
        return values
    return values.astype(np.int32)


def _shared(copy: np.ndarray, original: np.ndarray) -> np.ndarray:
    """``original`` instead of an equal copy of it."""
    return original if copy is original or np.array_equal(copy, original) else copy


def compact_for_backtest(prepared: PreparedSymbol, risk: RiskConfig) -> PreparedSymbol:
    """The same per-bar decision inputs as ``prepared`` without what the bar loop never reads (see above)."""
    length = len(prepared)
    times = prepared.candles.open_time_ms
    signals = prepared.signals
    signals = dataclasses.replace(
        signals,
        open_time_ms=_shared(signals.open_time_ms, times),
        momentum=_sign_or_nan(np.asarray(signals.momentum)),
        momentum_slope=_sign_or_nan(np.asarray(signals.momentum_slope)),
        squeeze_bars=_small_ints(np.asarray(signals.squeeze_bars)),
        trend_line=_absent(length),
        atr=_absent(length),
    )
    mtf = prepared.mtf
    mtf = dataclasses.replace(
        mtf,
        open_time_ms=_shared(mtf.open_time_ms, times),
        long_multiplier=_absent(length),
        short_multiplier=_absent(length),
        long_conflicting=_absent(length, False, np.bool_),
        short_conflicting=_absent(length, False, np.bool_),
    )
    swing: dict[str, Any] = {}
    if risk.trailing_policy != "swing":
        swing = {"swing_low": _absent(length), "swing_high": _absent(length)}
    return dataclasses.replace(prepared, signals=signals, mtf=mtf, volume=cast(VolumeFrame, None), **swing)
