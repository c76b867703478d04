"""Specification of the Telegram texts: each alert kind reads well, values are escaped, bursts coalesce."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.events import (
    BreakerEvent,
    BreakerHalfOpened,
    BreakerReset,
    BreakerTripped,
    EmergencyExitCompleted,
    EmergencyExitStarted,
    Event,
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
from engine.domain.models import CircuitState, ExitKind, PositionSide, TradingState
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
from tests.event_samples import closed, filled, happened, tripped

T = 1_704_225_600_000

def _breaker(cls: type[BreakerEvent], name: str, reason: str, **fields: Any) -> BreakerEvent:
    values: dict[str, Any] = {"previous": CircuitState.CLOSED, "state": CircuitState.OPEN, "value": 5.0,
                              "threshold": 5.0, "since_ms": T, "resume_after_ms": None, "latching": False}
    return cls(time_ms=T, message=cls.__name__, breaker=name, reason=reason, **(values | fields))


def _limit(cls: type[RiskLimitEvent], name: str, value: float, limit: float) -> RiskLimitEvent:
    return cls(time_ms=T, message="limit", limit=name, value_pct=value, limit_pct=limit, distance_pct=limit - value,
               equity=9_500.0)


# (event, substrings the alert must contain)
ALERT_CASES: list[tuple[Event, list[str]]] = [
    (
        PositionOpened(time_ms=T, message="opened", symbol="BTC/USDT", side=PositionSide.LONG, qty=0.05,
                       price=42000.0, stop=41000.0, target=44000.0),
        ["Position opened LONG BTC/USDT", "0.05", "42,000", "41,000", "44,000"],
    ),
    (
        PositionClosed(time_ms=T, message="closed", symbol="ETH/USDT", side=PositionSide.LONG, qty=1.5,
                       entry=2200.0, exit=2300.0, pnl=150.0, exit_kind=ExitKind.TARGET, reason="take_profit"),
        ["Position closed LONG ETH/USDT", "2,200 → 2,300", "+150.00", "✅", "target (take_profit)"],
    ),
    (
        PositionClosed(time_ms=T, message="closed", symbol="SOL/USDT", side=PositionSide.SHORT, qty=10,
                       entry=100.0, exit=104.0, pnl=-40.0, exit_kind=ExitKind.STOP, reason="stop"),
        ["Position closed SHORT SOL/USDT", "-40.00", "🔻", "Exit: stop"],
    ),
    (
        _breaker(BreakerTripped, "loss", "5 losses in a row", resume_after_ms=T + 3_600_000),
        ["🚨", "Circuit breaker tripped: loss", "5 losses in a row", "Resumes after: 2024-01-02 21:00 UTC"],
    ),
    (_breaker(BreakerHalfOpened, "volatility", ""), ["Circuit breaker half-open: volatility"]),
    (_breaker(BreakerReset, "volatility", "manual"), ["Circuit breaker reset: volatility", "manual"]),
    (
        _limit(RiskLimitWarning, "daily_loss", 4.0, 5.0),
        ["⚠️", "Risk limit at 80%: daily_loss", "80.00%", "Distance to limit: <code>1.00%</code>"],
    ),
    (_limit(RiskLimitBreached, "drawdown", 10.2, 10.0), ["🚨", "Risk limit breached: drawdown", "102.00%"]),
    (
        EmergencyExitStarted(time_ms=T, message="exit", reason="telegram", actions=("cancel", "close")),
        ["Emergency exit started", "telegram"],
    ),
    (
        EmergencyExitCompleted(time_ms=T, message="emergency exit complete; trading halted", reason="telegram"),
        ["Emergency exit completed", "trading halted", "telegram"],
    ),
    (
        TradingStateChanged(time_ms=T, message="state", previous=TradingState.ACTIVE, state=TradingState.HALTED,
                            reason="telegram:111"),
        ["Trading state changed", "ACTIVE → HALTED", "telegram:111"],
    ),
    (
        SystemError(time_ms=T, message="exchange unreachable", symbol="BTC/USDT", error="timeout", task="feed",
                    component="feed"),
        ["System error in feed", "exchange unreachable", "timeout"],
    ),
    (
        OrderRejected(time_ms=T, message="BTC/USDT: entry refused: insufficient funds", symbol="BTC/USDT"),
        ["Order rejected BTC/USDT", "insufficient funds"],
    ),
    (
        RiskLimitChanged(time_ms=T, message="change", key="risk.max_daily_loss_percent", old=5.0, new=3.0,
                         source="telegram:7", persisted=True),
        ["Risk setting changed", "risk.max_daily_loss_percent", "5.0 → 3.0", "telegram:7"],
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


def test_alert_values_are_escaped_for_telegram_html() -> None:
    text = format_event(SystemError(time_ms=T, message="a < b & c > d", symbol="X", error="e", task="t",
                                    component="<feed>"))
    assert text is not None
    assert "a &lt; b &amp; c &gt; d" in text and "&lt;feed&gt;" in text
    assert "<feed>" not in text


def test_routine_unknown_events_are_not_sent_but_critical_ones_are() -> None:
    assert format_event(filled(T)) is None
    critical = format_event(happened(T, "integrity check failed", Severity.CRITICAL))
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
    tally.record(closed(T, 100.0))
    tally.record(closed(T, -40.0))
    tally.record(tripped(T, "loss"))
    tally.record(filled(T))
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
