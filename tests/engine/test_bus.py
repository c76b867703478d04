"""Specification of the bus: events are never dropped, snapshots coalesce to the newest."""

from __future__ import annotations

from engine.domain.bus import Bus
from engine.domain.models import TradingState
from engine.domain.snapshot import EngineSnapshot
from tests.event_samples import filled, happened


def make_snapshot(time_ms: int) -> EngineSnapshot:
    return EngineSnapshot(
        time_ms=time_ms, mode="paper", exchange="binance", trading_state=TradingState.ACTIVE,
        feed_healthy=True, equity=10_000.0, cash=10_000.0, realized_pnl_today=0.0, unrealized_pnl=0.0,
        peak_equity=10_000.0, drawdown_pct=0.0, max_drawdown_pct=0.0, daily_loss_pct=0.0,
        max_drawdown_limit_pct=10.0, daily_loss_limit_pct=5.0,
    )


async def test_every_event_reaches_every_subscriber_in_order() -> None:
    bus = Bus()
    first, second = bus.subscribe("a"), bus.subscribe("b")
    for index in range(1000):
        bus.publish_event(filled(index, f"fill {index}"))
    for subscription in (first, second):
        assert [event.time_ms for event in subscription.drain_events()] == list(range(1000))


async def test_slow_subscriber_sees_only_the_newest_snapshot() -> None:
    bus = Bus()
    subscription = bus.subscribe("console")
    for time_ms in range(50):
        bus.publish_snapshot(make_snapshot(time_ms))
    assert (await subscription.next_snapshot()).time_ms == 49


async def test_late_subscriber_starts_with_the_latest_snapshot() -> None:
    bus = Bus()
    bus.publish_snapshot(make_snapshot(7))
    assert (await bus.subscribe("late").next_snapshot()).time_ms == 7


async def test_closed_subscription_receives_nothing_more() -> None:
    bus = Bus()
    subscription = bus.subscribe("gone")
    subscription.close()
    bus.publish_event(happened(1, "halt"))
    assert subscription.drain_events() == []
