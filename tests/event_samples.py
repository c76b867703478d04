"""Typed engine events with plausible values, for tests that need an event and care about a few fields only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.domain.events import (
    BreakerTripped,
    Event,
    OrderFilled,
    PositionClosed,
    PositionOpened,
    Severity,
)
from engine.domain.models import CircuitState, ExitKind, PositionSide, Side


@dataclass(frozen=True, kw_only=True)
class Happened(Event):
    """An event of no particular kind (a test's poke, a made-up critical condition)."""


def happened(time_ms: int, message: str = "", severity: Severity = Severity.INFO) -> Happened:
    return Happened(time_ms=time_ms, message=message, severity=severity)


def filled(time_ms: int, message: str = "filled", symbol: str = "BTC/USDT") -> OrderFilled:
    return OrderFilled(time_ms=time_ms, message=message, symbol=symbol, client_order_id=f"tb-{time_ms}",
                       side=Side.BUY, qty=0.01, price=64_000.0)


def opened(time_ms: int, symbol: str = "BTC/USDT", message: str = "opened", **fields: Any) -> PositionOpened:
    values: dict[str, Any] = {"side": PositionSide.LONG, "qty": 0.01, "price": 64_000.0, "stop": 63_000.0}
    return PositionOpened(time_ms=time_ms, message=message, symbol=symbol, **(values | fields))


def closed(time_ms: int, pnl: float, symbol: str = "BTC/USDT", message: str = "closed",
           **fields: Any) -> PositionClosed:
    values: dict[str, Any] = {"side": PositionSide.LONG, "qty": 0.01, "entry": 64_000.0, "exit": 64_000.0 + pnl * 100,
                              "exit_kind": ExitKind.SIGNAL, "reason": "signal: momentum faded"}
    return PositionClosed(time_ms=time_ms, message=message, symbol=symbol, pnl=pnl, **(values | fields))


def tripped(time_ms: int, breaker: str = "loss", message: str = "tripped", **fields: Any) -> BreakerTripped:
    values: dict[str, Any] = {"previous": CircuitState.CLOSED, "state": CircuitState.OPEN, "value": 5.0,
                              "threshold": 5.0, "reason": "5 consecutive losses", "since_ms": time_ms,
                              "resume_after_ms": None, "latching": False}
    return BreakerTripped(time_ms=time_ms, message=message, breaker=breaker, **(values | fields))
