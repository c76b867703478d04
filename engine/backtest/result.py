"""Provides BacktestResult and its deterministic JSON and CSV forms.

The same inputs give byte-identical JSON: keys sorted, floats written with 12 significant digits,
non-finite numbers as ``null``, and nothing taken from the wall clock.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.analysis.volume_rules import DOWNSIZE_RULES
from engine.backtest.metrics import PerformanceMetrics
from engine.core.risk import SizeBound
from engine.domain.models import FloatArray, IntArray
from engine.simulation.account import TradeRecord

FLOAT_SIGNIFICANT_DIGITS = 12


def plain(value: Any) -> Any:
    """``value`` as plain JSON data with fixed float formatting (non-finite floats become None)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return None
        return float(f"{number:.{FLOAT_SIGNIFICANT_DIGITS}g}")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return str(value)


def dumps(value: Any) -> str:
    """Deterministic JSON text of ``value``."""
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def iso(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trade_row(record: TradeRecord) -> dict[str, Any]:
    trade = record.trade
    return {
        "symbol": trade.symbol,
        "side": trade.side.value,
        "quantity": trade.quantity,
        "entry_time_ms": trade.entry_ms,
        "exit_time_ms": trade.exit_ms,
        "entry_price": trade.entry_price,
        "exit_price": trade.exit_price,
        "fees": trade.fees,
        "pnl": trade.pnl,
        "exit_kind": record.exit_kind.value,
        "stop_and_target_in_one_bar": record.stop_and_target_in_one_bar,
        "size_bound": record.size_bound.value,
    }


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Everything one backtest produced.

    Attributes:
        symbols: traded symbols, sorted.
        timeframe: bar size of every symbol.
        start_ms / end_ms: first traded bar's open and last traded bar's close (UTC ms).
        params: the strategy parameters (flat, see ``StrategyParams.flat``) plus ``risk.*``/``breaker.*`` keys.
        assumptions: fill model, market limits and run options (e.g. ``unattended``).
        trades: closed trades in exit order.
        equity_time_ms / equity: equity sampled at each bar close of the merged timeline (quote currency).
        in_market: per sample, whether any position was open.
        metrics: the performance summary.
        event_counts: number of events of each kind (breaker trips, state changes, rejections...).
        volume_signal_counts: entry signals in the window vetoed / downsized by each volume rule, summed over
            symbols (``engine.analysis.volume_rules.volume_rule_counts``; a signal while a position is open counts too).
    """

    symbols: tuple[str, ...]
    timeframe: str
    start_ms: int
    end_ms: int
    initial_capital: float
    params: dict[str, Any]
    assumptions: dict[str, Any]
    trades: tuple[TradeRecord, ...]
    equity_time_ms: IntArray
    equity: FloatArray
    in_market: np.ndarray
    metrics: PerformanceMetrics
    event_counts: dict[str, int] = field(default_factory=dict)
    rejected_orders: int = 0
    volume_signal_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ambiguous_trades(self) -> int:
        """Trades whose exit bar reached both the stop and the target (the stop was assumed)."""
        return sum(1 for t in self.trades if t.stop_and_target_in_one_bar)

    @property
    def entries_by_size_bound(self) -> dict[str, int]:
        """How many entries each sizing rule decided (``risk``: no cap bound), every rule listed."""
        counts = dict.fromkeys((bound.value for bound in SizeBound), 0)
        for record in self.trades:
            counts[record.size_bound.value] += 1
        return counts

    @property
    def capped_entries(self) -> int:
        """Entries whose size a cap (max risk, max notional or the balance) decided instead of the risk budget."""
        return sum(1 for record in self.trades if record.size_bound is not SizeBound.RISK)

    def metrics_dict(self) -> dict[str, Any]:
        """The metrics plus run extras (what ``tradebot backtest --json`` prints)."""
        values = self.metrics.to_dict()
        values["stop_and_target_in_one_bar_trades"] = self.ambiguous_trades
        values["rejected_orders"] = self.rejected_orders
        values["capped_entries"] = self.capped_entries
        for bound, count in self.entries_by_size_bound.items():
            values[f"entries_sized_by_{bound}"] = count
        for rule, bit in DOWNSIZE_RULES.items():
            values[f"entries_downsized_{rule}"] = sum(1 for record in self.trades if record.volume_effect & bit)
        for key, count in self.volume_signal_counts.items():
            values[f"signals_{key}"] = count
        return values

    def to_dict(self, include_curve: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "symbols": list(self.symbols),
            "timeframe": self.timeframe,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "start": iso(self.start_ms),
            "end": iso(self.end_ms),
            "initial_capital": self.initial_capital,
            "params": self.params,
            "assumptions": self.assumptions,
            "metrics": self.metrics_dict(),
            "trades": [trade_row(t) for t in self.trades],
            "event_counts": self.event_counts,
        }
        if include_curve:
            data["equity"] = {"timestamp_ms": self.equity_time_ms.tolist(), "equity": self.equity.tolist()}
        return data

    def to_json(self, include_curve: bool = True) -> str:
        return dumps(self.to_dict(include_curve))

    def export_csv(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``trades.csv`` and ``equity.csv`` (``timestamp_ms,equity``) into ``directory``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        trades_path = folder / "trades.csv"
        columns = [
            "symbol",
            "side",
            "quantity",
            "entry_time",
            "exit_time",
            "entry_time_ms",
            "exit_time_ms",
            "entry_price",
            "exit_price",
            "fees",
            "pnl",
            "exit_kind",
            "stop_and_target_in_one_bar",
            "size_bound",
        ]
        with trades_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for record in self.trades:
                row = plain(trade_row(record))
                row["entry_time"] = iso(record.trade.entry_ms)
                row["exit_time"] = iso(record.trade.exit_ms)
                writer.writerow(row)
        equity_path = folder / "equity.csv"
        with equity_path.open("w", newline="") as handle:
            handle.write("timestamp_ms,equity\n")
            for time_ms, value in zip(self.equity_time_ms.tolist(), self.equity.tolist(), strict=True):
                handle.write(f"{time_ms},{plain(value)}\n")
        return trades_path, equity_path
