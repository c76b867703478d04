"""Provides the Telegram answers drawn from an engine snapshot (/status, /positions, /pnl...) and the daily report.

Pure functions of a snapshot and a :class:`DailyTally`; HTML as in :mod:`engine.notify.formatting`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.domain.events import BreakerEvent, BreakerHalfOpened, BreakerReset, BreakerTripped, Event, PositionClosed
from engine.domain.models import BreakerStatus, CircuitState, Position
from engine.domain.snapshot import EngineSnapshot
from engine.notify.formatting import esc, fmt_money, fmt_pct, fmt_price, fmt_qty, fmt_time, lines

NO_SNAPSHOT_TEXT = "The engine has not published a snapshot yet."


def format_status(snapshot: EngineSnapshot) -> str:
    """Answer to /status: state, mode, equity, P&L, drawdown, positions and breakers at a glance."""
    open_breakers = [b for b in snapshot.breakers if b.state is not CircuitState.CLOSED]
    return lines(
        f"<b>Status</b> · {esc(fmt_time(snapshot.time_ms))}",
        f"Trading: <b>{esc(snapshot.trading_state.value)}</b> · engine {esc(snapshot.engine_state)}",
        f"Mode: {esc(snapshot.mode)} on {esc(snapshot.exchange)} · feed "
        + ("healthy" if snapshot.feed_healthy else "<b>DOWN</b>"),
        f"Equity: <code>{esc(fmt_money(snapshot.equity))}</code>",
        f"P&amp;L today: <code>{esc(fmt_money(snapshot.total_pnl, signed=True))}</code>",
        f"Drawdown: <code>{esc(fmt_pct(snapshot.drawdown_pct))}</code> "
        f"(limit {esc(fmt_pct(snapshot.max_drawdown_limit_pct))})",
        f"Open positions: {len(snapshot.positions)}",
        f"Breakers open: {len(open_breakers)}"
        + (f" ({esc(', '.join(b.name for b in open_breakers))})" if open_breakers else ""),
    )


def _position_line(position: Position) -> str:
    stop = position.trailing_stop_price or position.stop_price
    parts = [
        f"<b>{esc(position.side.value.upper())} {esc(position.symbol)}</b>",
        f"qty <code>{esc(fmt_qty(position.quantity))}</code>",
        f"entry <code>{esc(fmt_price(position.entry_price))}</code>",
    ]
    if position.last_price is not None:
        parts.append(f"last <code>{esc(fmt_price(position.last_price))}</code>")
    if stop is not None:
        parts.append(f"stop <code>{esc(fmt_price(stop))}</code>")
    parts.append(f"uPnL <code>{esc(fmt_money(position.unrealized_pnl, signed=True))}</code>")
    return " · ".join(parts)


def format_positions(snapshot: EngineSnapshot) -> str:
    """Answer to /positions: one line per open position."""
    if not snapshot.positions:
        return "<b>Positions</b>\nNo open positions."
    return lines("<b>Positions</b>", *(_position_line(p) for p in snapshot.positions))


def format_pnl(snapshot: EngineSnapshot) -> str:
    """Answer to /pnl: realised, unrealised and total P&L today, equity and drawdown."""
    return lines(
        "<b>P&amp;L</b>",
        f"Realised today: <code>{esc(fmt_money(snapshot.realized_pnl_today, signed=True))}</code>",
        f"Unrealised: <code>{esc(fmt_money(snapshot.unrealized_pnl, signed=True))}</code>",
        f"Total: <b>{esc(fmt_money(snapshot.total_pnl, signed=True))}</b>",
        f"Equity: <code>{esc(fmt_money(snapshot.equity))}</code> (peak {esc(fmt_money(snapshot.peak_equity))})",
        f"Daily loss: <code>{esc(fmt_pct(snapshot.daily_loss_pct))}</code> "
        f"(limit {esc(fmt_pct(snapshot.daily_loss_limit_pct))})",
        f"Drawdown: <code>{esc(fmt_pct(snapshot.drawdown_pct))}</code> · max "
        f"<code>{esc(fmt_pct(snapshot.max_drawdown_pct))}</code>",
    )


def _breaker_line(breaker: BreakerStatus) -> str:
    mark = {"closed": "🟢", "half_open": "🟡", "open": "🔴"}.get(breaker.state.value, "")
    text = (
        f"{mark} <b>{esc(breaker.name)}</b> {esc(breaker.state.value)} · "
        f"<code>{esc(fmt_price(breaker.value))}</code> / <code>{esc(fmt_price(breaker.threshold))}</code>"
    )
    if breaker.latching:
        text += " · latching"
    if breaker.reason and breaker.state is not CircuitState.CLOSED:
        text += f"\n   {esc(breaker.reason)}"
    if breaker.resume_after_ms:
        text += f"\n   resumes after {esc(fmt_time(breaker.resume_after_ms))}"
    return text


def format_breakers(snapshot: EngineSnapshot) -> str:
    """Answer to /breakers: each breaker's state, value and threshold."""
    if not snapshot.breakers:
        return "<b>Circuit breakers</b>\nNo breakers reported."
    return lines("<b>Circuit breakers</b>", *(_breaker_line(b) for b in snapshot.breakers))


