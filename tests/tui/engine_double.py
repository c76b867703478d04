"""Provides a recording engine double and crafted, deterministic snapshots for console tests.

The double implements ``engine.domain.bus.EngineHandle``: it records submitted commands and
publishes whatever snapshots and events a test hands it. It never changes its own state in
response to a command, so tests can check the console waits for the engine to report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.domain.bus import Bus
from engine.domain.commands import Command
from engine.domain.events import Event, Severity
from engine.domain.models import BreakerStatus, CircuitState, EngineState, Position, PositionSide, TradingState
from engine.domain.snapshot import EngineSnapshot, SymbolView
from tests.event_samples import filled, tripped

T0_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
HOUR_MS = 3_600_000


class RecordingEngine:
    """An EngineHandle that records commands and publishes what the test tells it to."""

    def __init__(self) -> None:
        self.bus = Bus()
        self.commands: list[Command] = []
        self._snapshot: EngineSnapshot | None = None

    async def submit(self, command: Command) -> None:
        self.commands.append(command)

    def snapshot(self) -> EngineSnapshot | None:
        return self._snapshot

    def publish(self, snapshot: EngineSnapshot) -> None:
        self._snapshot = snapshot
        self.bus.publish_snapshot(snapshot)


def crafted_positions() -> tuple[Position, ...]:
    return (
        Position("BTC/USDT", PositionSide.LONG, 0.015, 64_000.0, T0_MS - 5 * HOUR_MS, 62_500.0, 63_800.0, 64_900.0),
        Position("ETH/USDT", PositionSide.LONG, 0.8, 3_400.0, T0_MS - 2 * HOUR_MS, 3_310.0, None, 3_372.5),
    )


def crafted_breakers() -> tuple[BreakerStatus, ...]:
    return (
        BreakerStatus("volatility", CircuitState.CLOSED, 1.4, 3.0),
        BreakerStatus(
            "loss",
            CircuitState.OPEN,
            5.0,
            5.0,
            reason="5 consecutive losses",
            since_ms=T0_MS - 40 * 60_000,
            latching=True,
        ),
        BreakerStatus(
            "system",
            CircuitState.HALF_OPEN,
            2.0,
            10.0,
            reason="api errors",
            since_ms=T0_MS - 20 * 60_000,
            resume_after_ms=T0_MS + 10 * 60_000,
        ),
    )


def crafted_symbols() -> tuple[SymbolView, ...]:
    return (
        SymbolView("BTC/USDT", 64_900.0, T0_MS, "LONG", 0.72, (("1h", 1), ("4h", 1), ("1d", 1)), "off", "confirmed"),
        SymbolView("ETH/USDT", 3_372.5, T0_MS, "NONE", 0.0, (("1h", -1), ("4h", 1), ("1d", 0)), "on", ""),
        SymbolView("SOL/USDT", 142.31, T0_MS, "EXIT", 0.4, (("1h", -1), ("4h", -1), ("1d", -1)), "on", "spike"),
    )


@dataclass(frozen=True, kw_only=True)
class EngineStarted(Event):
    """A display-only event of the crafted history."""


@dataclass(frozen=True, kw_only=True)
class RiskWarning(Event):
    """A display-only event of the crafted history."""


def crafted_events() -> tuple[Event, ...]:
    return (
        EngineStarted(time_ms=T0_MS - 6 * HOUR_MS, message="paper engine started on replay feed"),
        filled(T0_MS - 5 * HOUR_MS, "BUY 0.015 BTC/USDT @ 64,000.00"),
        tripped(T0_MS - 40 * 60_000, message="loss breaker tripped: 5 consecutive losses"),
        RiskWarning(time_ms=T0_MS - 10 * 60_000, message="drawdown at 80% of its limit", severity=Severity.WARNING),
    )


def crafted_snapshot(**changes: object) -> EngineSnapshot:
    """A busy but fixed paper-mode snapshot: two positions, three breakers, three symbols, some events."""
    equity_history = tuple(10_000.0 + 40.0 * ((i * 7) % 13) - 6.0 * i for i in range(60))
    snapshot = EngineSnapshot(
        time_ms=T0_MS,
        mode="paper",
        exchange="binance",
        trading_state=TradingState.ACTIVE,
        feed_healthy=True,
        equity=9_731.4,
        cash=8_102.9,
        realized_pnl_today=-142.35,
        unrealized_pnl=25.48,
        peak_equity=10_480.0,
        drawdown_pct=7.14,
        max_drawdown_pct=8.2,
        daily_loss_pct=1.2,
        max_drawdown_limit_pct=10.0,
        daily_loss_limit_pct=5.0,
        positions=crafted_positions(),
        breakers=crafted_breakers(),
        symbols=crafted_symbols(),
        equity_history=equity_history,
        recent_events=crafted_events(),
        engine_state=EngineState.RUNNING,
    )
    return dataclasses.replace(snapshot, **changes)  # type: ignore[arg-type]
