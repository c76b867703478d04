"""Provides the Telegram HTML alert texts (one per engine event), value formatting and message coalescing.

Everything here is a pure function of its inputs, so the texts are
tested without a network. Values are escaped for Telegram's HTML parse mode (``<``, ``>``, ``&``);
only ``<b>``, ``<i>`` and ``<code>`` tags are produced.

Event kinds turned into alerts, and the ``Event.data`` keys read (every key is optional: a
missing key falls back to ``Event.message``, so the runtime may publish less):

============================  =================================================================
kind                          data keys
============================  =================================================================
PositionOpened                symbol, side, qty, entry, stop
PositionClosed                symbol, side, qty, entry, exit, pnl, pnl_pct, reason
StopMoved                     symbol, old_stop, new_stop (or stop), reason
BreakerTripped                breaker, reason, value, threshold, resume_after_ms
BreakerHalfOpened             breaker, reason
BreakerReset                  breaker, reason
RiskLimitWarning              limit, value, threshold, distance (the 80 % warning)
RiskLimitBreached             limit, value, threshold (the 100 % breach)
EmergencyExitStarted          reason, positions
EmergencyExitCompleted        closed, pnl, errors
TradingStateChanged           old, new (or state), reason
SystemError                   component, error
OrderRejected                 symbol, side, qty, reason
RiskLimitChanged              key, old, new, source (an authenticated runtime risk change)
DecisionDiverged              symbol, bar_ms, decision, live, backtest (engine.drift_watch)
ExpectancyBelowBacktest       realised_pct, backtest_pct, standard_error_pct, std_errors, trades,
                              backtest_trades
DriftCheckFailed              error
============================  =================================================================

Any other kind is not sent unless its severity is ``critical`` (then ``Event.message`` is sent).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from engine.models import Event

TELEGRAM_MAX_TEXT_CHARS = 4096  # Bot API limit for one sendMessage text (after entity parsing)
COALESCE_SEPARATOR = "\n\n"

SEVERITY_MARK = {"info": "", "warning": "⚠️ ", "critical": "🚨 "}


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


def _field(data: Mapping[str, Any], key: str, render: Callable[[Any], str], label: str) -> str | None:
    if data.get(key) is None:
        return None
    return f"{label}: <code>{esc(render(data[key]))}</code>"


def _message_line(event: Event) -> str | None:
    return esc(event.message) if event.message else None


def _position_opened(event: Event) -> str:
    d = event.data
    side = str(d.get("side", "")).upper()
    head = f"{side} {d['symbol']}" if "symbol" in d else ""
    return lines(
        _title(event, f"Position opened {head}".strip()),
        _field(d, "qty", fmt_qty, "Qty"),
        _field(d, "entry", fmt_price, "Entry"),
        _field(d, "stop", fmt_price, "Stop"),
        None if d else _message_line(event),
    )


def _position_closed(event: Event) -> str:
    d = event.data
    side = str(d.get("side", "")).upper()
    head = f"{side} {d['symbol']}" if "symbol" in d else ""
    pnl = as_float(d.get("pnl"))
    mark = "" if pnl is None else ("✅ " if pnl >= 0 else "🔻 ")
    pnl_line = None
    if pnl is not None:
        pct = f" ({fmt_pct(d['pnl_pct'], signed=True)})" if d.get("pnl_pct") is not None else ""
        pnl_line = f"P&amp;L: <b>{esc(fmt_money(pnl, signed=True))}</b>{esc(pct)}"
    return lines(
        mark + _title(event, f"Position closed {head}".strip()),
        _field(d, "qty", fmt_qty, "Qty"),
        f"Entry → exit: <code>{esc(fmt_price(d.get('entry')))} → {esc(fmt_price(d.get('exit')))}</code>"
        if "entry" in d or "exit" in d
        else None,
        pnl_line,
        f"Reason: {esc(d['reason'])}" if d.get("reason") else None,
        None if d else _message_line(event),
    )


def _stop_moved(event: Event) -> str:
    d = event.data
    new_stop = d.get("new_stop", d.get("stop"))
    move = None
    if new_stop is not None:
        old = f"{fmt_price(d['old_stop'])} → " if d.get("old_stop") is not None else ""
        move = f"Stop: <code>{esc(old + fmt_price(new_stop))}</code>"
    return lines(
        _title(event, f"Stop moved {d.get('symbol', '')}".strip()),
        move,
        f"Reason: {esc(d['reason'])}" if d.get("reason") else None,
        None if move else _message_line(event),
    )


def _breaker(title: str) -> Callable[[Event], str]:
    def render(event: Event) -> str:
        d = event.data
        name = d.get("breaker", d.get("name", ""))
        values = None
        if d.get("value") is not None and d.get("threshold") is not None:
            values = (
                f"Value: <code>{esc(fmt_price(d['value']))}</code>"
                f" / limit <code>{esc(fmt_price(d['threshold']))}</code>"
            )
        return lines(
            _title(event, f"{title}: {name}" if name else title),
            f"Reason: {esc(d['reason'])}" if d.get("reason") else _message_line(event),
            values,
            f"Resumes after: {esc(fmt_time(d['resume_after_ms']))}" if d.get("resume_after_ms") else None,
        )

    return render


def _risk_limit(title: str) -> Callable[[Event], str]:
    def render(event: Event) -> str:
        d = event.data
        used = None
        value, threshold = as_float(d.get("value")), as_float(d.get("threshold"))
        if value is not None and threshold:
            used = f"Used: <b>{esc(fmt_pct(100.0 * value / threshold))}</b> of the limit"
        return lines(
            _title(event, f"{title}: {d['limit']}" if d.get("limit") else title),
            f"Value: <code>{esc(fmt_price(value))}</code> / limit <code>{esc(fmt_price(threshold))}</code>"
            if value is not None and threshold is not None
            else _message_line(event),
            used,
            _field(d, "distance", fmt_price, "Distance to limit"),
        )

    return render


def _emergency_started(event: Event) -> str:
    d = event.data
    return lines(
        _title(event, "Emergency exit started"),
        f"Reason: {esc(d['reason'])}" if d.get("reason") else _message_line(event),
        _field(d, "positions", str, "Positions to close"),
    )


def _emergency_completed(event: Event) -> str:
    d = event.data
    return lines(
        _title(event, "Emergency exit completed"),
        _field(d, "closed", str, "Positions closed"),
        f"P&amp;L: <b>{esc(fmt_money(d['pnl'], signed=True))}</b>" if d.get("pnl") is not None else None,
        f"Errors: {esc(d['errors'])}" if d.get("errors") else None,
        None if d else _message_line(event),
    )


def _state_changed(event: Event) -> str:
    d = event.data
    new = d.get("new", d.get("state"))
    change = None
    if new is not None:
        change = f"<b>{esc(d['old'])} → {esc(new)}</b>" if d.get("old") is not None else f"<b>{esc(new)}</b>"
    return lines(
        _title(event, "Trading state changed"),
        change,
        f"Reason: {esc(d['reason'])}" if d.get("reason") else (None if change else _message_line(event)),
    )


def _system_error(event: Event) -> str:
    d = event.data
    return lines(
        _title(event, f"System error in {d['component']}" if d.get("component") else "System error"),
        _message_line(event),
        f"<code>{esc(d['error'])}</code>" if d.get("error") else None,
    )


def _risk_limit_changed(event: Event) -> str:
    d = event.data
    change = None
    if d.get("key") is not None:
        change = f"<code>{esc(d['key'])}</code>: <b>{esc(d.get('old'))} → {esc(d.get('new'))}</b>"
    return lines(
        _title(event, "Risk setting changed"),
        change or _message_line(event),
        f"By: {esc(d['source'])}" if d.get("source") else None,
    )


def _order_rejected(event: Event) -> str:
    d = event.data
    what = " ".join(str(d[k]).upper() if k == "side" else str(d[k]) for k in ("side", "symbol") if d.get(k))
    return lines(
        _title(event, f"Order rejected {what}".strip()),
        _field(d, "qty", fmt_qty, "Qty"),
        f"Reason: {esc(d['reason'])}" if d.get("reason") else _message_line(event),
    )


def _decision_diverged(event: Event) -> str:
    d = event.data
    what = f" at the {d['decision']}" if d.get("decision") else ""
    return lines(
        _title(event, f"Live left the backtest {d.get('symbol', '')}".strip() + what),
        _field(d, "bar_ms", fmt_time, "Bar"),
        f"Live: {esc(d['live'])}" if d.get("live") else None,
        f"Backtest: {esc(d['backtest'])}" if d.get("backtest") else None,
        None if d.get("live") and d.get("backtest") else _message_line(event),
    )


def _expectancy_below_backtest(event: Event) -> str:
    d = event.data
    compared = None
    if d.get("realised_pct") is not None and d.get("backtest_pct") is not None:
        compared = (f"Per trade: <b>{esc(fmt_pct(d['realised_pct'], signed=True))}</b> live vs "
                    f"<code>{esc(fmt_pct(d['backtest_pct'], signed=True))}</code> backtest")
    spread = None
    if d.get("standard_error_pct") is not None and d.get("std_errors") is not None:
        spread = f"Below by more than {esc(d['std_errors'])} × SE <code>{esc(fmt_pct(d['standard_error_pct']))}</code>"
    return lines(
        _title(event, "Expectancy below the backtest"),
        compared or _message_line(event),
        spread,
        _field(d, "trades", str, "Live trades"),
    )


def _drift_check_failed(event: Event) -> str:
    d = event.data
    return lines(
        _title(event, "Performance drift check failed"),
        f"<code>{esc(d['error'])}</code>" if d.get("error") else _message_line(event),
        "Trading goes on; reported once.",
    )


EVENT_FORMATTERS: dict[str, Callable[[Event], str]] = {
    "PositionOpened": _position_opened,
    "PositionClosed": _position_closed,
    "StopMoved": _stop_moved,
    "BreakerTripped": _breaker("Circuit breaker tripped"),
    "BreakerHalfOpened": _breaker("Circuit breaker half-open"),
    "BreakerReset": _breaker("Circuit breaker reset"),
    "RiskLimitWarning": _risk_limit("Risk limit at 80%"),
    "RiskLimitBreached": _risk_limit("Risk limit breached"),
    "EmergencyExitStarted": _emergency_started,
    "EmergencyExitCompleted": _emergency_completed,
    "TradingStateChanged": _state_changed,
    "SystemError": _system_error,
    "OrderRejected": _order_rejected,
    "RiskLimitChanged": _risk_limit_changed,
    "DecisionDiverged": _decision_diverged,
    "ExpectancyBelowBacktest": _expectancy_below_backtest,
    "DriftCheckFailed": _drift_check_failed,
}


def format_event(event: Event) -> str | None:
    """The alert text for ``event``, or None when this kind is not worth a phone notification."""
    formatter = EVENT_FORMATTERS.get(event.kind)
    if formatter is not None:
        return formatter(event)
    if event.severity == "critical":
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
