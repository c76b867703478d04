"""Provides PerformanceMetrics, the performance summary of a backtest, and how it is computed.

Conventions (the same as quantstats / empyrical-reloaded with ``periods=365``, cross-checked in tests):

- Daily returns: the equity curve (sampled at every bar close) is reduced to its last value per UTC day;
  the first day's return is measured against the initial capital. Days without bars are absent (not zero).
  A bar belongs to the day it covered (``engine.domain.trading_day``, the loss limits' rule): one closing exactly
  at midnight ends its day.
- Sharpe = mean(daily) / std(daily, ddof=1) * sqrt(365), risk-free rate 0.
- Sortino = mean(daily) / sqrt(mean(min(daily, 0)^2)) * sqrt(365) (downside deviation over all days).
- Max drawdown: the largest fall of the per-bar equity curve below its running peak (the initial capital
  counts as the first peak), as a ratio in [0, 1] of that peak. Its duration is the longest stretch spent
  below a previous peak, in bars and in days (to recovery, or to the end when never recovered).
- Total return: final equity / initial capital - 1 (ratio). Annual return: CAGR over calendar time,
  ``(1 + total) ** (365 days / elapsed) - 1`` with elapsed from the first bar's open to the last bar's close
  (as backtesting.py). Calmar = annual return / max drawdown.
- Per closed trade (net of fees): winning = pnl > 0, losing = pnl < 0; win rate = winning / total (ratio,
  backtesting.py's definition); profit factor = gross profit / gross loss; expectancy = mean pnl per trade
  (quote currency); recovery factor = net profit / max drawdown in quote currency; max consecutive losses
  counts losing trades in a row in exit order.
- Exposure: ratio in [0, 1] of bars that ended with at least one position open.
- Undefined values (no trades, zero variance, no loss) are NaN or inf in memory and ``null`` in JSON.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.domain.models import ClosedTrade, FloatArray
from engine.domain.trading_day import days_of_closes

DAYS_PER_YEAR = 365
MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class PerformanceMetrics:
    """Performance of one backtest (see the module docstring for every definition).

    Ratios are in [0, 1] (``total_return`` and ``annual_return`` may exceed 1 or go below 0); money is in
    quote currency.
    """

    total_trades: int
    winning_trades: int
    losing_trades: int
    win_rate: float
    profit_factor: float
    sharpe_ratio: float
    sortino_ratio: float
    max_drawdown: float
    max_drawdown_duration_bars: int
    max_drawdown_duration_days: float
    recovery_factor: float
    total_return: float
    annual_return: float
    calmar_ratio: float
    expectancy: float
    exposure: float
    max_consecutive_losses: int
    # extras
    initial_capital: float
    final_equity: float
    net_profit: float
    gross_profit: float
    gross_loss: float
    total_fees: float
    max_drawdown_amount: float
    average_win: float
    average_loss: float
    best_trade: float
    worst_trade: float
    volatility_annual: float
    bars: int
    days: float
    trading_days: int

    @property
    def max_drawdown_duration(self) -> int:
        """The seed's name for the longest drawdown, in bars (``max_drawdown_duration_bars``)."""
        return self.max_drawdown_duration_bars

    def to_dict(self) -> dict[str, Any]:
        """Every field, plus ``max_drawdown_duration`` (bars) under the seed's own name."""
        values = dataclasses.asdict(self)
        values["max_drawdown_duration"] = self.max_drawdown_duration_bars
        return values


def daily_returns(
    time_ms: npt.ArrayLike, equity: npt.ArrayLike, initial_capital: float, reset_offset_ms: int = 0
) -> FloatArray:
    """Returns of the last equity of each UTC day against the previous day's (the first: initial capital).

    Args:
        time_ms: sample times (bar close, UTC ms), ascending.
        equity: equity at those times (quote currency).
        initial_capital: equity before the first sample.
        reset_offset_ms: where days start, in ms after UTC midnight (0: calendar days, as the metrics use;
            ``RiskConfig.daily_reset_utc`` gives the loss limits' trading days).
    """
    times = np.asarray(time_ms, dtype=np.int64)
    values = np.asarray(equity, dtype=np.float64)
    if len(values) == 0:
        return np.empty(0, dtype=np.float64)
    day = days_of_closes(times, reset_offset_ms)  # a bar closing exactly at the reset ends its day
    last_of_day = np.flatnonzero(np.append(day[1:] != day[:-1], True))
    closes = values[last_of_day]
    previous = np.concatenate(([initial_capital], closes[:-1]))
    return closes / previous - 1.0


