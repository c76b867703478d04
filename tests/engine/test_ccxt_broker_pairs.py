"""Specification of CcxtBroker's stop-and-target pairs: Binance OCO through ccxt's implicit API, against the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from engine.domain.errors import InsufficientFundsException, OrderOutcomeUnknownException, StopWouldTriggerException
from engine.domain.models import OrderStatus, OrderType, Side
from engine.execution.broker import PairAck, StopReplaceError, TargetCrossedError, pair_client_ids
from engine.execution.ccxt_broker import CcxtBroker
from engine.execution.ccxt_client import create_binance_client
from tests.engine.test_ccxt_broker import CLIENT_TIMEOUT_S, POLICY, Recorder, Rig, buy
from tests.fakes.fake_binance import FakeBinance, Fault, FaultKind

OCO = ("POST", "/api/v3/orderList/oco")
SYMBOL = "BTC/USDT"


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with FakeBinance(fee_rate="0.001") as fake:
        fake.add_market("BTC", "USDT", price="50000", tick_size="0.01", step_size="0.00001", min_notional="5")
        fake.add_market("ETH", "USDT", price="3000", order_types=("LIMIT", "MARKET", "STOP_LOSS_LIMIT"))
        fake.set_balance("USDT", "10000")
        recorder = Recorder()
        client = create_binance_client(
            fake.api_key, fake.api_secret, timeout_s=CLIENT_TIMEOUT_S, base_url=fake.base_url, enable_rate_limit=False
        )
        client.timeout_on_exit = 0
        broker = CcxtBroker(client, policy=POLICY, on_error=recorder.errors.append, sleep=recorder.sleep)
        try:
            yield Rig(fake, broker, recorder)
        finally:
            await broker.close()


async def pair(rig: Rig, stop_id: str = "stop-1", stop: float = 49000, target: float = 52000,
               quantity: float = 0.0999) -> PairAck:
    return await rig.broker.place_protection(stop_id, SYMBOL, Side.SELL, quantity, stop, target)


async def test_pairs_are_offered_only_where_the_market_has_oco_and_a_limit_maker(rig: Rig) -> None:
    rig.fake.add_market("SOL", "USDT", price="150", oco_allowed=False)
    await rig.broker.load_markets()

    assert rig.broker.supports_protection_pair(SYMBOL)
    assert not rig.broker.supports_protection_pair("ETH/USDT"), "no LIMIT_MAKER among its order types"
    assert not rig.broker.supports_protection_pair("SOL/USDT"), "ocoAllowed is false"


async def test_a_pair_rests_one_oco_list_with_binances_parameters_locking_the_quantity_once(rig: Rig) -> None:
    await buy(rig, 0.1)

    placed = await pair(rig, stop=49000.004, target=52000.006)

    assert placed.is_open and placed.filled_leg is None and not placed.recovered
    assert (placed.stop.order.type, placed.stop.order.stop_price) == (OrderType.STOP_MARKET, pytest.approx(49000))
    assert (placed.target.order.type, placed.target.order.price) == (OrderType.LIMIT, pytest.approx(52000.01))
    list_id, target_id = pair_client_ids("stop-1")
    [post] = rig.fake.requests(*OCO)
    assert {key: post.params[key] for key in ("symbol", "side", "quantity", "aboveType", "abovePrice",
                                               "aboveClientOrderId", "belowType", "belowStopPrice",
                                               "belowClientOrderId", "listClientOrderId", "newOrderRespType")} == {
        "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.0999", "aboveType": "LIMIT_MAKER",
        "abovePrice": "52000.01", "aboveClientOrderId": target_id, "belowType": "STOP_LOSS",
        "belowStopPrice": "49000", "belowClientOrderId": "stop-1", "listClientOrderId": list_id,
        "newOrderRespType": "FULL"}
    assert rig.fake.exchange.locked("BTC") == Decimal("0.0999")
    assert {o.client_order_id for o in await rig.broker.fetch_open_orders(SYMBOL)} == {"stop-1", target_id}


async def test_where_only_stop_loss_limit_exists_the_pairs_stop_leg_is_one(rig: Rig) -> None:
    types = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT")
    rig.fake.add_market("SOL", "USDT", price="150", order_types=types)
    await rig.broker.load_markets()
    rig.fake.set_balance("SOL", "2")

    placed = await rig.broker.place_protection("sol-stop", "SOL/USDT", Side.SELL, 2, 140, 170)

    assert placed.stop.order.type is OrderType.STOP_LIMIT
    assert placed.stop.order.stop_price == pytest.approx(140) and (placed.stop.order.price or 0) < 140
    assert rig.fake.requests(*OCO)[-1].params["belowTimeInForce"] == "GTC"


async def test_a_pair_is_looked_up_before_it_is_sent(rig: Rig) -> None:
    await buy(rig, 0.1)
    first = await pair(rig)

    again = await pair(rig)

    assert again.recovered and again.stop.order.exchange_order_id == first.stop.order.exchange_order_id
    assert len(rig.fake.requests(*OCO)) == 1 and len(rig.fake.exchange.lists.lists) == 1


@pytest.mark.parametrize("fault", [
    pytest.param(Fault(FaultKind.UNKNOWN_AFTER_BOOKING), id="503-1007-after-booking"),
    pytest.param(Fault(FaultKind.EMPTY_OBJECT_REPLY), id="empty-object"),
    pytest.param(Fault(FaultKind.MALFORMED_JSON), id="truncated-json"),
])
async def test_an_unknown_pair_outcome_is_resolved_by_looking_its_stop_leg_up_never_resent(
    rig: Rig, fault: Fault
) -> None:
    await buy(rig, 0.1)
    rig.fake.inject(*OCO, fault)

    placed = await pair(rig)

    assert placed.recovered and placed.is_open
    assert len(rig.fake.requests(*OCO)) == 1 and len(rig.fake.exchange.lists.lists) == 1
    assert rig.fake.duplicate_client_ids() == []


async def test_a_pair_whose_outcome_stays_unknown_is_reported_as_unknown(rig: Rig) -> None:
    await buy(rig, 0.1)
    rig.fake.inject(*OCO, Fault(FaultKind.SERVER_ERROR))
    rig.fake.inject("GET", "/api/v3/myTrades", FaultKind.SERVER_ERROR, times=100)  # absence cannot be proven

    with pytest.raises(OrderOutcomeUnknownException) as raised:
        await pair(rig)

    assert raised.value.client_order_id == "stop-1" and len(rig.fake.requests(*OCO)) == 1


async def test_a_target_already_reached_and_a_stop_already_crossed_are_told_apart(rig: Rig) -> None:
    await buy(rig, 0.1)

    with pytest.raises(TargetCrossedError, match="immediately match"):
        await pair(rig, target=49990)
    with pytest.raises(StopWouldTriggerException, match="through the stop"):
        await pair(rig, "stop-2", stop=50010)
    with pytest.raises(InsufficientFundsException):
        await pair(rig, "stop-3", quantity=0.5)

    assert rig.fake.open_order_lists() == [] and rig.fake.exchange.locked("BTC") == 0


async def test_the_target_leg_sells_at_its_limit_and_the_pair_says_so(rig: Rig) -> None:
    await buy(rig, 0.1)
    await pair(rig)
    rig.fake.set_price(SYMBOL, "52300")

    seen = await rig.broker.fetch_protection("stop-1", SYMBOL)

    assert seen is not None and not seen.is_open
    assert seen.filled_leg is seen.target and seen.target.status is OrderStatus.FILLED
    assert seen.target.average_price == pytest.approx(52000) and seen.target.fills
    assert seen.target.fills[0].fee_asset == "USDT"
    assert seen.stop.status is OrderStatus.CANCELED and seen.stop.filled_quantity == 0, "expired"


async def test_cancel_takes_both_legs_down_and_a_pair_already_done_comes_back_as_it_is(rig: Rig) -> None:
    await buy(rig, 0.1)
    await pair(rig)

    cancelled = await rig.broker.cancel_protection("stop-1", SYMBOL)

    assert cancelled.stop.status is OrderStatus.CANCELED and cancelled.target.status is OrderStatus.CANCELED
    assert rig.fake.exchange.locked("BTC") == 0
    await pair(rig, "stop-2")
    rig.fake.set_price(SYMBOL, "48900")
    done = await rig.broker.cancel_protection("stop-2", SYMBOL)
    assert done.filled_leg is done.stop and done.stop.average_price == pytest.approx(48900)


async def test_replace_moves_the_stop_keeps_the_target_and_leaves_one_list(rig: Rig) -> None:
    await buy(rig, 0.1)
    await pair(rig)

    moved = await rig.broker.replace_protection("stop-1", "stop-2", SYMBOL, Side.SELL, 0.0999, 49500, 52000)

    assert moved.client_order_id == "stop-2" and moved.stop.order.stop_price == pytest.approx(49500)
    assert moved.target.order.price == pytest.approx(52000)
    [working] = rig.fake.open_order_lists()
    assert [o.client_order_id for o in working.legs] == ["stop-2", pair_client_ids("stop-2")[1]]
    methods = [r.method for r in rig.fake.log if r.path.startswith("/api/v3/orderList")]
    assert methods == ["POST", "DELETE", "POST"], "cancel then place"


async def test_replace_of_a_pair_whose_target_sold_returns_it_and_places_nothing(rig: Rig) -> None:
    await buy(rig, 0.1)
    await pair(rig)
    rig.fake.set_price(SYMBOL, "52100")

    result = await rig.broker.replace_protection("stop-1", "stop-2", SYMBOL, Side.SELL, 0.0999, 49500, 52000)

    assert result.client_order_id == "stop-1" and result.filled_leg is result.target
    assert len(rig.fake.requests(*OCO)) == 1


async def test_a_refused_replacement_puts_the_old_pair_back(rig: Rig) -> None:
    await buy(rig, 0.1)
    await pair(rig)
    rig.fake.inject(*OCO, FaultKind.REJECT_FILTER, times=1)

    with pytest.raises(StopReplaceError) as raised:
        await rig.broker.replace_protection("stop-1", "stop-2", SYMBOL, Side.SELL, 0.0999, 49500, 52000)

    restored, target = raised.value.restored, raised.value.restored_target
    assert restored is not None and restored.order.stop_price == pytest.approx(49000)
    assert target is not None and target.order.price == pytest.approx(52000)
    assert len(rig.fake.open_order_lists()) == 1


async def test_a_replacement_at_a_crossed_stop_or_a_reached_target_is_reported_not_restored(rig: Rig) -> None:
    await buy(rig, 0.1)
    await pair(rig)
    rig.fake.set_price(SYMBOL, "49400")

    with pytest.raises(StopReplaceError) as crossed:
        await rig.broker.replace_protection("stop-1", "stop-2", SYMBOL, Side.SELL, 0.0999, 49500, 52000)
    assert crossed.value.would_trigger and crossed.value.unprotected

    await pair(rig, "stop-3", stop=49000, target=49600)
    rig.fake.set_price(SYMBOL, "49590")
    with pytest.raises(StopReplaceError) as reached:
        await rig.broker.replace_protection("stop-3", "stop-4", SYMBOL, Side.SELL, 0.0999, 49100, 49500)
    assert reached.value.target_reached and reached.value.unprotected
    assert rig.fake.open_order_lists() == []
