"""Provides build_engine_snapshot: the immutable view of a running engine that consoles and Telegram render."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.domain.snapshot import EngineSnapshot
from engine.runtime.latches import breaker_rows

if TYPE_CHECKING:
    from engine.runtime.engine import TradingEngine


def build_engine_snapshot(engine: TradingEngine) -> EngineSnapshot:
    """The engine now; also advances the engine's running maximum drawdown and day-start realised P&L."""
    now_ms = engine.clock.now_ms()
    portfolio = engine.portfolio
    equity = portfolio.equity()
    check = engine.core.last_limit_check
    peak = max(check.peak_equity, equity) if check is not None else equity
    drawdown = (peak - equity) / peak * 100.0 if peak > 0 else 0.0
    engine.max_drawdown_pct = max(engine.max_drawdown_pct, drawdown)
    day_key = engine.core.limits.trading_day_key(now_ms)
    if day_key != engine.snapshot_day_key:
        engine.snapshot_day_key, engine.realized_at_day_start = day_key, portfolio.realized_pnl
    risk = engine.core.risk.config
    return EngineSnapshot(
        time_ms=now_ms,
        mode=engine.mode,
        exchange=engine.settings.exchange.name,
        trading_state=engine.core.trading_state,
        feed_healthy=engine.feed_healthy,
        equity=equity,
        cash=portfolio.cash,
        realized_pnl_today=portfolio.realized_pnl - engine.realized_at_day_start,
        unrealized_pnl=portfolio.unrealized_pnl(),
        peak_equity=peak,
        drawdown_pct=drawdown,
        max_drawdown_pct=engine.max_drawdown_pct,
        daily_loss_pct=check.daily_loss_pct if check is not None else 0.0,
        max_drawdown_limit_pct=risk.max_drawdown_percent,
        daily_loss_limit_pct=risk.max_daily_loss_percent,
        positions=tuple(p.to_position() for _, p in sorted(portfolio.positions.items())),
        breakers=breaker_rows(engine.core),  # the breakers, then the emergency and loss-limit latches
        symbols=tuple(engine.views[s] for s in engine.symbols),
        equity_history=tuple(engine.equity_history),
        recent_events=tuple(engine.recent_events),
        engine_state=engine.engine_state,
        failed_symbols=engine.guard.failed_symbols,
        feed_status=engine.feed_status,
    )
