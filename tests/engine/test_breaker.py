"""Specification of the circuit breakers: triggers at their boundaries, recovery paths, persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import BreakerConfig
from engine.core.breaker import HALF_OPEN_CONFIRMATIONS, CircuitBreaker
from engine.domain.errors import CircuitBreakerException
from engine.domain.events import BreakerTripped, Severity
from engine.domain.models import CircuitState

SECOND_MS = 1_000
COOLDOWN_MS = 900 * SECOND_MS
T0 = 1_700_000_000_000
AUTO = BreakerConfig(latching=[])


def kinds(events: tuple) -> list[str]:  # type: ignore[type-arg]
    return [event.kind for event in events]


def tripped_volatility(config: BreakerConfig = AUTO) -> CircuitBreaker:
    breaker = CircuitBreaker(config)
    breaker.check_volatility_circuit(4.0, 1.0, T0)
    return breaker


def half_open_volatility() -> CircuitBreaker:
    breaker = tripped_volatility()
    breaker.check_volatility_circuit(1.0, 1.0, T0 + SECOND_MS)
    breaker.check_volatility_circuit(1.0, 1.0, T0 + SECOND_MS + COOLDOWN_MS)
    assert breaker.status("volatility").state is CircuitState.HALF_OPEN
    return breaker


# ---------------------------------------------------------------------------------------- volatility
@pytest.mark.parametrize(
    ("current", "state"), [(2.99, CircuitState.CLOSED), (3.0, CircuitState.OPEN), (3.01, CircuitState.OPEN)],
    ids=["just-under", "at", "just-over"],
)
def test_volatility_breaker_trips_at_the_multiplier(current: float, state: CircuitState) -> None:
    update = CircuitBreaker(AUTO).check_volatility_circuit(current, 1.0, T0)
    assert update.status.state is state
    assert kinds(update.events) == (["BreakerTripped"] if state is CircuitState.OPEN else [])


def test_a_trip_event_says_which_breaker_why_and_since_when() -> None:
    (event,) = CircuitBreaker(AUTO).check_volatility_circuit(0.5, 0.125, T0).events
    assert isinstance(event, BreakerTripped)
    assert event.severity is Severity.CRITICAL and event.time_ms == T0
    assert (event.breaker, event.previous, event.state) == ("volatility", CircuitState.CLOSED, CircuitState.OPEN)
    assert event.value == 4.0 and event.threshold == 3.0
    assert "4.00x" in event.reason


def test_an_open_breaker_blocks_entries_with_its_reason() -> None:
    allowed, multiplier, reasons = tripped_volatility().allows_entry(T0 + 1)
    assert not allowed and multiplier == 0.0
    assert "volatility breaker open" in reasons[0]


def test_status_exposes_value_threshold_and_distance_to_tripping() -> None:
    status = CircuitBreaker(AUTO).check_volatility_circuit(1.5, 1.0, T0).status
    assert (status.value, status.threshold) == (1.5, 3.0)
    assert status.distance_to_trip == pytest.approx(0.5)
    assert status.state is CircuitState.CLOSED and not status.latching


@pytest.mark.parametrize(("current", "normal"), [(float("nan"), 1.0), (1.0, 0.0), (1.0, float("inf")), (-1.0, 1.0)])
def test_an_unusable_volatility_reading_changes_nothing(current: float, normal: float) -> None:
    breaker = CircuitBreaker(AUTO)
    update = breaker.check_volatility_circuit(current, normal, T0)
    assert update.events == () and update.status.state is CircuitState.CLOSED


def test_a_normal_reading_while_open_starts_the_cooldown() -> None:
    breaker = tripped_volatility()
    update = breaker.check_volatility_circuit(1.0, 1.0, T0 + SECOND_MS)
    assert kinds(update.events) == ["BreakerCoolingDown"]
    assert update.status.state is CircuitState.OPEN
    assert update.status.resume_after_ms == T0 + SECOND_MS + COOLDOWN_MS
    assert not breaker.allows_entry(T0 + 2 * SECOND_MS).allowed


@pytest.mark.parametrize(
    ("elapsed_ms", "state"),
    [
        (COOLDOWN_MS - 1, CircuitState.OPEN),
        (COOLDOWN_MS, CircuitState.HALF_OPEN),
        (COOLDOWN_MS + 1, CircuitState.HALF_OPEN),
    ],
    ids=["just-before", "at", "just-after"],
)
def test_the_breaker_half_opens_when_the_cooldown_has_elapsed(elapsed_ms: int, state: CircuitState) -> None:
    breaker = tripped_volatility()
    breaker.check_volatility_circuit(1.0, 1.0, T0 + SECOND_MS)
    update = breaker.check_volatility_circuit(1.0, 1.0, T0 + SECOND_MS + elapsed_ms)
    assert update.status.state is state
    assert kinds(update.events) == (["BreakerHalfOpened"] if state is CircuitState.HALF_OPEN else [])


def test_a_half_open_breaker_allows_entries_at_reduced_size() -> None:
    allowed, multiplier, reasons = half_open_volatility().allows_entry(T0 + 2 * COOLDOWN_MS)
    assert allowed and multiplier == 0.5
    assert "half-open" in reasons[0]


def test_a_trip_reading_while_open_restarts_the_cooldown() -> None:
    breaker = tripped_volatility()
    breaker.check_volatility_circuit(1.0, 1.0, T0 + SECOND_MS)
    breaker.check_volatility_circuit(5.0, 1.0, T0 + 2 * SECOND_MS)
    assert breaker.status("volatility").resume_after_ms is None
    update = breaker.check_volatility_circuit(1.0, 1.0, T0 + 3 * SECOND_MS)
    assert update.status.resume_after_ms == T0 + 3 * SECOND_MS + COOLDOWN_MS


def test_advance_half_opens_without_a_new_reading() -> None:
    breaker = tripped_volatility()
    breaker.check_volatility_circuit(1.0, 1.0, T0 + SECOND_MS)
    assert kinds(breaker.advance(T0 + SECOND_MS + COOLDOWN_MS)) == ["BreakerHalfOpened"]


def test_normal_readings_in_half_open_close_the_breaker_after_the_confirmations() -> None:
    breaker = half_open_volatility()
    now = T0 + 2 * COOLDOWN_MS
    for index in range(HALF_OPEN_CONFIRMATIONS - 1):
        assert breaker.check_volatility_circuit(1.0, 1.0, now + index).events == ()
    update = breaker.check_volatility_circuit(1.0, 1.0, now + HALF_OPEN_CONFIRMATIONS)
    assert kinds(update.events) == ["BreakerReset"]
    assert breaker.allows_entry(now + 10) == (True, 1.0, ())


def test_a_trip_reading_in_half_open_reopens_the_breaker() -> None:
    breaker = half_open_volatility()
    update = breaker.check_volatility_circuit(3.5, 1.0, T0 + 2 * COOLDOWN_MS)
    assert kinds(update.events) == ["BreakerTripped"] and update.status.state is CircuitState.OPEN
    assert update.events[0].data["previous"] == "half_open"


def test_a_latching_breaker_stays_open_until_a_manual_resume() -> None:
    breaker = tripped_volatility(BreakerConfig(latching=["volatility"]))
    assert breaker.check_volatility_circuit(1.0, 1.0, T0 + SECOND_MS).events == ()
    assert breaker.advance(T0 + 10 * COOLDOWN_MS) == ()
    assert breaker.status("volatility").state is CircuitState.OPEN
    assert "manual resume" in breaker.allows_entry(T0 + 10 * COOLDOWN_MS).reasons[0]
    (event,) = breaker.manual_resume("volatility", T0 + 10 * COOLDOWN_MS)
    assert event.kind == "BreakerReset" and breaker.can_resume_trading(T0 + 10 * COOLDOWN_MS)


def test_manual_resume_of_a_closed_breaker_does_nothing() -> None:
    assert CircuitBreaker(AUTO).manual_resume("system", T0) == ()


def test_manual_resume_of_an_unknown_breaker_is_refused() -> None:
    with pytest.raises(CircuitBreakerException, match="unknown breaker"):
        CircuitBreaker(AUTO).manual_resume("moon", T0)


# ---------------------------------------------------------------------------------------------- loss
@pytest.mark.parametrize(("losses", "tripped"), [(4, False), (5, True), (6, True)], ids=["just-under", "at", "over"])
def test_loss_breaker_trips_at_the_consecutive_loss_limit(losses: int, tripped: bool) -> None:
    update = CircuitBreaker(AUTO).check_loss_circuit(losses, 0.0, T0)
    assert update.is_open is tripped


@pytest.mark.parametrize(("daily", "tripped"), [(4.99, False), (5.0, True), (5.01, True)],
                         ids=["just-under", "at", "just-over"])
def test_loss_breaker_trips_at_the_daily_loss_limit(daily: float, tripped: bool) -> None:
    assert CircuitBreaker(AUTO).check_loss_circuit(0, daily, T0).is_open is tripped


def test_loss_status_shows_the_condition_closest_to_its_limit() -> None:
    breaker = CircuitBreaker(AUTO)
    streak = breaker.check_loss_circuit(4, 1.0, T0).status
    daily = breaker.check_loss_circuit(1, 4.5, T0).status
    assert (streak.value, streak.threshold) == (4.0, 5.0)
    assert (daily.value, daily.threshold) == (4.5, 5.0)


def test_trade_results_count_the_losing_streak_and_a_win_resets_it() -> None:
    breaker = CircuitBreaker(AUTO)
    for pnl in (-1.0, -2.0, 0.0, -3.0):  # a breakeven neither extends nor ends the streak
        breaker.record_trade_result(pnl, T0)
    assert breaker.consecutive_losses == 3
    breaker.record_trade_result(5.0, T0)
    assert breaker.consecutive_losses == 0


def test_the_fifth_losing_trade_trips_the_loss_breaker() -> None:
    breaker = CircuitBreaker(BreakerConfig())
    updates = [breaker.record_trade_result(-10.0, T0 + i) for i in range(5)]
    assert [u.is_open for u in updates] == [False, False, False, False, True]
    assert updates[-1].status.latching


def test_the_loss_breaker_latches_by_default_until_a_manual_resume() -> None:
    breaker = CircuitBreaker(BreakerConfig())
    for i in range(5):
        breaker.record_trade_result(-10.0, T0 + i)
    breaker.check_loss_circuit(breaker.consecutive_losses, 0.0, T0 + COOLDOWN_MS)
    breaker.advance(T0 + 10 * COOLDOWN_MS)
    assert not breaker.can_resume_trading(T0 + 10 * COOLDOWN_MS)
    assert kinds(breaker.manual_resume("loss", T0 + 10 * COOLDOWN_MS)) == ["BreakerReset"]
    assert breaker.consecutive_losses == 0 and breaker.can_resume_trading(T0 + 10 * COOLDOWN_MS)


def half_open_loss() -> CircuitBreaker:
    breaker = CircuitBreaker(AUTO)
    breaker.check_loss_circuit(5, 0.0, T0)  # the trip consumes the streak
    assert kinds(breaker.check_loss_circuit(breaker.consecutive_losses, 0.0, T0 + 1).events) == ["BreakerCoolingDown"]
    assert kinds(breaker.advance(T0 + 1 + COOLDOWN_MS)) == ["BreakerHalfOpened"]
    return breaker


def test_a_winning_trade_in_half_open_closes_the_loss_breaker() -> None:
    breaker = half_open_loss()
    update = breaker.record_trade_result(25.0, T0 + 2 * COOLDOWN_MS)
    assert kinds(update.events) == ["BreakerReset"] and update.status.state is CircuitState.CLOSED


def test_a_losing_trade_in_half_open_reopens_the_loss_breaker() -> None:
    breaker = half_open_loss()
    assert breaker.record_trade_result(-25.0, T0 + 2 * COOLDOWN_MS).is_open


def test_a_breakeven_trade_in_half_open_changes_nothing() -> None:
    breaker = half_open_loss()
    update = breaker.record_trade_result(0.0, T0 + 2 * COOLDOWN_MS)
    assert update.events == () and update.status.state is CircuitState.HALF_OPEN


def test_a_daily_loss_trip_waits_for_the_daily_loss_to_normalise() -> None:
    breaker = CircuitBreaker(AUTO)
    breaker.check_loss_circuit(0, 6.0, T0)
    assert breaker.check_loss_circuit(0, 5.5, T0 + COOLDOWN_MS).status.resume_after_ms is None
    assert kinds(breaker.check_loss_circuit(0, 0.0, T0 + 2 * COOLDOWN_MS).events) == ["BreakerCoolingDown"]


# -------------------------------------------------------------------------------------------- system
def breaker_with_errors(count: int, start_ms: int = T0) -> tuple[CircuitBreaker, list]:  # type: ignore[type-arg]
    breaker = CircuitBreaker(AUTO)
    updates = [breaker.record_api_error(start_ms + i * SECOND_MS) for i in range(count)]
    return breaker, updates


@pytest.mark.parametrize(("errors", "tripped"), [(9, False), (10, True), (11, True)], ids=["just-under", "at", "over"])
def test_system_breaker_trips_at_the_error_threshold_within_the_window(errors: int, tripped: bool) -> None:
    breaker, _ = breaker_with_errors(errors)
    assert (breaker.status("system").state is CircuitState.OPEN) is tripped


def test_an_error_exactly_one_window_old_no_longer_counts() -> None:
    breaker = CircuitBreaker(AUTO)
    breaker.record_api_error(T0)
    for i in range(1, 9):
        breaker.record_api_error(T0 + i * SECOND_MS)
    update = breaker.record_api_error(T0 + 60 * SECOND_MS)  # 10th error; the first is 60 s old
    assert update.status.value == 9.0 and not update.is_open
    assert breaker.record_api_error(T0 + 60 * SECOND_MS + 1).is_open


def test_system_breaker_recovers_after_errors_age_out_the_cooldown_and_successes() -> None:
    breaker, _ = breaker_with_errors(10)
    quiet = T0 + 70 * SECOND_MS
    assert kinds(breaker.check_system_health(quiet).events) == ["BreakerCoolingDown"]
    assert kinds(breaker.advance(quiet + COOLDOWN_MS)) == ["BreakerHalfOpened"]
    successes = [breaker.record_api_success(quiet + COOLDOWN_MS + i) for i in range(HALF_OPEN_CONFIRMATIONS)]
    assert [kinds(update.events) for update in successes] == [[], [], ["BreakerReset"]]


def test_an_api_error_in_half_open_reopens_the_system_breaker() -> None:
    breaker, _ = breaker_with_errors(10)
    breaker.check_system_health(T0 + 70 * SECOND_MS)
    breaker.advance(T0 + 70 * SECOND_MS + COOLDOWN_MS)
    update = breaker.record_api_error(T0 + 71 * SECOND_MS + COOLDOWN_MS)
    assert update.is_open and "half-open" in update.status.reason


def test_half_open_breakers_do_not_compound_the_size_reduction() -> None:
    breaker = half_open_volatility()
    breaker.check_loss_circuit(5, 0.0, T0)
    breaker.check_loss_circuit(0, 0.0, T0 + 1)
    breaker.advance(T0 + 1 + COOLDOWN_MS)
    assert breaker.allows_entry(T0 + 2 * COOLDOWN_MS).size_multiplier == 0.5


# ----------------------------------------------------------------------------------------- emergency
def test_emergency_exit_instructs_cancel_close_and_halt() -> None:
    breaker = CircuitBreaker(AUTO)
    instruction = breaker.trigger_emergency_exit("operator pressed X", T0)
    assert instruction.status == "started"
    assert instruction.actions == ("cancel_open_orders", "close_all_positions", "halt")
    assert kinds(instruction.events) == ["EmergencyExitStarted"]
    assert not breaker.can_resume_trading(T0)


def test_a_second_emergency_exit_in_progress_or_done_returns_already() -> None:
    breaker = CircuitBreaker(AUTO)
    breaker.trigger_emergency_exit("first", T0)
    again = breaker.trigger_emergency_exit("second", T0 + 1)
    assert (again.status, again.actions, again.events, again.reason) == ("already", (), (), "first")
    assert kinds(breaker.complete_emergency_exit(T0 + 2)) == ["EmergencyExitCompleted"]
    assert breaker.complete_emergency_exit(T0 + 3) == ()
    assert breaker.trigger_emergency_exit("third", T0 + 4).status == "already"


def test_emergency_halt_is_cleared_only_manually_and_only_once_complete() -> None:
    breaker = CircuitBreaker(AUTO)
    breaker.trigger_emergency_exit("panic", T0)
    with pytest.raises(CircuitBreakerException, match="in progress"):
        breaker.manual_resume("emergency", T0 + 1)
    breaker.complete_emergency_exit(T0 + 2)
    assert not breaker.can_resume_trading(T0 + 3)
    assert kinds(breaker.manual_resume("emergency", T0 + 4)) == ["EmergencyExitCleared"]
    assert breaker.can_resume_trading(T0 + 5) and breaker.emergency_phase is None


# --------------------------------------------------------------------------------------- persistence
def busy_breaker() -> CircuitBreaker:
    breaker = half_open_volatility()
    for i in range(5):
        breaker.record_trade_result(-1.0, T0 + i)
    breaker.record_api_error(T0 + 2 * COOLDOWN_MS)
    breaker.trigger_emergency_exit("test", T0 + 2 * COOLDOWN_MS)
    return breaker


def test_state_round_trips_through_json() -> None:
    breaker = busy_breaker()
    state = json.loads(json.dumps(breaker.to_state()))
    restored = CircuitBreaker.from_state(AUTO, state)
    assert restored.to_state() == breaker.to_state()
    assert restored.statuses() == breaker.statuses()
    assert restored.emergency_phase == "in_progress"


def test_restore_rejects_an_unknown_state_version() -> None:
    with pytest.raises(CircuitBreakerException, match="version"):
        CircuitBreaker(AUTO).restore(CircuitBreaker(AUTO).to_state() | {"version": 0})


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("volatility"), st.floats(min_value=0.0, max_value=6.0)),
        st.tuples(st.just("trade"), st.sampled_from([-5.0, 0.0, 5.0])),
        st.tuples(st.just("daily"), st.floats(min_value=0.0, max_value=8.0)),
        st.tuples(st.just("error"), st.just(0.0)),
        st.tuples(st.just("success"), st.just(0.0)),
        st.tuples(st.just("advance"), st.just(0.0)),
        st.tuples(st.just("resume"), st.sampled_from([0.0, 1.0, 2.0])),
    ),
    max_size=40,
)


def apply(breaker: CircuitBreaker, operation: tuple[str, float], now_ms: int) -> list[str]:
    name, value = operation
    if name == "volatility":
        return kinds(breaker.check_volatility_circuit(value, 1.0, now_ms).events)
    if name == "trade":
        return kinds(breaker.record_trade_result(value, now_ms).events)
    if name == "daily":
        return kinds(breaker.check_loss_circuit(breaker.consecutive_losses, value, now_ms).events)
    if name == "error":
        return kinds(breaker.record_api_error(now_ms).events)
    if name == "success":
        return kinds(breaker.record_api_success(now_ms).events)
    if name == "advance":
        return kinds(breaker.advance(now_ms))
    return kinds(breaker.manual_resume(("volatility", "loss", "system")[int(value)], now_ms))


@settings(max_examples=40, deadline=None)
@given(before=OPERATIONS, after=OPERATIONS)
def test_a_restored_breaker_behaves_exactly_like_the_original(
    before: list[tuple[str, float]], after: list[tuple[str, float]]
) -> None:
    config = BreakerConfig(cooldown_s=30.0, latching=["loss"])
    original = CircuitBreaker(config)
    step_ms = 20 * SECOND_MS
    for index, operation in enumerate(before):
        apply(original, operation, T0 + index * step_ms)
    restored = CircuitBreaker.from_state(config, json.loads(json.dumps(original.to_state())))
    start = T0 + len(before) * step_ms
    for index, operation in enumerate(after):
        now = start + index * step_ms
        assert apply(restored, operation, now) == apply(original, operation, now)
        assert restored.allows_entry(now) == original.allows_entry(now)
    assert restored.to_state() == original.to_state()
