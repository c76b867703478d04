"""Provides the Python face of the compiled core's rows: closed trades as ``TradeRecord`` with their texts.

The kernels keep codes and decision bars; the texts the Python core writes (entry reasons, exit reasons)
are produced here from the prepared symbols, with the same wording as ``engine.core.decision``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.analysis.strategy import PreparedSymbol
from engine.config import RiskConfig
from engine.core.risk import SizeBound, _bound_reasons
from engine.core.state import (
    BOUND_BALANCE,
    BOUND_MAX_NOTIONAL,
    BOUND_MAX_RISK,
    BOUND_RISK,
    DAILY_LOSS_BIT,
    DRAWDOWN_BIT,
    EXIT_EMERGENCY,
    EXIT_END_OF_DATA,
    EXIT_MANUAL,
    EXIT_RISK_LIMIT,
    EXIT_SIGNAL,
    EXIT_STOP,
    EXIT_TARGET,
    EXIT_TRAILING_STOP,
    LONG,
)
from engine.domain.models import ClosedTrade, ExitKind, PositionSide
from engine.simulation.account import TradeRecord

EXIT_KINDS = {
    EXIT_SIGNAL: ExitKind.SIGNAL, EXIT_STOP: ExitKind.STOP, EXIT_TRAILING_STOP: ExitKind.TRAILING_STOP,
    EXIT_TARGET: ExitKind.TARGET, EXIT_RISK_LIMIT: ExitKind.RISK_LIMIT, EXIT_EMERGENCY: ExitKind.EMERGENCY_EXIT,
    EXIT_MANUAL: ExitKind.MANUAL, EXIT_END_OF_DATA: ExitKind.END_OF_DATA,
}
SIZE_BOUNDS = {BOUND_RISK: SizeBound.RISK, BOUND_MAX_RISK: SizeBound.MAX_RISK,
               BOUND_MAX_NOTIONAL: SizeBound.MAX_NOTIONAL, BOUND_BALANCE: SizeBound.BALANCE}


def risk_limit_reasons(risk: RiskConfig, breached: int, daily_loss_pct: float, drawdown_pct: float) -> str:
    """The breach reasons of ``AccountLimits.check``, joined as ``DecisionCore.check_account`` does."""
    reasons = []
    if breached & DAILY_LOSS_BIT:
        reasons.append(f"daily_loss {daily_loss_pct:.2f}% >= {risk.max_daily_loss_percent}%")
    if breached & DRAWDOWN_BIT:
        reasons.append(f"drawdown {drawdown_pct:.2f}% >= {risk.max_drawdown_percent}%")
    return "; ".join(reasons)


def exit_reason(row: np.void, prepared: PreparedSymbol, risk: RiskConfig) -> str:
    """``ClosedTrade.reason`` of a trade row: the stop kinds by name, else the exit decision's reason."""
    kind = int(row["exit_kind"])
    if kind in (EXIT_STOP, EXIT_TRAILING_STOP, EXIT_TARGET):
        return EXIT_KINDS[kind].value
    if kind == EXIT_SIGNAL:
        reasons = prepared.signals.signal_at(int(row["exit_bar"])).reasons or ("exit condition",)
        return "signal: " + "; ".join(reasons)
    if kind == EXIT_RISK_LIMIT:
        return "risk limit: " + risk_limit_reasons(
            risk, int(row["breached"]), float(row["daily_loss_pct"]), float(row["drawdown_pct"])
        )
    if kind == EXIT_END_OF_DATA:
        return "end of data"
    return EXIT_KINDS[kind].value


def trade_records(rows: np.ndarray, prepared: Sequence[PreparedSymbol], risk: RiskConfig) -> tuple[TradeRecord, ...]:
    """The trade rows as the Python core's ``TradeRecord`` values (texts included)."""
    bound_reasons = _bound_reasons(risk)
    records = []
    for row in rows:
        item = prepared[int(row["symbol"])]
        bound = SIZE_BOUNDS[int(row["size_bound"])]
        entry_reason = "; ".join(item.reasons_at(int(row["entry_bar"]))) + f"; {bound_reasons[bound]}"
        trade = ClosedTrade(
            symbol=item.symbol,
            side=PositionSide.LONG if int(row["side"]) == LONG else PositionSide.SHORT,
            quantity=float(row["quantity"]),
            entry_price=float(row["entry_price"]),
            exit_price=float(row["exit_price"]),
            entry_ms=int(row["entry_ms"]),
            exit_ms=int(row["exit_ms"]),
            pnl=float(row["pnl"]),
            fees=float(row["fees"]),
            reason=exit_reason(row, item, risk),
            exit_kind=EXIT_KINDS[int(row["exit_kind"])],
        )
        records.append(TradeRecord(trade, EXIT_KINDS[int(row["exit_kind"])], bool(row["ambiguous"]),
                                   entry_reason, bound, int(item.volume_rule_effect[int(row["entry_bar"])])))
    return tuple(records)
