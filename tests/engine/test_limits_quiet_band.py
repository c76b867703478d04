"""Specification of the skipped ("quiet") loss-limit check: it must be indistinguishable from a full check."""

from __future__ import annotations

from datetime import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import RiskConfig
from engine.core.account_limits import AccountLimits, LimitCheck, loss_pct
from engine.domain.errors import RiskManagementException
from engine.domain.trading_day import day_of_instant, day_start_ms, reset_offset_ms

HOUR_MS = 3_600_000
DAY2 = 20_000 * 24 * HOUR_MS
T0 = DAY2 + HOUR_MS  # a bar close inside the trading day that starts at DAY2 (the close at DAY2 ends the one before)

# Equity walks in small relative steps around the thresholds (+-1 ulp-scale nudges included), with
# time advancing by up to a few hours, or to a reset instant and 1 ms either side of it, so day boundaries
# are crossed and hit exactly; each check is at a bar close or (a fill) at an instant.
TO_RESET = (-1, 0, 1)  # jump to the next reset + this many ms
steps = st.lists(
    st.tuples(
        st.one_of(st.floats(-0.03, 0.03), st.sampled_from([0.0, 1e-16, -1e-16, 1e-12, -1e-12])),
        st.one_of(st.integers(0, 5 * HOUR_MS), st.sampled_from([("reset", d) for d in TO_RESET])),
        st.booleans(),
    ),
    min_size=1,
    max_size=60,
)
configs: st.SearchStrategy[dict[str, object]] = st.builds(
    dict,
    max_daily_loss_percent=st.sampled_from([0.5, 2.0, 5.0, 100.0]),
    max_drawdown_percent=st.sampled_from([1.0, 3.0, 10.0, 100.0]),
    warning_threshold_ratio=st.sampled_from([0.5, 0.8, 0.99]),
    daily_reset_utc=st.one_of(st.sampled_from([time(0, 0), time(7, 30)]), st.builds(time, st.integers(0, 23))),
)


def _advance(now: int, elapsed: int | tuple[str, int], offset_ms: int) -> int:
    if isinstance(elapsed, int):
        return now + elapsed
    next_reset = day_start_ms(day_of_instant(now, offset_ms) + 1, offset_ms)
    return max(now, next_reset + elapsed[1])


def _as_tuple(check: LimitCheck) -> tuple[object, ...]:
    events = tuple((e.kind, e.time_ms, e.message, tuple(sorted(e.data.items()))) for e in check.events)
    return (check.action, check.equity, check.peak_equity, check.day_start_equity, check.daily_loss_pct,
            check.drawdown_pct, check.reasons, events)


@settings(max_examples=300, deadline=None)
@given(configs, steps)
def test_a_skipped_check_gives_the_same_results_events_and_state_as_a_full_check(
    config: dict[str, object], walk: list[tuple[float, int | tuple[str, int], bool]]
) -> None:
    risk = RiskConfig(**config)  # type: ignore[arg-type]
    full, quiet = AccountLimits(risk), AccountLimits(risk)
    offset = reset_offset_ms(risk.daily_reset_utc)
    equity, now = 10_000.0, DAY2
    for change, elapsed, instant in walk:
        equity *= 1.0 + change
        now = _advance(now, elapsed, offset)
        low, high, from_ms, until_ms = quiet.quiet_band()  # the bounds a caller sees, on bar closes
        in_band = low <= equity <= high and from_ms <= now < until_ms
        expected = full.check(equity, now, instant=instant)
        got = quiet.check_unless_quiet(equity, now, instant=instant)
        if not instant:
            assert (got is None) is in_band
        if got is None:
            assert not expected.events and not expected.must_close_all
            assert quiet.quiet_daily_loss_pct(equity) == expected.daily_loss_pct
            got = quiet.take_deferred_check()
            assert got is not None
        assert _as_tuple(got) == _as_tuple(expected)
        assert quiet.to_state() == full.to_state()


def test_a_check_inside_the_band_is_skipped_and_reported_on_demand() -> None:
    limits = AccountLimits(RiskConfig(max_daily_loss_percent=5.0, max_drawdown_percent=10.0))
    limits.check(10_000.0, T0)
    assert limits.check_unless_quiet(9_990.0, T0 + HOUR_MS) is None
    deferred = limits.take_deferred_check()
    assert deferred is not None and deferred.equity == 9_990.0
    assert deferred.daily_loss_pct == loss_pct(10_000.0, 9_990.0)
    assert limits.take_deferred_check() is None  # reported once


def test_a_new_high_the_warning_level_and_the_next_day_are_outside_the_band() -> None:
    limits = AccountLimits(RiskConfig(max_daily_loss_percent=5.0, max_drawdown_percent=10.0))
    limits.check(10_000.0, T0)
    assert limits.check_unless_quiet(10_000.5, T0 + HOUR_MS) is not None  # raises the peak
    assert limits.check_unless_quiet(9_600.0, T0 + HOUR_MS) is not None  # 4 % daily loss: warning
    assert limits.check_unless_quiet(9_999.0, DAY2 + 24 * HOUR_MS + 1) is not None  # new trading day


def test_the_band_covers_the_closes_of_the_trading_day_including_the_one_at_its_end() -> None:
    limits = AccountLimits(RiskConfig(max_daily_loss_percent=5.0, max_drawdown_percent=10.0))
    limits.check(10_000.0, T0)
    assert limits.quiet_band()[2:] == (DAY2 + 1, DAY2 + 24 * HOUR_MS + 1)
    assert limits.check_unless_quiet(9_990.0, DAY2 + 24 * HOUR_MS) is None  # the last close of the day
    assert limits.check_unless_quiet(9_990.0, DAY2 + 24 * HOUR_MS, instant=True) is not None  # the next day
    assert limits.to_state()["day_start_equity"] == 9_990.0  # the equity marked at the reset


def test_a_skipped_check_marks_the_next_days_start_equity() -> None:
    limits = AccountLimits(RiskConfig(max_daily_loss_percent=5.0, max_drawdown_percent=10.0))
    limits.check(10_000.0, T0)
    assert limits.check_unless_quiet(9_700.0, DAY2 + 24 * HOUR_MS) is None
    check = limits.check(9_300.0, DAY2 + 25 * HOUR_MS)
    assert check.day_start_equity == 9_700.0 and not check.must_close_all


def test_a_skipped_check_is_settled_before_a_manual_resume_changes_the_state() -> None:
    limits = AccountLimits(RiskConfig(max_daily_loss_percent=5.0, max_drawdown_percent=50.0))
    limits.check(10_000.0, T0)
    limits.check(9_400.0, T0 + HOUR_MS)  # daily-loss breach: latched
    assert limits.check_unless_quiet(9_550.0, T0 + 2 * HOUR_MS) is None  # still warned, no breach
    limits.manual_resume(9_550.0, T0 + 3 * HOUR_MS)
    deferred = limits.take_deferred_check()
    assert deferred is not None and deferred.day_start_equity == 10_000.0 and deferred.reasons


def test_the_daily_loss_of_a_skipped_check_needs_a_skipped_check() -> None:
    limits = AccountLimits(RiskConfig(max_daily_loss_percent=5.0, max_drawdown_percent=10.0))
    limits.check(10_000.0, T0)
    with pytest.raises(RiskManagementException, match="skipped"):
        limits.quiet_daily_loss_pct(9_990.0)
