"""Provides the per-symbol arrays that ``SimulatedAccount.skip_quiet_bars`` tests quiet runs on.

They depend on the prepared symbol only, so a backtest computes them once instead of on every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.analysis.strategy import PreparedSymbol
from engine.domain.models import FloatArray

MAX, MIN = np.maximum.reduce, np.minimum.reduce  # max()/min() without the Python-level wrappers
NO_BARS: FloatArray = np.empty(0, dtype=np.float64)
NO_BARS.flags.writeable = False  # shared by every call that skips nothing


@dataclass(frozen=True, slots=True)
class QuietArrays:
    """Per-bar inputs of :meth:`SimulatedAccount.skip_quiet_bars`, computed once per prepared symbol.

    ``lowest``/``highest``: min/max of the bar's open and low/high; ``calm_*``: no exit signal for that
    side and no volatility alarm (non-zero or NaN counts as set, as ``astype(bool)`` does).
    """

    prepared: PreparedSymbol
    lowest: FloatArray
    highest: FloatArray
    calm_long: np.ndarray
    calm_short: np.ndarray

    @classmethod
    def of(cls, prepared: PreparedSymbol) -> QuietArrays:
        candles, alarm = prepared.candles, prepared.volatility_alarm
        return cls(
            prepared,
            np.minimum(candles.low, candles.open),
            np.maximum(candles.high, candles.open),
            ~np.logical_or(prepared.exit_long, alarm),
            ~np.logical_or(prepared.exit_short, alarm),
        )
