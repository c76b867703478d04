"""Provides derive_warmup: how many base bars a symbol's history needs so its newest values equal the full history's.

Every per-bar value of the decision path (:meth:`engine.analysis.strategy.Strategy.prepare`) at bar t is either a
*window* over the last few bars (sma, stdev, linreg, highest/lowest, cci, the volume measures, swing pivots,
medians) or a *recursion* (ema, Wilder's rma/ATR) that starts from a seed and forgets it geometrically: after
k further bars the seed still weighs ``(1 - alpha) ** k``. A history is long enough when every window is full
and every recursion's seed weighs at most ``tolerance`` on the newest bar, in *every* timeframe the
strategy reads: the base timeframe's indicators and, through the multi-timeframe confluence
(:mod:`engine.analysis.mtf`), the trend of each higher timeframe (4h, 1d), which is computed on candles resampled
from the base bars, so a 50-candle daily ema costs ``24 *`` (50 + its recursion) hourly bars.

With the default parameters on 1h bars the daily trend's slow ema (50 days, alpha 2/51) dominates: 50 + 346
days = 9,504 base bars (see :func:`derive_warmup` for the breakdown). The history then starts on the
longest timeframe's grid (``align_ms``), so its first daily candle is a whole one.

Values whose recursion is a ratchet rather than a decay (the Magic Trend *line*) are not decision inputs:
the decision path reads the Magic Trend *direction*, a window (the sign of the cci).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.analysis.strategy import Strategy
from engine.domain.timeframes import parse_timeframe

WARMUP_TOLERANCE = 1e-6
"""Weight a recursive indicator's seed may still have on the newest bar (values agree to ~1e-6 relative)."""


def recursion_bars(alpha: float, tolerance: float = WARMUP_TOLERANCE) -> int:
    """Bars after its seed until a recursion ``y = alpha*x + (1-alpha)*y[t-1]`` weighs the seed <= ``tolerance``."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
    if alpha == 1.0:
        return 0
    return math.ceil(math.log(tolerance) / math.log(1.0 - alpha))


def _ema_bars(period: int, tolerance: float) -> int:
    """The sma seed's window, then the ema recursion (alpha 2/(n+1))."""
    return period + recursion_bars(2.0 / (period + 1), tolerance)


def _rma_bars(period: int, tolerance: float) -> int:
    """The true range needs the previous close, then the sma seed, then Wilder's recursion (alpha 1/n)."""
    return 1 + period + recursion_bars(1.0 / period, tolerance)


@dataclass(frozen=True)
class WarmupPlan:
    """The history a symbol needs.

    Attributes:
        base_timeframe: the bars the history is counted in, e.g. ``"1h"``.
        needs: base bars each part needs, e.g. ``{"1h": 673, "4h": 1616, "1d": 9504}`` (one entry per
            timeframe read; the base timeframe's entry covers signals, ATRs, medians, volume and swings).
        bars: the largest need: base bars to hold before the first live bar.
        align_ms: the longest timeframe read (ms): the history starts on its grid.
    """

    base_timeframe: str
    needs: dict[str, int]
    bars: int
    align_ms: int


def _base_needs(strategy: Strategy, tolerance: float) -> int:
    signal = strategy.params.signal
    risk, breaker = strategy.risk_config, strategy.breaker_config
    # Windows of the signal engine: its momentum (a linreg over a midline of windows), slope and fade
    # shifts, the squeeze run a release is measured by, the Magic Trend direction (cci + sma of tr).
    signal_windows = (signal.lookback_bars + signal.fade_bars + signal.squeeze_full_bars
                      + signal.release_window + signal.min_squeeze_bars)
    risk_atr = _rma_bars(risk.atr_lookback, tolerance)
    return max(
        signal_windows,
        signal_windows + _rma_bars(signal.atr_period, tolerance) - signal.atr_period,  # strength uses ATR
        # The volatility medians read the last N risk ATRs: each of them must have converged.
        risk_atr + max(risk.volatility_median_lookback, breaker.volatility_lookback) + 1,
        strategy.volume_analyzer.warmup_bars + 1,
        2 * risk.swing_lookback + 1,
    )


def _timeframe_needs(strategy: Strategy, base_timeframe: str, tolerance: float) -> dict[str, int]:
    """Base bars each multi-timeframe trend needs (its candles resampled from the base bars)."""
    analyzer = strategy.mtf_analyzer(base_timeframe)
    base_ms = parse_timeframe(base_timeframe)
    needs: dict[str, int] = {}
    for timeframe in analyzer.timeframes:
        ratio = parse_timeframe(timeframe) // base_ms
        candles = 0
        if analyzer.trend_method != "ema":  # Magic Trend direction: cci window, sma of the true range
            candles = max(candles, analyzer.cci_period, analyzer.atr_period + 1)
        if analyzer.trend_method != "magic_trend":
            candles = max(candles, _ema_bars(analyzer.ema_fast, tolerance), _ema_bars(analyzer.ema_slow, tolerance))
        # One more candle: a history that does not start on the grid loses its partial first bucket.
        needs[timeframe] = (candles + 1) * ratio
    return needs


def derive_warmup(strategy: Strategy, base_timeframe: str, tolerance: float = WARMUP_TOLERANCE) -> WarmupPlan:
    """The warm-up every timeframe's indicators need, in base bars (see the module docstring).

    Args:
        strategy: the strategy whose parameters decide the lookbacks.
        base_timeframe: the candles the history holds, e.g. ``"1h"``.
        tolerance: weight a recursion's seed may keep on the newest bar, in (0, 1).
    """
    base_ms = parse_timeframe(base_timeframe)
    needs = _timeframe_needs(strategy, base_timeframe, tolerance)
    base = _base_needs(strategy, tolerance)
    needs[base_timeframe] = max(needs.get(base_timeframe, 0), base)
    longest = max([parse_timeframe(tf) for tf in needs] + [base_ms])
    return WarmupPlan(base_timeframe, needs, max(needs.values()), longest)
