"""Specification of SystemHealthMonitor: the system breaker moves on the clock and on probes, nothing else does."""

from __future__ import annotations

from engine.config import BreakerConfig
from engine.core.breaker import SYSTEM, VOLATILITY, CircuitBreaker
from engine.domain.clock import SimulatedClock
from engine.domain.errors import ExchangeUnavailableException
from engine.domain.events import Event
from engine.domain.models import CircuitState
from engine.runtime.health import SystemHealthMonitor

CONFIG = BreakerConfig(api_error_threshold=2, api_error_window_s=10.0, cooldown_s=5.0, latching=[])


def _monitor(breaker: CircuitBreaker, clock: SimulatedClock, events: list[Event], probe=None) -> SystemHealthMonitor:
    return SystemHealthMonitor(breaker, clock, events.extend, probe, interval_s=1.0)


async def test_without_any_call_an_open_system_breaker_half_opens_once_its_errors_age_out() -> None:
    clock, breaker, events = SimulatedClock(1_000), CircuitBreaker(CONFIG), []
    breaker.record_api_error(1_000)
    breaker.record_api_error(1_000)
    monitor = _monitor(breaker, clock, events)

    clock.advance_to(11_001)  # both errors left the 10 s window
    await monitor.tick()
    clock.advance_to(16_001)  # and the 5 s cool-down has passed
    await monitor.tick()

    assert [e.kind for e in events] == ["BreakerCoolingDown", "BreakerHalfOpened"]
    assert breaker.status(SYSTEM).state is CircuitState.HALF_OPEN


async def test_probe_successes_close_a_half_open_system_breaker() -> None:
    clock, breaker, events = SimulatedClock(0), CircuitBreaker(CONFIG), []

    async def probe() -> None:
        events.extend(breaker.record_api_success(clock.now_ms()).events)

    breaker.record_api_error(0)
    breaker.record_api_error(0)
    monitor = _monitor(breaker, clock, events, probe)
    for now in (10_001, 15_001, 15_002, 15_003):
        clock.advance_to(now)
        await monitor.tick()

    assert events[-1].kind == "BreakerReset"
    assert breaker.status(SYSTEM).state is CircuitState.CLOSED


async def test_failed_probes_trip_the_breaker_between_candles_and_never_escape() -> None:
    clock, breaker, events = SimulatedClock(0), CircuitBreaker(CONFIG), []

    async def probe() -> None:
        events.extend(breaker.record_api_error(clock.now_ms()).events)
        raise ExchangeUnavailableException("fetch_server_time", "HTTP 503", 1)

    monitor = _monitor(breaker, clock, events, probe)
    await monitor.tick()
    await monitor.tick()

    assert [e.kind for e in events] == ["BreakerTripped"]
    assert monitor.probe_failures == 2


async def test_volatility_breaker_is_left_to_the_decision_path() -> None:
    clock, breaker, events = SimulatedClock(0), CircuitBreaker(CONFIG), []
    breaker.check_volatility_circuit(5.0, 1.0, 0)  # trips
    breaker.check_volatility_circuit(1.0, 1.0, 0)  # normal: cool-down starts
    monitor = _monitor(breaker, clock, events)

    clock.advance_to(60_000)
    await monitor.tick()

    assert breaker.status(VOLATILITY).state is CircuitState.OPEN, "only a bar may half-open it (as in a backtest)"
