"""Specification of the fake Binance's OCO order lists, driven through the real ccxt client's implicit API methods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt  # type: ignore[import-untyped]
import pytest

from tests.engine.test_fake_binance import binance_client
from tests.fakes.fake_binance import FakeBinance

QTY = "0.05"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance(fee_rate="0.001", maker_fee_rate="0.0002") as server:
        server.add_market("BTC", "USDT", price="50000")
        server.add_market("ETH", "USDT", price="3000", oco_allowed=False)
        server.set_balance("USDT", "10000")
        server.set_balance("BTC", "0.1")
        yield server


@pytest.fixture
async def exchange(fake: FakeBinance) -> AsyncIterator[Any]:
    async with binance_client(fake) as client:
        yield client


def oco(list_id: str = "pair-l", stop_id: str = "pair", target_id: str = "pair-t", *, target: str = "52000",
        stop: str = "49000", symbol: str = "BTCUSDT", **extra: str) -> dict[str, str]:
    """Binance's own parameters of a SELL OCO: a LIMIT_MAKER above, a STOP_LOSS below."""
    return {"symbol": symbol, "side": "SELL", "quantity": QTY, "listClientOrderId": list_id,
            "aboveType": "LIMIT_MAKER", "abovePrice": target, "aboveClientOrderId": target_id,
            "belowType": "STOP_LOSS", "belowStopPrice": stop, "belowClientOrderId": stop_id,
            "newOrderRespType": "FULL", **extra}


async def leg(exchange: Any, client_id: str) -> dict[str, Any]:
    order: dict[str, Any] = await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": client_id})
    return order


async def test_an_oco_reply_has_binances_shape_and_each_leg_is_an_order_of_its_own(
    fake: FakeBinance, exchange: Any
) -> None:
    reply = await exchange.private_post_orderlist_oco(oco())

    assert {"orderListId", "contingencyType", "listStatusType", "listOrderStatus", "listClientOrderId",
            "transactionTime", "symbol", "orders", "orderReports"} <= set(reply)
    assert (reply["contingencyType"], reply["listStatusType"], reply["listOrderStatus"]) == (
        "OCO", "EXEC_STARTED", "EXECUTING")
    assert reply["listClientOrderId"] == "pair-l" and reply["symbol"] == "BTCUSDT"
    assert [o["clientOrderId"] for o in reply["orders"]] == ["pair", "pair-t"], "below first, as Binance lists it"
    stop_report, maker_report = reply["orderReports"]
    assert (stop_report["type"], stop_report["stopPrice"], stop_report["status"]) == ("STOP_LOSS", "49000.00000000",
                                                                                      "NEW")
    assert (maker_report["type"], maker_report["price"]) == ("LIMIT_MAKER", "52000.00000000")
    assert {r["orderListId"] for r in reply["orderReports"]} == {reply["orderListId"]}
    assert fake.exchange.locked("BTC") == Decimal(QTY), "the quantity is locked once for both legs"
    for client_id, kind in (("pair", "STOP_LOSS"), ("pair-t", "LIMIT_MAKER")):
        order = await leg(exchange, client_id)
        assert order["status"] == "open" and order["info"]["type"] == kind
        assert order["info"]["orderListId"] == reply["orderListId"]
    [listed] = await exchange.private_get_openorderlist()
    assert listed["listClientOrderId"] == "pair-l" and "orderReports" not in listed
    queried = await exchange.private_get_orderlist({"origClientOrderId": "pair-l"})
    assert queried["orderListId"] == reply["orderListId"]
    assert {o["clientOrderId"] for o in await exchange.fetch_open_orders("BTC/USDT")} == {"pair", "pair-t"}


async def test_the_limit_maker_fills_at_its_price_with_the_maker_fee_and_the_stop_leg_expires(
    fake: FakeBinance, exchange: Any
) -> None:
    await exchange.private_post_orderlist_oco(oco())

    fake.set_price("BTC/USDT", "52500")  # trades through the target

    maker, stop = await leg(exchange, "pair-t"), await leg(exchange, "pair")
    assert maker["status"] == "closed" and maker["average"] == pytest.approx(52000), "at its limit, not the last"
    assert stop["info"]["status"] == "EXPIRED"
    [trade] = await exchange.fetch_my_trades("BTC/USDT")
    assert trade["fee"]["cost"] == pytest.approx(0.05 * 52000 * 0.0002) and trade["takerOrMaker"] == "maker"
    assert fake.exchange.locked("BTC") == 0 and fake.exchange.free("BTC") == Decimal("0.05")
    listed = await exchange.private_get_orderlist({"origClientOrderId": "pair-l"})
    assert (listed["listStatusType"], listed["listOrderStatus"]) == ("ALL_DONE", "ALL_DONE")
    assert await exchange.private_get_openorderlist() == []