# --- daily report ----------------------------------------------------------------------------


@dataclass
class DailyTally:
    """What happened since the last daily report, counted from the events the notifier consumed.

    Attributes:
        since_ms: start of the period (UTC ms).
        trades: number of PositionClosed events.
        wins: closed trades with P&L >= 0.
        realized_pnl: sum of closed-trade P&L (quote currency).
        breaker_events: breaker trip/half-open/reset lines, oldest first.
    """

    since_ms: int
    trades: int = 0
    wins: int = 0
    realized_pnl: float = 0.0
    breaker_events: list[str] = field(default_factory=list)

    def record(self, event: Event) -> None:
        """Counts ``event`` if it is a closed trade or a breaker change."""
        match event:
            case PositionClosed(pnl=pnl):
                self.trades += 1
                self.realized_pnl += pnl
                self.wins += 1 if pnl >= 0 else 0
            case BreakerTripped() | BreakerHalfOpened() | BreakerReset():
                verb = _BREAKER_VERBS[type(event)]
                self.breaker_events.append(f"{fmt_time(event.time_ms)} {event.breaker or event.message} {verb}")


_BREAKER_VERBS: dict[type[BreakerEvent], str] = {
    BreakerTripped: "tripped", BreakerHalfOpened: "half-open", BreakerReset: "reset"}


def format_daily_report(snapshot: EngineSnapshot | None, tally: DailyTally, now_ms: int) -> str:
    """The daily report: P&L, drawdown, trades and breaker events since ``tally.since_ms``."""
    lines = [f"<b>Daily report</b> · {esc(fmt_time(now_ms))}"]
    if snapshot is None:
        lines.append(NO_SNAPSHOT_TEXT)
    else:
        lines += [
            f"Equity: <code>{esc(fmt_money(snapshot.equity))}</code>",
            f"P&amp;L today: <b>{esc(fmt_money(snapshot.total_pnl, signed=True))}</b> "
            f"(realised {esc(fmt_money(snapshot.realized_pnl_today, signed=True))}, "
            f"unrealised {esc(fmt_money(snapshot.unrealized_pnl, signed=True))})",
            f"Drawdown: <code>{esc(fmt_pct(snapshot.drawdown_pct))}</code> · max "
            f"<code>{esc(fmt_pct(snapshot.max_drawdown_pct))}</code>",
            f"Trading: {esc(snapshot.trading_state.value)} · open positions {len(snapshot.positions)}",
        ]
    win_rate = f", {100.0 * tally.wins / tally.trades:.0f}% won" if tally.trades else ""
    lines.append(
        f"Trades since {esc(fmt_time(tally.since_ms))}: <b>{tally.trades}</b>{win_rate}, "
        f"closed P&amp;L <code>{esc(fmt_money(tally.realized_pnl, signed=True))}</code>"
    )
    if tally.breaker_events:
        lines.append(f"Breaker events: {len(tally.breaker_events)}")
        lines += [f" • {esc(line)}" for line in tally.breaker_events[-10:]]
    else:
        lines.append("Breaker events: none")
    return "\n".join(lines)
