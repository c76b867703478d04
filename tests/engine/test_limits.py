"""Specification of the account loss limits: daily loss and max drawdown, warnings, halts, restarts."""

from __future__ import annotations

import json
from datetime import time

import pytest

from engine.config import RiskConfig
from engine.core.account_limits import AccountLimits, RiskAction
from engine.domain.errors import RiskManagementException

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
DAY2 = 20_000 * DAY_MS  # some UTC midnight


def limits_after_day_start(equity: float = 10_000.0, **config: object) -> AccountLimits:
    """Equity marked at the close at DAY2 (the reset): the start equity of the day after DAY2."""
    limits = AccountLimits(RiskConfig(**config))  # type: ignore[arg-type]
    limits.check(equity, DAY2)
    return limits


# ----------------------------------------------------------------------------------------- daily loss
@pytest.mark.parametrize(
    ("equity", "action"),
    [(9_501.0, RiskAction.NONE), (9_500.0, RiskAction.CLOSE_ALL_AND_HALT), (9_499.0, RiskAction.CLOSE_ALL_AND_HALT)],
    ids=["just-under", "at", "just-over"],
)
def test_daily_loss_reaching_the_limit_closes_all_and_halts(equity: float, action: RiskAction) -> None:
    limits = limits_after_day_start()
    check = limits.check(equity, DAY2 + HOUR_MS)
    assert check.action is action
    assert limits.halted is (action is not RiskAction.NONE)


def test_a_breach_reports_the_loss_and_the_distance_to_the_limit() -> None:
    check = limits_after_day_start().check(9_400.0, DAY2 + HOUR_MS)
    assert check.must_close_all and not check.allows_entry
    assert check.daily_loss_pct == pytest.approx(6.0)
    assert check.daily_loss_distance_pct == pytest.approx(-1.0)
    (event,) = check.events
    assert event.kind == "RiskLimitBreached" and event.severity == "critical"
    assert event.data["limit"] == "daily_loss" and event.data["distance_pct"] == pytest.approx(-1.0)


def test_the_breach_event_is_emitted_once_but_the_close_all_action_repeats() -> None:
    limits = limits_after_day_start()
    first = limits.check(9_400.0, DAY2 + HOUR_MS)
    second = limits.check(9_400.0, DAY2 + 2 * HOUR_MS)
    assert [e.kind for e in first.events] == ["RiskLimitBreached"]
    assert second.events == ()
    assert second.action is RiskAction.CLOSE_ALL_AND_HALT


def test_a_latched_daily_halt_blocks_entries_after_equity_recovers() -> None:
    limits = limits_after_day_start()
    limits.check(9_400.0, DAY2 + HOUR_MS)
    check = limits.check(9_900.0, DAY2 + 2 * HOUR_MS)
    assert check.action is RiskAction.HALT_ENTRIES
    assert limits.halted


def test_the_daily_halt_lifts_at_the_next_trading_day() -> None:
    limits = limits_after_day_start()
    limits.check(9_400.0, DAY2 + HOUR_MS)
    assert limits.check(9_400.0, DAY2 + DAY_MS).must_close_all  # the bar closing at the reset: still that day
    check = limits.check(9_400.0, DAY2 + DAY_MS + HOUR_MS)
    assert check.action is RiskAction.NONE
    assert [e.kind for e in check.events] == ["RiskHaltCleared"]
    assert check.day_start_equity == 9_400.0 and check.daily_loss_pct == 0.0
    assert not limits.halted


@pytest.mark.parametrize(
    ("now_ms", "instant", "new_day"),
    [
        (DAY2 + 8 * HOUR_MS - 1, False, False),
        (DAY2 + 8 * HOUR_MS, False, False),  # a bar closing at the reset belongs to the day that ends there
        (DAY2 + 8 * HOUR_MS + 1, False, True),
        (DAY2 + 8 * HOUR_MS - 1, True, False),
        (DAY2 + 8 * HOUR_MS, True, True),  # a fill at the reset instant belongs to the new day
    ],
    ids=["close-just-before", "close-at", "close-just-after", "instant-just-before", "instant-at"],
)
def test_the_trading_day_starts_at_the_configured_reset_time(now_ms: int, instant: bool, new_day: bool) -> None:
    limits = AccountLimits(RiskConfig(daily_reset_utc=time(8, 0)))
    limits.check(10_000.0, DAY2 + 7 * HOUR_MS)  # the day that started yesterday 08:00
    limits.check(9_800.0, DAY2 + 7 * HOUR_MS + 1_000)
    check = limits.check(9_600.0, now_ms, instant=instant)
    # The new day starts at the equity marked last before the reset, not at its own first check.
    assert check.day_start_equity == (9_800.0 if new_day else 10_000.0)
    assert check.daily_loss_pct == pytest.approx(100.0 * (1 - 9_600.0 / 9_800.0) if new_day else 4.0)


