"""Provides the immutable engine snapshot the console and Telegram render."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.domain.events import Event
from engine.domain.models import BreakerStatus, EngineState, Position, TradingState


@dataclass(frozen=True)
class SymbolView:
    """Latest analysis of one symbol, for the signals pane."""

    symbol: str
    last_price: float | None = None
    last_bar_ms: int | None = None
    signal: str = "NONE"
    signal_strength: float = 0.0
    trends: tuple[tuple[str, int], ...] = ()  # (timeframe, +1 up / -1 down / 0 flat)
    squeeze: str = "none"  # on | off | none
    volume_flag: str = ""  # e.g. "spike", "confirmed", ""
    confluence_multiplier: float = 0.0


FEED_OK, FEED_DEGRADED, FEED_STALE = "OK", "DEGRADED", "STALE"


@dataclass(frozen=True)
class FeedStatus:
    """How one symbol's live candles are doing (``engine.data.live_validation.FeedHealth``).

    Attributes:
        state: ``"OK"``; ``"DEGRADED"`` (the last candle was quarantined: not traded on); ``"STALE"`` (no new
            closed candle for ``data.stale_after_bars`` bars: no entries until one arrives).
        reason: why, for DEGRADED and STALE (the candle's time and the rule it broke; the last candle seen).
        since_ms: when the symbol entered this state (UTC ms), None while OK from the start.
    """

    symbol: str
    state: str = FEED_OK
    reason: str = ""
    since_ms: int | None = None


@dataclass(frozen=True)
class EngineSnapshot:
    """Everything the console shows, as of ``time_ms`` (UTC ms)."""

    time_ms: int
    mode: str  # "paper" | "live"
    exchange: str
    trading_state: TradingState
    feed_healthy: bool
    equity: float
    cash: float
    realized_pnl_today: float
    unrealized_pnl: float
    peak_equity: float
    drawdown_pct: float
    max_drawdown_pct: float
    daily_loss_pct: float
    max_drawdown_limit_pct: float
    daily_loss_limit_pct: float
    positions: tuple[Position, ...] = ()
    breakers: tuple[BreakerStatus, ...] = ()
    symbols: tuple[SymbolView, ...] = ()
    equity_history: tuple[float, ...] = ()
    recent_events: tuple[Event, ...] = field(default=())
    engine_state: EngineState = EngineState.RUNNING
    # symbols whose worker failed: they no longer trade (engine.runtime.worker_guard)
    failed_symbols: tuple[str, ...] = ()
    feed_status: tuple[FeedStatus, ...] = ()  # per symbol, live feed only; feed_healthy = every one OK

    @property
    def total_pnl(self) -> float:
        return self.realized_pnl_today + self.unrealized_pnl