def drawdown_series(equity: npt.ArrayLike, initial_capital: float) -> tuple[FloatArray, FloatArray]:
    """(drawdown ratio, drawdown amount) per sample, against the running peak including the initial capital."""
    values = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(np.maximum(values, initial_capital)) if len(values) else values
    amount = peak - values
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(peak > 0, amount / peak, 0.0)
    return ratio, amount


def _longest_underwater(amount: FloatArray) -> tuple[int, int]:
    """(length in samples, start index) of the longest run with equity below its peak."""
    under = amount > 0
    if not under.any():
        return 0, 0
    padded = np.concatenate(([False], under, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    best = int(np.argmax(lengths))
    return int(lengths[best]), int(starts[best])


def _ratio(numerator: float, denominator: float) -> float:
    if denominator == 0:
        return math.nan if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / denominator


def max_consecutive(flags: Sequence[bool]) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def compute_metrics(
    time_ms: npt.ArrayLike,
    equity: npt.ArrayLike,
    initial_capital: float,
    trades: Sequence[ClosedTrade],
    bar_ms: int,
    in_market: npt.ArrayLike | None = None,
) -> PerformanceMetrics:
    """Compute every metric from an equity curve and the closed trades.

    Args:
        time_ms: bar close times (UTC ms) of the equity samples, ascending.
        equity: equity at each sample (quote currency).
        initial_capital: equity before the first bar (quote currency).
        trades: closed trades in exit order.
        bar_ms: bar length (UTC ms), for the calendar span and the drawdown duration in days.
        in_market: per sample, whether a position was open at the bar close (exposure).
    """
    times = np.asarray(time_ms, dtype=np.int64)
    values = np.asarray(equity, dtype=np.float64)
    bars = len(values)
    final = float(values[-1]) if bars else initial_capital
    pnls = np.array([t.pnl for t in trades], dtype=np.float64)
    wins = pnls[pnls > 0]
    losses = pnls[pnls < 0]
    gross_profit = float(wins.sum())
    gross_loss = float(-losses.sum())
    net_profit = final - initial_capital

    returns = daily_returns(times, values, initial_capital)
    if len(returns) >= 2:
        std = float(np.std(returns, ddof=1))
        mean = float(np.mean(returns))
        sharpe = _ratio(mean, std) * math.sqrt(DAYS_PER_YEAR) if std > 0 else math.nan
        downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
        sortino = _ratio(mean, downside) * math.sqrt(DAYS_PER_YEAR)
        volatility = std * math.sqrt(DAYS_PER_YEAR)
    else:
        sharpe = sortino = volatility = math.nan

    dd_ratio, dd_amount = drawdown_series(values, initial_capital)
    max_dd = float(dd_ratio.max()) if bars else 0.0
    max_dd_amount = float(dd_amount.max()) if bars else 0.0
    dd_bars, _ = _longest_underwater(dd_amount)

    total_return = final / initial_capital - 1.0
    span_ms = int(times[-1] - times[0] + bar_ms) if bars else 0
    days = span_ms / MS_PER_DAY
    if days > 0 and final > 0:
        annual = (final / initial_capital) ** (DAYS_PER_YEAR / days) - 1.0
    else:
        annual = math.nan if days <= 0 else -1.0
    exposure = float(np.mean(np.asarray(in_market, dtype=bool))) if in_market is not None and bars else 0.0
    total = len(pnls)
    return PerformanceMetrics(
        total_trades=total,
        winning_trades=len(wins),
        losing_trades=len(losses),
        win_rate=len(wins) / total if total else math.nan,
        profit_factor=_ratio(gross_profit, gross_loss) if total else math.nan,
        sharpe_ratio=sharpe,
        sortino_ratio=sortino,
        max_drawdown=max_dd,
        max_drawdown_duration_bars=dd_bars,
        max_drawdown_duration_days=dd_bars * bar_ms / MS_PER_DAY,
        recovery_factor=_ratio(net_profit, max_dd_amount),
        total_return=total_return,
        annual_return=annual,
        calmar_ratio=_ratio(annual, max_dd) if math.isfinite(annual) else math.nan,
        expectancy=float(pnls.mean()) if total else math.nan,
        exposure=exposure,
        max_consecutive_losses=max_consecutive((pnls < 0).tolist()),
        initial_capital=initial_capital,
        final_equity=final,
        net_profit=net_profit,
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        total_fees=float(sum(t.fees for t in trades)),
        max_drawdown_amount=max_dd_amount,
        average_win=float(wins.mean()) if len(wins) else math.nan,
        average_loss=float(losses.mean()) if len(losses) else math.nan,
        best_trade=float(pnls.max()) if total else math.nan,
        worst_trade=float(pnls.min()) if total else math.nan,
        volatility_annual=volatility,
        bars=bars,
        days=days,
        trading_days=len(returns),
    )