def test_the_day_of_a_close_and_of_an_instant() -> None:
    limits = AccountLimits(RiskConfig(daily_reset_utc=time(8, 0)))
    reset = DAY2 + 8 * HOUR_MS
    assert limits.trading_day_of_close(reset) == limits.trading_day_of_close(reset - HOUR_MS)
    assert limits.trading_day_of_close(reset + 1) == limits.trading_day_of_close(reset) + 1
    assert limits.trading_day_key(reset) == limits.trading_day_of_close(reset + 1)
    assert limits.trading_day_key(reset - 1) == limits.trading_day_of_close(reset)


def test_a_late_check_of_an_earlier_day_counts_in_the_current_day() -> None:
    limits = limits_after_day_start()
    limits.check(9_900.0, DAY2 + DAY_MS - HOUR_MS)
    limits.check(9_300.0, DAY2 + DAY_MS, instant=True)  # a live fill at the reset: the next day, from 9,900
    check = limits.check(9_300.0, DAY2 + DAY_MS)  # the bar closing at the reset, processed after the fill
    assert check.day_start_equity == 9_900.0 and check.must_close_all
    assert limits.halt_reasons == ("daily_loss",)


# ------------------------------------------------------------------------------------------ drawdown
def limits_with_peak_yesterday() -> AccountLimits:
    """Peak 10,000 two days ago, 4 % and then 3.1 % lower at the ends of the next two days: today starts
    at 9,300 (7 % drawdown, no daily loss yet, no warning armed)."""
    limits = AccountLimits(RiskConfig())
    limits.check(10_000.0, DAY2 - 2 * DAY_MS)
    limits.check(9_600.0, DAY2 - DAY_MS)
    limits.check(9_300.0, DAY2)
    assert not limits.halted
    return limits


@pytest.mark.parametrize(
    ("equity", "action"),
    [(9_001.0, RiskAction.NONE), (9_000.0, RiskAction.CLOSE_ALL_AND_HALT), (8_999.0, RiskAction.CLOSE_ALL_AND_HALT)],
    ids=["just-under", "at", "just-over"],
)
def test_drawdown_from_the_peak_reaching_the_limit_closes_all_and_halts(equity: float, action: RiskAction) -> None:
    check = limits_with_peak_yesterday().check(equity, DAY2 + HOUR_MS)
    assert check.action is action
    assert check.peak_equity == 10_000.0


def test_the_peak_follows_new_equity_highs() -> None:
    limits = AccountLimits(RiskConfig())
    limits.check(10_000.0, DAY2)
    limits.check(12_000.0, DAY2 + HOUR_MS)
    check = limits.check(10_900.0, DAY2 + 2 * HOUR_MS)
    assert check.peak_equity == 12_000.0
    assert check.drawdown_pct == pytest.approx(9.1666666)


def test_a_drawdown_halt_survives_the_day_boundary() -> None:
    limits = limits_with_peak_yesterday()
    limits.check(8_900.0, DAY2 + HOUR_MS)
    check = limits.check(8_900.0, DAY2 + DAY_MS)
    assert check.action is RiskAction.CLOSE_ALL_AND_HALT  # still 11% under the peak
    assert limits.halt_reasons == ("drawdown",)


def test_manual_resume_lifts_the_halt_and_rebases_peak_and_day_start() -> None:
    limits = limits_with_peak_yesterday()
    limits.check(8_900.0, DAY2 + HOUR_MS)
    (event,) = limits.manual_resume(8_900.0, DAY2 + 2 * HOUR_MS)
    assert event.kind == "RiskHaltCleared" and event.data["source"] == "manual"
    check = limits.check(8_900.0, DAY2 + 3 * HOUR_MS)
    assert check.action is RiskAction.NONE
    assert check.peak_equity == 8_900.0 and check.drawdown_pct == 0.0


