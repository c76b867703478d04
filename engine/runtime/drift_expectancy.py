"""Provides the expectancy half of the performance drift check (:mod:`engine.runtime.drift`): realised against backtest.

Expectancy is the mean net P&L per trade as a percentage of the entry notional
(``100 * pnl / (entry_price * quantity)``): independent of the position size, which differs live, and
computed from what a closed trade records (an R multiple would need the initial stop, which a closed
trade does not keep). The alert condition is ``realised < backtest - k * SE`` with SE the standard error
of the realised mean, ``s / sqrt(n)`` with the sample standard deviation (``n - 1``), once the account
has ``min_trades`` closed trades (at least 2: one trade has no spread).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.config import DriftConfig
from engine.domain.models import ClosedTrade


@dataclass(frozen=True)
class ExpectancyComparison:
    """Realised and backtest expectancy over one window (% of entry notional per trade; None: no trades)."""

    realised_pct: float | None
    standard_error_pct: float | None
    trades: int
    backtest_pct: float | None
    backtest_trades: int


@dataclass(frozen=True)
class ExpectancyBelowBacktest:
    """Realised expectancy below the backtest's minus ``std_errors`` standard errors of the realised mean."""

    realised_pct: float
    backtest_pct: float
    standard_error_pct: float
    std_errors: float
    trades: int
    backtest_trades: int

    @property
    def threshold_pct(self) -> float:
        return self.backtest_pct - self.std_errors * self.standard_error_pct

    @property
    def message(self) -> str:
        return (f"realised expectancy {self.realised_pct:+.3f}% per trade over {self.trades} trades is below the "
                f"backtest's {self.backtest_pct:+.3f}% ({self.backtest_trades} trades) by more than "
                f"{self.std_errors:g} standard errors ({self.standard_error_pct:.3f}%)")


def trade_return_pct(trade: ClosedTrade) -> float:
    """Net P&L as a percentage of the entry notional."""
    notional = trade.entry_price * trade.quantity
    return 100.0 * trade.pnl / notional if notional > 0 else 0.0


def mean_and_standard_error(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The mean and the standard error of the mean (sample deviation; None below 1 and 2 values)."""
    n = len(values)
    if n == 0:
        return None, None
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def expectancy_alert(realised: Sequence[float], backtest: Sequence[float], std_errors: float,
                     min_trades: int) -> ExpectancyBelowBacktest | None:
    """The alert when ``mean(realised) < mean(backtest) - std_errors * SE(realised)``, with ``min_trades`` at least.

    Returns are % of entry notional per trade. No alert without a backtest trade (nothing to compare with).
    """
    realised_mean, standard_error = mean_and_standard_error(realised)
    backtest_mean, _ = mean_and_standard_error(backtest)
    if len(realised) < max(min_trades, 2) or realised_mean is None or standard_error is None \
            or backtest_mean is None:
        return None
    if not realised_mean < backtest_mean - std_errors * standard_error:
        return None
    return ExpectancyBelowBacktest(realised_mean, backtest_mean, standard_error, std_errors, len(realised),
                                   len(backtest))


def compare_expectancy(live: Sequence[ClosedTrade], backtest: Sequence[ClosedTrade],
                       config: DriftConfig) -> tuple[ExpectancyComparison, ExpectancyBelowBacktest | None]:
    realised = [trade_return_pct(t) for t in live]
    tested = [trade_return_pct(t) for t in backtest]
    realised_mean, standard_error = mean_and_standard_error(realised)
    backtest_mean, _ = mean_and_standard_error(tested)
    comparison = ExpectancyComparison(realised_mean, standard_error, len(realised), backtest_mean, len(tested))
    return comparison, expectancy_alert(realised, tested, config.expectancy_std_errors, config.min_trades)