async def test_the_stop_leg_fills_at_the_market_and_the_limit_maker_expires(fake: FakeBinance, exchange: Any) -> None:
    await exchange.private_post_orderlist_oco(oco())

    fake.set_price("BTC/USDT", "48900")

    stop, maker = await leg(exchange, "pair"), await leg(exchange, "pair-t")
    assert stop["status"] == "closed" and stop["average"] == pytest.approx(48900)
    assert maker["info"]["status"] == "EXPIRED" and maker["filled"] == 0
    assert fake.exchange.locked("BTC") == 0
    fake.set_price("BTC/USDT", "53000")
    assert (await leg(exchange, "pair-t"))["filled"] == 0, "an expired leg never fills"


async def test_a_limit_maker_that_would_trade_at_once_is_refused(fake: FakeBinance, exchange: Any) -> None:
    with pytest.raises(ccxt.OrderImmediatelyFillable, match="Order would immediately match and take"):
        await exchange.private_post_orderlist_oco(oco(target="49990", stop="49000"))
    with pytest.raises(ccxt.InvalidOrder, match="relationship of the prices"):
        await exchange.private_post_orderlist_oco(oco(target="52000", stop="50010"))

    assert fake.exchange.locked("BTC") == 0 and fake.accepted_orders() == []


async def test_cancelling_the_list_or_one_leg_cancels_both_and_releases_the_lock(
    fake: FakeBinance, exchange: Any
) -> None:
    await exchange.private_post_orderlist_oco(oco())
    reply = await exchange.private_delete_orderlist({"symbol": "BTCUSDT", "listClientOrderId": "pair-l"})

    assert reply["listStatusType"] == "ALL_DONE"
    assert [(r["origClientOrderId"], r["status"]) for r in reply["orderReports"]] == [
        ("pair", "CANCELED"), ("pair-t", "CANCELED")]
    assert fake.exchange.locked("BTC") == 0
    with pytest.raises(ccxt.OrderNotFound):
        await exchange.private_delete_orderlist({"symbol": "BTCUSDT", "listClientOrderId": "pair-l"})

    await exchange.private_post_orderlist_oco(oco("again-l", "again", "again-t"))
    await exchange.cancel_order(None, "BTC/USDT", {"clientOrderId": "again-t"})
    assert (await leg(exchange, "again"))["status"] == "canceled", "one leg cancelled: the whole list is"
    assert fake.exchange.locked("BTC") == 0


async def test_client_ids_of_a_list_and_its_legs_are_unique_only_while_open(fake: FakeBinance, exchange: Any) -> None:
    await exchange.private_post_orderlist_oco(oco(**{"quantity": "0.02"}))
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await exchange.private_post_orderlist_oco(oco("other-l", **{"quantity": "0.02"}))
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await exchange.private_post_orderlist_oco(oco("pair-l", "s2", "t2", **{"quantity": "0.02"}))

    await exchange.private_delete_orderlist({"symbol": "BTCUSDT", "listClientOrderId": "pair-l"})
    await exchange.private_post_orderlist_oco(oco(**{"quantity": "0.02"}))  # done: every id may be used again
    assert len(fake.exchange.lists.lists) == 2 and fake.duplicate_client_ids() == ["pair", "pair-t"]


async def test_a_second_full_size_pair_is_refused_for_the_locked_balance(fake: FakeBinance, exchange: Any) -> None:
    await exchange.private_post_orderlist_oco(oco(**{"quantity": "0.1"}))

    with pytest.raises(ccxt.InsufficientFunds):
        await exchange.private_post_orderlist_oco(oco("b-l", "b", "b-t", **{"quantity": "0.1"}))


async def test_a_market_without_oco_says_so_and_refuses_pairs(fake: FakeBinance, exchange: Any) -> None:
    markets = await exchange.load_markets()
    assert markets["ETH/USDT"]["info"]["ocoAllowed"] is False and markets["BTC/USDT"]["info"]["ocoAllowed"]
    fake.set_balance("ETH", "1")

    with pytest.raises(ccxt.InvalidOrder, match="OCO orders are not supported"):
        await exchange.private_post_orderlist_oco(oco(symbol="ETHUSDT", target="3200", stop="2900"))
    assert fake.oco_posts("ETH/USDT") and fake.order_posts("ETH/USDT") == fake.oco_posts("ETH/USDT")