def test_manual_resume_without_a_halt_does_nothing() -> None:
    assert limits_after_day_start().manual_resume(10_000.0, DAY2) == ()


@pytest.mark.parametrize("equity", [0.0, -100.0])
def test_zero_or_negative_equity_is_a_full_breach(equity: float) -> None:
    check = limits_after_day_start().check(equity, DAY2 + HOUR_MS)
    assert check.action is RiskAction.CLOSE_ALL_AND_HALT


def test_non_finite_equity_halts_entries_without_touching_state() -> None:
    limits = limits_after_day_start()
    before = limits.to_state()
    check = limits.check(float("nan"), DAY2 + HOUR_MS)
    assert check.action is RiskAction.HALT_ENTRIES
    assert limits.to_state() == before


# ------------------------------------------------------------------------------------------ warnings
@pytest.mark.parametrize(
    ("equity", "warned"), [(9_601.0, False), (9_600.0, True), (9_599.0, True)], ids=["just-under", "at", "just-over"]
)
def test_daily_loss_warning_fires_at_80_percent_of_the_limit(equity: float, warned: bool) -> None:
    check = limits_after_day_start().check(equity, DAY2 + HOUR_MS)
    kinds = [e.kind for e in check.events]
    assert kinds == (["RiskLimitWarning"] if warned else [])
    assert check.action is RiskAction.NONE


def test_a_warning_carries_the_distance_to_the_limit() -> None:
    (event,) = limits_after_day_start().check(9_580.0, DAY2 + HOUR_MS).events
    assert event.severity == "warning"
    assert event.data["limit"] == "daily_loss"
    assert event.data["value_pct"] == pytest.approx(4.2)
    assert event.data["distance_pct"] == pytest.approx(0.8)


def test_a_warning_is_emitted_once_per_crossing_and_rearmed_below_the_threshold() -> None:
    limits = limits_after_day_start()
    kinds = [
        [e.kind for e in limits.check(equity, DAY2 + i * 60_000).events]
        for i, equity in enumerate([9_590.0, 9_580.0, 9_700.0, 9_590.0], start=1)
    ]
    assert kinds == [["RiskLimitWarning"], [], [], ["RiskLimitWarning"]]


def test_drawdown_warning_fires_at_80_percent_of_the_limit() -> None:
    check = limits_with_peak_yesterday().check(9_200.0, DAY2 + HOUR_MS)
    assert [(e.kind, e.data["limit"]) for e in check.events] == [("RiskLimitWarning", "drawdown")]


# --------------------------------------------------------------------------------------- persistence
def test_state_round_trips_through_json_and_restores_the_same_behaviour() -> None:
    limits = limits_with_peak_yesterday()
    limits.check(9_200.0, DAY2 + HOUR_MS)  # drawdown warned
    limits.check(8_800.0, DAY2 + 2 * HOUR_MS)  # daily and drawdown breached
    state = json.loads(json.dumps(limits.to_state()))
    restored = AccountLimits(RiskConfig())
    restored.restore(state)
    assert restored.to_state() == limits.to_state()
    assert restored.halted
    original, again = limits.check(8_850.0, DAY2 + 3 * HOUR_MS), restored.check(8_850.0, DAY2 + 3 * HOUR_MS)
    assert again == original


def test_a_restored_tracker_starts_the_next_day_at_its_first_check() -> None:
    """Saved state can predate the latest check (it is saved on events), so the marked equity is not kept."""
    limits = limits_after_day_start()
    limits.check(9_700.0, DAY2 + HOUR_MS)
    restored = AccountLimits(RiskConfig())
    restored.restore(json.loads(json.dumps(limits.to_state())))
    assert restored.check(9_600.0, DAY2 + DAY_MS + HOUR_MS).day_start_equity == 9_600.0
    assert limits.check(9_600.0, DAY2 + DAY_MS + HOUR_MS).day_start_equity == 9_700.0


def test_restore_rejects_an_unknown_state_version() -> None:
    state = AccountLimits(RiskConfig()).to_state() | {"version": 99}
    with pytest.raises(RiskManagementException, match="version"):
        AccountLimits(RiskConfig()).restore(state)
