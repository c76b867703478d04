"""Specification of unknown-outcome resolution, booking net of base fees, and the order-rate governor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.errors import ExchangeUnavailableException
from engine.domain.models import Fill, MarketLimits, Order, OrderStatus, OrderType, Side
from engine.execution.booking import book_entry, floor_to_lot, sellable
from engine.execution.broker import OrderAck
from engine.execution.order_resolution import Holding, Outcome, ResolutionPolicy, resolve_unknown_order
from engine.execution.protection import RATE_WINDOW_MS, OrderRateGovernor

POLICY = ResolutionPolicy(window_s=4.0, first_delay_s=0.25, max_delay_s=1.0)
BEFORE = Holding(0.0, 0.0)


class Midpoint:
    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


@dataclass
class Venue:
    """Scripted answers: the order appears after ``visible_after`` lookups; an outage for the first ``down``."""

    visible_after: int | None = None
    down: int = 0
    holding_now: Holding = BEFORE
    trades: int = 0
    lookups: int = 0
    waits: list[float] = field(default_factory=list)

    async def find(self) -> OrderAck | None:
        self.lookups += 1
        if self.lookups <= self.down:
            raise ExchangeUnavailableException("fetch_order", "down")
        if self.visible_after is not None and self.lookups > self.visible_after:
            return OrderAck(Order("cid", "BTC/USDT", Side.BUY, OrderType.MARKET, 1.0, OrderStatus.FILLED, 0))
        return None

    async def holding(self) -> Holding:
        return self.holding_now

    async def trades_since_send(self) -> int:
        return self.trades

    async def sleep(self, delay: float) -> None:
        self.waits.append(delay)

    def resolve(self, before: Holding | None = BEFORE) -> Awaitable[object]:
        return resolve_unknown_order(self.find, self.holding, self.trades_since_send, before=before, policy=POLICY,
                                     sleep=self.sleep, rng=Midpoint())


async def test_an_order_that_shows_up_during_the_window_is_found() -> None:
    venue = Venue(visible_after=3)
    resolution = await venue.resolve()
    assert resolution.outcome is Outcome.FOUND and venue.lookups == 4  # type: ignore[attr-defined]


async def test_absence_needs_the_whole_window_of_lookups_and_an_unchanged_account() -> None:
    venue = Venue()
    resolution = await venue.resolve()
    assert resolution.outcome is Outcome.ABSENT  # type: ignore[attr-defined]
    assert sum(venue.waits) == pytest.approx(POLICY.window_s)
    assert max(venue.waits) <= POLICY.max_delay_s


@pytest.mark.parametrize("change", [
    pytest.param({"holding_now": Holding(0.5, 0.5)}, id="base-balance-moved"),
    pytest.param({"trades": 1}, id="a-trade-since-the-send"),
    pytest.param({"down": 1000}, id="lookups-unanswered"),
])
async def test_any_sign_of_an_effect_keeps_the_outcome_unknown(change: dict[str, object]) -> None:
    venue = Venue(**change)  # type: ignore[arg-type]
    resolution = await venue.resolve()
    assert resolution.outcome is Outcome.UNKNOWN  # type: ignore[attr-defined]


async def test_without_a_balance_from_before_the_send_the_trades_alone_decide() -> None:
    assert (await Venue().resolve(before=None)).outcome is Outcome.ABSENT  # type: ignore[attr-defined]
    assert (await Venue(trades=2).resolve(before=None)).outcome is Outcome.UNKNOWN  # type: ignore[attr-defined]


def _buy_ack(filled: float, fills: tuple[Fill, ...]) -> OrderAck:
    order = Order("cid", "BTC/USDT", Side.BUY, OrderType.MARKET, filled, OrderStatus.FILLED, 0,
                  filled_quantity=filled, average_price=50_000.0)
    return OrderAck(order, fills)


def test_a_buy_is_booked_net_of_the_fee_charged_in_the_base_asset() -> None:
    fills = (Fill("cid", "BTC/USDT", Side.BUY, 0.06, 50_000.0, 0.00006, 0, "BTC"),
             Fill("cid", "BTC/USDT", Side.BUY, 0.04, 50_000.0, 0.00004, 0, "BTC"))
    booked = book_entry(_buy_ack(0.1, fills), "BTC")
    assert booked.quantity == pytest.approx(0.0999, abs=1e-15)
    assert booked.fee_quote == pytest.approx(0.0001 * 50_000.0)
    assert booked.fills_known


def test_a_fee_in_another_asset_leaves_the_quantity_whole() -> None:
    fills = (Fill("cid", "BTC/USDT", Side.BUY, 0.1, 50_000.0, 0.01, 0, "BNB"),)
    assert book_entry(_buy_ack(0.1, fills), "BTC").quantity == 0.1


@given(st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
       st.sampled_from([1e-8, 1e-5, 1e-3, 0.1, 1.0]))
def test_floor_to_lot_never_exceeds_the_quantity_and_leaves_less_than_a_lot(quantity: float, step: float) -> None:
    limits = MarketLimits("X/Y", lot_step=step)
    floored = floor_to_lot(quantity, limits)
    assert floored <= quantity + 1e-9
    assert quantity - floored < step + 1e-9
    assert Decimal(repr(floored)) % Decimal(repr(step)) == 0, "a whole number of lots"


def test_what_sells_is_never_more_than_is_free_or_than_the_bot_holds() -> None:
    limits = MarketLimits("BTC/USDT", lot_step=1e-5)
    assert sellable(0.0999, 0.05, limits) == 0.05
    assert sellable(0.09992, 1.0, limits) == 0.09992
    assert sellable(0.099925, 1.0, limits) == 0.09992


def test_the_governor_refuses_past_the_per_symbol_bound_and_forgets_after_a_minute() -> None:
    governor = OrderRateGovernor(per_symbol=3, per_account=5)
    assert [governor.allow("BTC/USDT", t) for t in range(4)] == [True, True, True, False]
    assert governor.allow("ETH/USDT", 10), "another symbol has its own bound"
    assert governor.allow("BTC/USDT", RATE_WINDOW_MS + 1)


def test_the_governor_bounds_the_whole_account() -> None:
    governor = OrderRateGovernor(per_symbol=10, per_account=2)
    allowed: list[Callable[[], bool]] = [lambda s=s: governor.allow(s, 0) for s in ("A/B", "C/D", "E/F")]
    assert [check() for check in allowed] == [True, True, False]
