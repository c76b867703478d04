"""Specification of the Telegram texts: each alert kind reads well, values are escaped, bursts coalesce."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.models import Event
from engine.notify.formatting import TELEGRAM_MAX_TEXT_CHARS, coalesce, format_event, join_texts
from engine.notify.views import (
    DailyTally,
    format_breakers,
    format_daily_report,
    format_pnl,
    format_positions,
    format_status,
)
from tests.engine.notify.conftest import make_snapshot

T = 1_704_225_600_000

# (event, substrings the alert must contain)
ALERT_CASES: list[tuple[Event, list[str]]] = [
    (
        Event(
            "PositionOpened",
            T,
            "opened",
            {"symbol": "BTC/USDT", "side": "long", "qty": 0.05, "entry": 42000.0, "stop": 41000.0},
        ),
        ["Position opened LONG BTC/USDT", "0.05", "42,000", "41,000"],
    ),
    (
        Event(
            "PositionClosed",
            T,
            "closed",
            {"symbol": "ETH/USDT", "side": "long", "qty": 1.5, "entry": 2200.0, "exit": 2300.0, "pnl": 150.0},
        ),
        ["Position closed LONG ETH/USDT", "2,200 → 2,300", "+150.00", "✅"],
    ),
    (
        Event(
            "PositionClosed",
            T,
            "closed",
            {
                "symbol": "SOL/USDT",
                "side": "short",
                "qty": 10,
                "entry": 100.0,
                "exit": 104.0,
                "pnl": -40.0,
                "reason": "stop hit",
            },
        ),
        ["Position closed SHORT SOL/USDT", "-40.00", "🔻", "stop hit"],
    ),
    (
        Event(
            "StopMoved",
            T,
            "trail",
            {"symbol": "BTC/USDT", "old_stop": 41000.0, "new_stop": 41500.0, "reason": "trailing"},
        ),
        ["Stop moved BTC/USDT", "41,000 → 41,500", "trailing"],
    ),
    (
        Event(
            "BreakerTripped",
            T,
            "tripped",
            {"breaker": "loss", "reason": "5 losses in a row", "value": 5, "threshold": 5},
            severity="critical",
        ),
        ["🚨", "Circuit breaker tripped: loss", "5 losses in a row"],
    ),
    (
        Event("BreakerHalfOpened", T, "half", {"breaker": "volatility"}),
        ["Circuit breaker half-open: volatility"],
    ),
    (
        Event("BreakerReset", T, "reset", {"breaker": "volatility", "reason": "manual"}),
        ["Circuit breaker reset: volatility", "manual"],
    ),
    (
        Event(
            "RiskLimitWarning",
            T,
            "80%",
            {"limit": "daily_loss", "value": 4.0, "threshold": 5.0, "distance": 1.0},
            severity="warning",
        ),
        ["⚠️", "Risk limit at 80%: daily_loss", "80.00%", "Distance to limit"],
    ),
    (
        Event(
            "RiskLimitBreached",
            T,
            "100%",
            {"limit": "max_drawdown", "value": 10.2, "threshold": 10.0},
            severity="critical",
        ),
        ["Risk limit breached: max_drawdown", "102.00%"],
    ),
    (
        Event("EmergencyExitStarted", T, "exit", {"reason": "telegram", "positions": 3}, severity="critical"),
        ["Emergency exit started", "Positions to close: <code>3</code>"],
    ),
    (
        Event("EmergencyExitCompleted", T, "done", {"closed": 3, "pnl": -12.5}),
        ["Emergency exit completed", "Positions closed: <code>3</code>", "-12.50"],
    ),
    (
        Event("TradingStateChanged", T, "state", {"old": "ACTIVE", "new": "HALTED", "reason": "telegram:111"}),
        ["Trading state changed", "ACTIVE → HALTED", "telegram:111"],
    ),
    (
        Event("SystemError", T, "exchange unreachable", {"component": "feed", "error": "timeout"}, severity="critical"),
        ["System error in feed", "exchange unreachable", "timeout"],
    ),
    (
        Event(
            "OrderRejected",
            T,
            "rejected",
            {"symbol": "BTC/USDT", "side": "buy", "qty": 0.1, "reason": "insufficient funds"},
        ),
        ["Order rejected BUY BTC/USDT", "insufficient funds"],
    ),
]


@pytest.mark.parametrize(
    ("event", "expected"), ALERT_CASES, ids=[f"{c[0].kind}-{i}" for i, c in enumerate(ALERT_CASES)]
)
def test_each_alert_kind_states_its_facts(event: Event, expected: list[str]) -> None:
    text = format_event(event)
    assert text is not None
    for fragment in expected:
        assert fragment in text


def test_alert_without_data_falls_back_to_the_event_message() -> None:
    text = format_event(Event("PositionClosed", T, "BTC closed at target"))
    assert text is not None and "BTC closed at target" in text


def test_alert_values_are_escaped_for_telegram_html() -> None:
    text = format_event(Event("SystemError", T, "a < b & c > d", {"component": "<feed>"}))
    assert text is not None
    assert "a &lt; b &amp; c &gt; d" in text and "&lt;feed&gt;" in text
    assert "<feed>" not in text


def test_routine_unknown_events_are_not_sent_but_critical_ones_are() -> None:
    assert format_event(Event("OrderFilled", T, "filled")) is None
    critical = format_event(Event("DatabaseCorrupted", T, "integrity check failed", severity="critical"))
    assert critical is not None and "integrity check failed" in critical


def test_status_answer_shows_state_equity_pnl_and_open_breakers() -> None:
    text = format_status(make_snapshot())
    for fragment in ("ACTIVE", "10,250.50", "+250.50", "1.44%", "Open positions: 1", "Breakers open: 1 (loss)"):
        assert fragment in text


def test_positions_answer_lists_each_position_with_stop_and_unrealised_pnl() -> None:
    text = format_positions(make_snapshot())
    assert "LONG BTC/USDT" in text and "41,000" in text and "+70.25" in text
    assert "No open positions" in format_positions(make_snapshot(positions=()))


def test_pnl_answer_splits_realised_and_unrealised() -> None:
    text = format_pnl(make_snapshot())
    assert "+180.25" in text and "+70.25" in text and "+250.50" in text


def test_breakers_answer_shows_state_value_threshold_and_reason() -> None:
    text = format_breakers(make_snapshot())
    assert "volatility</b> closed" in text and "loss</b> open" in text and "5 losses in a row" in text


def test_daily_report_counts_trades_wins_and_breaker_events() -> None:
    tally = DailyTally(since_ms=T - 86_400_000)
    tally.record(Event("PositionClosed", T, "", {"pnl": 100.0}))
    tally.record(Event("PositionClosed", T, "", {"pnl": -40.0}))
    tally.record(Event("BreakerTripped", T, "", {"breaker": "loss"}))
    tally.record(Event("OrderFilled", T, ""))
    text = format_daily_report(make_snapshot(), tally, T)
    for fragment in (
        "Daily report",
        "+250.50",
        "1.44%",
        "<b>2</b>",
        "50% won",
        "+60.00",
        "Breaker events: 1",
        "loss tripped",
    ):
        assert fragment in text


def test_daily_report_without_snapshot_still_reports_the_tally() -> None:
    text = format_daily_report(None, DailyTally(since_ms=T), T)
    assert "not published a snapshot" in text and "Breaker events: none" in text


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=1500), max_size=40), st.integers(min_value=200, max_value=5000))
def test_coalescing_keeps_order_and_every_message_within_the_limit(lengths: list[int], max_chars: int) -> None:
    texts = ["x" * n for n in lengths]
    groups = coalesce(texts, max_chars)
    assert [index for group in groups for index in group] == list(range(len(texts)))
    for group in groups:
        assert len(join_texts([texts[i] for i in group], max_chars)) <= max_chars


def test_a_burst_of_short_alerts_fits_in_one_message() -> None:
    texts = [f"<b>alert {i}</b>" for i in range(50)]
    assert coalesce(texts, TELEGRAM_MAX_TEXT_CHARS) == [list(range(50))]
