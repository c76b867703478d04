"""Provides the Telegram HTML alert texts (one per engine event), value formatting and message coalescing.

Everything here is a pure function of its inputs, so the texts are
tested without a network. Values are escaped for Telegram's HTML parse mode (``<``, ``>``, ``&``);
only ``<b>``, ``<i>`` and ``<code>`` tags are produced.

Events with their own alert text (see :func:`format_event`): positions opened and closed, breaker
trips / half-opens / resets, loss-limit warnings and breaches, emergency exits, trading state changes,
system errors, rejected orders, risk setting changes and the performance drift findings.

Any other event is not sent unless its severity is critical (then its message is sent).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from engine.domain.events import (
    BreakerEvent,
    BreakerHalfOpened,
    BreakerReset,
    BreakerTripped,
    DecisionDiverged,
    DriftCheckFailed,
    EmergencyExitCompleted,
    EmergencyExitStarted,
    Event,
    ExpectancyBelowBacktest,
    OrderRejected,
    PositionClosed,
    PositionOpened,
    RiskLimitBreached,
    RiskLimitChanged,
    RiskLimitEvent,
    RiskLimitWarning,
    Severity,
    SystemError,
    TradingStateChanged,
)

TELEGRAM_MAX_TEXT_CHARS = 4096  # Bot API limit for one sendMessage text (after entity parsing)
COALESCE_SEPARATOR = "\n\n"

SEVERITY_MARK = {Severity.INFO: "", Severity.WARNING: "⚠️ ", Severity.CRITICAL: "🚨 "}


def esc(value: object) -> str:
    """``value`` as text safe inside Telegram HTML."""
    return html.escape(str(value), quote=False)


def fmt_money(value: Any, signed: bool = False) -> str:
    """A quote-currency amount with two decimals and thousands separators (``+1,234.50``)."""
    number = as_float(value)
    if number is None:
        return "?"
    return f"{number:+,.2f}" if signed else f"{number:,.2f}"


def fmt_price(value: Any) -> str:
    """A price in quote currency with precision that suits its magnitude (no trailing zeros)."""
    number = as_float(value)
    if number is None:
        return "?"
    magnitude = abs(number)
    decimals = 2 if magnitude >= 1000 else 4 if magnitude >= 1 else 8
    text = f"{number:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fmt_qty(value: Any) -> str:
    """A quantity in base currency with up to 8 decimals (no trailing zeros)."""
    number = as_float(value)
    if number is None:
        return "?"
    text = f"{number:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def fmt_pct(value: Any, signed: bool = False) -> str:
    """A percentage given as pct in [0, 100] (``2.35%``)."""
    number = as_float(value)
    if number is None:
        return "?"
    return f"{number:+.2f}%" if signed else f"{number:.2f}%"


def fmt_time(time_ms: int | None) -> str:
    """UTC time of day (``2024-01-02 20:00 UTC``) for a UTC ms timestamp."""
    if time_ms is None:
        return "?"
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _title(event: Event, title: str) -> str:
    return f"{SEVERITY_MARK.get(event.severity, '')}<b>{esc(title)}</b>"


def lines(*lines: str | None) -> str:
    return "\n".join(line for line in lines if line)


def _value(label: str, text: str) -> str:
    return f"{label}: <code>{esc(text)}</code>"


def _reason(reason: str) -> str | None:
    return f"Reason: {esc(reason)}" if reason else None


def _message_line(event: Event) -> str | None:
    return esc(event.message) if event.message else None


def _position_opened(event: PositionOpened) -> str:
    return lines(
        _title(event, f"Position opened {event.side.value.upper()} {event.symbol}"),
        _value("Qty", fmt_qty(event.qty)),
        _value("Entry", fmt_price(event.price)),
        _value("Stop", fmt_price(event.stop)),
        None if event.target is None else _value("Target", fmt_price(event.target)),
    )


def _position_closed(event: PositionClosed) -> str:
    mark = "✅ " if event.pnl >= 0 else "🔻 "
    return lines(
        mark + _title(event, f"Position closed {event.side.value.upper()} {event.symbol}"),
        _value("Qty", fmt_qty(event.qty)),
        f"Entry → exit: <code>{esc(fmt_price(event.entry))} → {esc(fmt_price(event.exit))}</code>",
        f"P&amp;L: <b>{esc(fmt_money(event.pnl, signed=True))}</b>",
        f"Exit: {esc(event.exit_kind.value)}" + (f" ({esc(event.reason)})" if event.reason != event.exit_kind else ""),
    )


def _breaker(title: str) -> Callable[[BreakerEvent], str]:
    def render(event: BreakerEvent) -> str:
        return lines(
            _title(event, f"{title}: {event.breaker}"),
            _reason(event.reason) or _message_line(event),
            f"Value: <code>{esc(fmt_price(event.value))}</code> / limit <code>{esc(fmt_price(event.threshold))}</code>",
            f"Resumes after: {esc(fmt_time(event.resume_after_ms))}" if event.resume_after_ms else None,
        )

    return render


def _risk_limit(title: str) -> Callable[[RiskLimitEvent], str]:
    def render(event: RiskLimitEvent) -> str:
        used = f"Used: <b>{esc(fmt_pct(100.0 * event.value_pct / event.limit_pct))}</b> of the limit" \
            if event.limit_pct else None
        return lines(
            _title(event, f"{title}: {event.limit}"),
            f"Value: <code>{esc(fmt_pct(event.value_pct))}</code> / limit <code>{esc(fmt_pct(event.limit_pct))}</code>",
            used,
            _value("Distance to limit", fmt_pct(event.distance_pct)),
        )

    return render


def _emergency_started(event: EmergencyExitStarted) -> str:
    return lines(_title(event, "Emergency exit started"), _reason(event.reason) or _message_line(event))


def _emergency_completed(event: EmergencyExitCompleted) -> str:
    return lines(_title(event, "Emergency exit completed"), _message_line(event), _reason(event.reason))


def _state_changed(event: TradingStateChanged) -> str:
    return lines(
        _title(event, "Trading state changed"),
        f"<b>{esc(event.previous.value)} → {esc(event.state.value)}</b>",
        _reason(event.reason),
    )


def _system_error(event: SystemError) -> str:
    return lines(
        _title(event, f"System error in {event.component}"),
        _message_line(event),
        f"<code>{esc(event.error)}</code>" if event.error else None,
    )


def _risk_limit_changed(event: RiskLimitChanged) -> str:
    return lines(
        _title(event, "Risk setting changed"),
        f"<code>{esc(event.key)}</code>: <b>{esc(event.old)} → {esc(event.new)}</b>",
        f"By: {esc(event.source)}" if event.source else None,
    )


def _order_rejected(event: OrderRejected) -> str:
    return lines(_title(event, f"Order rejected {event.symbol}"), _message_line(event))


def _decision_diverged(event: DecisionDiverged) -> str:
    return lines(
        _title(event, f"Live left the backtest {event.symbol} at the {event.decision}"),
        _value("Bar", fmt_time(event.bar_ms)),
        f"Live: {esc(event.live)}",
        f"Backtest: {esc(event.backtest)}",
    )


def _expectancy_below_backtest(event: ExpectancyBelowBacktest) -> str:
    return lines(
        _title(event, "Expectancy below the backtest"),
        f"Per trade: <b>{esc(fmt_pct(event.realised_pct, signed=True))}</b> live vs "
        f"<code>{esc(fmt_pct(event.backtest_pct, signed=True))}</code> backtest",
        f"Below by more than {esc(event.std_errors)} × SE <code>{esc(fmt_pct(event.standard_error_pct))}</code>",
        _value("Live trades", str(event.trades)),
    )


def _drift_check_failed(event: DriftCheckFailed) -> str:
    return lines(
        _title(event, "Performance drift check failed"),
        f"<code>{esc(event.error)}</code>" if event.error else _message_line(event),
        "Trading goes on; reported once.",
    )


def format_event(event: Event) -> str | None:
    """The alert text for ``event``, or None when this kind is not worth a phone notification.

    The kinds below have their own text; any other is sent (as its message) only when critical.
    """
    match event:
        case PositionOpened():
            return _position_opened(event)
        case PositionClosed():
            return _position_closed(event)
        case BreakerTripped():
            return _breaker("Circuit breaker tripped")(event)
        case BreakerHalfOpened():
            return _breaker("Circuit breaker half-open")(event)
        case BreakerReset():
            return _breaker("Circuit breaker reset")(event)
        case RiskLimitWarning():
            return _risk_limit("Risk limit at 80%")(event)
        case RiskLimitBreached():
            return _risk_limit("Risk limit breached")(event)
        case EmergencyExitStarted():
            return _emergency_started(event)
        case EmergencyExitCompleted():
            return _emergency_completed(event)
        case TradingStateChanged():
            return _state_changed(event)
        case SystemError():
            return _system_error(event)
        case OrderRejected():
            return _order_rejected(event)
        case RiskLimitChanged():
            return _risk_limit_changed(event)
        case DecisionDiverged():
            return _decision_diverged(event)
        case ExpectancyBelowBacktest():
            return _expectancy_below_backtest(event)
        case DriftCheckFailed():
            return _drift_check_failed(event)
    if event.severity is Severity.CRITICAL:
        return lines(_title(event, event.kind), _message_line(event))
    return None


# --- coalescing ------------------------------------------------------------------------------


def coalesce(texts: Sequence[str], max_chars: int = TELEGRAM_MAX_TEXT_CHARS) -> list[list[int]]:
    """Groups consecutive texts into messages of at most ``max_chars``; returns index groups.

    Each group becomes one Telegram message (texts joined by a blank line), in order. A text
    longer than ``max_chars`` on its own is a group of one and is truncated by :func:`join_texts`.
    """
    groups: list[list[int]] = []
    length = 0
    for index, text in enumerate(texts):
        needed = len(text) + (len(COALESCE_SEPARATOR) if groups and groups[-1] else 0)
        if groups and groups[-1] and length + needed <= max_chars:
            groups[-1].append(index)
            length += needed
        else:
            groups.append([index])
            length = len(text)
    return groups


def join_texts(texts: Iterable[str], max_chars: int = TELEGRAM_MAX_TEXT_CHARS) -> str:
    """One message from several alert texts; cut (on a line break) to ``max_chars`` if needed."""
    text = COALESCE_SEPARATOR.join(texts)
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars - 2)
    return text[: cut if cut > 0 else max_chars - 2] + "\n…"
