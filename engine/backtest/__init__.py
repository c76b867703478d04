"""Provides the backtester: the one decision path over history, metrics, optimisation and reports."""

from engine.backtest.engine import BacktestEngine, to_ms
from engine.backtest.loop import BacktestCancelled
from engine.backtest.metrics import PerformanceMetrics, compute_metrics
from engine.backtest.params import ParameterSet
from engine.backtest.result import BacktestResult

__all__ = [
    "BacktestCancelled",
    "BacktestEngine",
    "BacktestResult",
    "ParameterSet",
    "PerformanceMetrics",
    "compute_metrics",
    "to_ms",
]
