"""Specification of the console's text helpers: limit levels, bars, durations, arrows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot_tui import formatting as fmt


def test_limit_level_is_ok_below_warning_warn_from_80_percent_and_limit_at_the_limit() -> None:
    assert fmt.limit_level(7.99, 10.0, 0.8) == "ok"
    assert fmt.limit_level(8.0, 10.0, 0.8) == "warn"
    assert fmt.limit_level(9.99, 10.0, 0.8) == "warn"
    assert fmt.limit_level(10.0, 10.0, 0.8) == "limit"
    assert fmt.limit_level(12.0, 10.0, 0.8) == "limit"


@settings(max_examples=60)
@given(st.floats(0, 100), st.floats(0.01, 100), st.floats(0.05, 0.95))
def test_limit_level_never_goes_down_as_the_value_grows(value: float, limit: float, ratio: float) -> None:
    order = {"ok": 0, "warn": 1, "limit": 2}
    assert order[fmt.limit_level(value, limit, ratio)] <= order[fmt.limit_level(value + 0.5, limit, ratio)]


@settings(max_examples=60)
@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 80))
def test_bar_is_always_exactly_the_requested_width(ratio: float, width: int) -> None:
    assert len(fmt.bar(ratio, width)) == width


def test_bar_fills_in_proportion_and_clamps() -> None:
    assert fmt.bar(0.5, 10) == "█████░░░░░"
    assert fmt.bar(3.0, 4) == "████"
    assert fmt.bar(-1.0, 4) == "░░░░"


def test_durations_are_compact() -> None:
    assert [fmt.duration(ms) for ms in (45_000, 12 * 60_000, 185 * 60_000, 52 * 3_600_000, -5)] == [
        "45s",
        "12m",
        "3h05m",
        "2d04h",
        "0s",
    ]


def test_trend_arrows_follow_the_sign() -> None:
    assert [fmt.trend_arrow(d) for d in (1, -1, 0, 2)] == ["↑", "↓", "→", "↑"]


def test_prices_keep_precision_suited_to_their_size_and_missing_values_show_a_dash() -> None:
    assert [fmt.price(p) for p in (64_012.53, 142.311, 0.51234, None)] == ["64,012.5", "142.31", "0.5123", "-"]
    assert fmt.quantity(0.01500000) == "0.015"
    assert fmt.money(-142.35, signed=True) == "-142.35" and fmt.money(1234.5) == "1,234.50"


def test_clock_and_timestamp_are_utc() -> None:
    assert fmt.clock(1_767_225_600_000) == "00:00"
    assert fmt.timestamp(1_767_225_600_000) == "2026-01-01 00:00 UTC"
