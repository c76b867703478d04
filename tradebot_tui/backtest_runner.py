"""Provides the backtest screen's bridge to ``engine.backtest``: a request in, a display-ready run out.

The screen calls a :data:`BacktestRunner` in a thread worker; :func:`run_backtest` is the real
one. It loads the bundled candles of one symbol, applies named parameter overrides (the
``engine.backtest.params`` names: ``risk.*``, ``breaker.*``, ``signal.*`` and strategy fields)
and runs the engine's backtester, which is the same decision path paper and live trading use.
Nothing here computes a metric: :func:`run_from_result` only picks and formats the engine's.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.backtest.params import parse_value
from engine.config import Settings
from engine.domain.models import ClosedTrade

ProgressCallback = Callable[[float], None]  # ratio in [0, 1] of the bars processed
CancelCheck = Callable[[], bool]
DAY_MS = 86_400_000
PERIOD_CHOICES: tuple[tuple[str, int | None], ...] = (
    ("last 30 days", 30),
    ("last 90 days", 90),
    ("last 180 days", 180),
    ("last 365 days", 365),
    ("all bundled data", None),
)


@dataclass(frozen=True)
class BacktestRequest:
    """What the user picked on the backtest screen.

    Attributes:
        symbol: e.g. ``BTC/USDT``.
        timeframe: bar size, e.g. ``1h``.
        period_days: the last N days of the data; None = all of it.
        overrides: named parameter overrides, e.g. ``(("risk.risk_per_trade_percent", 0.5),)``.
    """

    symbol: str
    timeframe: str
    period_days: int | None = 90
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        period = "all" if self.period_days is None else f"{self.period_days}d"
        params = " ".join(f"{k.split('.')[-1]}={v}" for k, v in self.overrides)
        return f"{self.symbol} {self.timeframe} {period}{' ' + params if params else ''}"


@dataclass(frozen=True)
class BacktestRun:
    """One finished backtest as the screen shows it.

    Attributes:
        metrics: ``(name, formatted value)`` in display order.
        day: per equity sample, days since the first sample (the charts' x axis).
        equity: equity per sample, quote currency.
        drawdown_pct: drawdown per sample, pct in [0, 100] below the running peak.
        trades: closed trades in exit order.
    """

    label: str
    metrics: tuple[tuple[str, str], ...]
    day: tuple[float, ...] = ()
    equity: tuple[float, ...] = ()
    drawdown_pct: tuple[float, ...] = ()
    trades: tuple[ClosedTrade, ...] = field(default=())


BacktestRunner = Callable[[Settings, BacktestRequest, ProgressCallback, CancelCheck], BacktestRun]


def parse_overrides(text: str) -> tuple[tuple[str, Any], ...]:
    """``"risk.risk_per_trade_percent=0.5 signal.fade_bars=3"`` as typed ``(name, value)`` pairs.

    Raises:
        ValueError: a token is not ``name=value``.
    """
    pairs: list[tuple[str, Any]] = []
    for token in shlex.split(text.replace(",", " ")):
        name, sep, value = token.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{token!r} is not name=value")
        pairs.append((name.strip(), parse_value(value)))
    return tuple(pairs)


def _ratio_pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value * 100:+.2f}%"


def _number(value: float, spec: str = ".2f") -> str:
    return "-" if not math.isfinite(value) else format(value, spec)


def _capped_entries(result: Any) -> str:
    """``"3 of 40 (max risk 1, max notional 2)"``: how often a sizing cap, not the risk budget, decided the size."""
    counts = result.metrics_dict()
    trades = int(counts["total_trades"])
    capped = int(counts["capped_entries"])
    parts = [f"{name} {counts[key]}" for key, name in (
        ("entries_sized_by_max_risk", "max risk"), ("entries_sized_by_max_notional", "max notional"),
        ("entries_sized_by_balance", "balance")) if counts[key]]
    return f"{capped} of {trades}" + (f" ({', '.join(parts)})" if parts else "")


def run_from_result(label: str, result: Any) -> BacktestRun:
    """The display form of an ``engine.backtest.result.BacktestResult``."""
    from engine.backtest.metrics import drawdown_series

    m = result.metrics
    metrics = (
        ("total return", _ratio_pct(m.total_return)),
        ("annual return", _ratio_pct(m.annual_return)),
        ("max drawdown", _ratio_pct(-m.max_drawdown)),
        ("sharpe", _number(m.sharpe_ratio)),
        ("sortino", _number(m.sortino_ratio)),
        ("calmar", _number(m.calmar_ratio)),
        ("trades", str(m.total_trades)),
        ("win rate", "-" if not math.isfinite(m.win_rate) else f"{m.win_rate * 100:.1f}%"),
        ("profit factor", _number(m.profit_factor)),
        ("expectancy", _number(m.expectancy, ",.2f")),
        ("net profit", _number(m.net_profit, ",.2f")),
        ("fees", _number(m.total_fees, ",.2f")),
        ("exposure", "-" if not math.isfinite(m.exposure) else f"{m.exposure * 100:.1f}%"),
        ("final equity", _number(m.final_equity, ",.2f")),
        ("entries capped", _capped_entries(result)),
    )
    equity = np.asarray(result.equity, dtype=np.float64)
    times = np.asarray(result.equity_time_ms, dtype=np.int64)
    drawdown_ratio, _ = drawdown_series(equity, result.initial_capital)
    day = (times - times[0]) / DAY_MS if len(times) else times.astype(np.float64)
    trades = tuple(getattr(record, "trade", record) for record in result.trades)
    return BacktestRun(
        label=label,
        metrics=metrics,
        day=tuple(day.tolist()),
        equity=tuple(equity.tolist()),
        drawdown_pct=tuple((drawdown_ratio * 100.0).tolist()),
        trades=trades,
    )


def run_backtest(
    settings: Settings, request: BacktestRequest, progress: ProgressCallback, cancel: CancelCheck
) -> BacktestRun:
    """Run one backtest on the bundled candles (blocking; call it from a thread).

    Raises:
        engine.backtest.BacktestCancelled: ``cancel()`` returned True.
        engine.domain.errors.BacktestException: no bars in the window.
        ValueError: an unknown parameter name or an invalid value.
    """
    from engine.backtest import BacktestEngine
    from engine.data.sample import load_sample

    candles = load_sample(request.symbol, request.timeframe)
    start_ms = None
    if request.period_days is not None and len(candles):
        # Only the trading window is cut: indicators still warm up on the bars before it.
        start_ms = int(candles.open_time_ms[-1]) - request.period_days * DAY_MS
    backtester = BacktestEngine(candles, settings=settings)
    result = backtester.run_backtest(
        start_ms, None, overrides=dict(request.overrides), progress=progress, cancel=cancel
    )
    return run_from_result(request.label, result)
