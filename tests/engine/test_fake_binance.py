"""Specification of the fake Binance spot server the execution tests stand on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt  # type: ignore[import-untyped]
import pytest

from engine.domain.timeframes import HOUR_MS
from engine.execution.ccxt_client import create_binance_client
from tests.fakes.fake_binance import FakeBinance, Fault, FaultKind

T0 = 1_699_999_200_000  # an hour boundary, UTC ms


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.add_market("BTC", "USDT", price="50000")
        server.set_balance("USDT", "10000")
        yield server


@contextlib.asynccontextmanager
async def binance_client(fake: FakeBinance) -> AsyncIterator[Any]:
    client = create_binance_client(
        fake.api_key, fake.api_secret, timeout_s=0.3, base_url=fake.base_url, enable_rate_limit=False
    )
    client.timeout_on_exit = 0
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def exchange(fake: FakeBinance) -> AsyncIterator[Any]:
    async with binance_client(fake) as client:
        yield client


async def wait_until(condition: Callable[[], bool], deadline_s: float = 5.0) -> None:
    async with asyncio.timeout(deadline_s):
        while not condition():
            await asyncio.sleep(0.02)


async def get(fake: FakeBinance, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(fake.base_url + path, **kwargs) as response:
        text = await response.text()
        return response.status, (await response.json() if response.content_type == "application/json" else text)


async def test_public_endpoints_answer_without_a_key(fake: FakeBinance) -> None:
    assert await get(fake, "/api/v3/ping") == (200, {})
    status, server_time = await get(fake, "/api/v3/time")
    assert status == 200 and abs(server_time["serverTime"] - time.time() * 1000) < 5_000
    assert await get(fake, "/api/v3/ticker/price", params={"symbol": "BTCUSDT"}) == (
        200,
        {"symbol": "BTCUSDT", "price": "50000.00000000"},
    )
    status, book = await get(fake, "/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"})
    assert book["bidPrice"] == book["askPrice"] == "50000.00000000"


async def test_signed_endpoints_require_the_api_key_header(fake: FakeBinance) -> None:
    status, body = await get(fake, "/api/v3/account", params={"timestamp": "1", "signature": "x"})

    assert status == 401 and body["code"] == -2015


async def test_a_wrong_signature_is_refused(fake: FakeBinance) -> None:
    client = create_binance_client(fake.api_key, "wrong-secret", timeout_s=0.3, base_url=fake.base_url)
    client.timeout_on_exit = 0
    try:
        with pytest.raises(ccxt.AuthenticationError):
            await client.fetch_balance()
    finally:
        await client.close()


async def test_exchange_info_describes_stops_permissions_and_filters(fake: FakeBinance) -> None:
    _, info = await get(fake, "/api/v3/exchangeInfo")

    symbol = info["symbols"][0]
    assert {"STOP_LOSS", "STOP_LOSS_LIMIT", "MARKET"} <= set(symbol["orderTypes"])
    assert symbol["permissionSets"] == [["SPOT"]]
    assert {f["filterType"] for f in symbol["filters"]} == {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL"}


async def test_unknown_paths_get_an_html_404(fake: FakeBinance) -> None:
    status, body = await get(fake, "/sapi/v1/capital/config/getall")

    assert status == 404 and "404" in body


async def test_klines_serve_only_candles_opened_by_now_in_binance_rows() -> None:
    now = [T0 + 2 * HOUR_MS + 5]
    async with FakeBinance(clock=lambda: now[0]) as fake:
        fake.add_market("BTC", "USDT")
        fake.exchange.load_candles("BTCUSDT", "1h", [(T0 + i * HOUR_MS, 1, 2, 0.5, 1.5, 10) for i in range(5)])

        _, rows = await get(fake, "/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1h", "startTime": T0})
        _, limited = await get(fake, "/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1h", "limit": 1})

    assert [row[0] for row in rows] == [T0, T0 + HOUR_MS, T0 + 2 * HOUR_MS]  # the third is forming
    assert len(rows[0]) == 12 and rows[0][6] == T0 + HOUR_MS - 1 and rows[0][4] == "1.5"
    assert [row[0] for row in limited] == [T0 + 2 * HOUR_MS]  # no startTime: the most recent


async def test_market_orders_fill_at_the_set_price_with_the_fee_in_the_asset_received(
    fake: FakeBinance, exchange: Any
) -> None:
    fake.set_price("BTC/USDT", "40000")

    await exchange.create_order("BTC/USDT", "market", "buy", 0.1, None, {"newClientOrderId": "b1"})
    await exchange.create_order("BTC/USDT", "market", "sell", 0.05, None, {"newClientOrderId": "s1"})

    assert fake.exchange.free("BTC") == Decimal("0.0499")  # 0.1 - 0.0001 fee - 0.05
    assert fake.exchange.free("USDT") == Decimal("10000") - 4000 + 2000 - Decimal("2")
    trades = await exchange.fetch_my_trades("BTC/USDT")
    assert [(t["side"], t["fee"]["currency"]) for t in trades] == [("buy", "BTC"), ("sell", "USDT")]


async def test_a_filled_orders_client_id_can_be_reused_and_books_a_second_order(
    fake: FakeBinance, exchange: Any
) -> None:
    await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "again"})

    await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "again"})

    assert [o.status for o in fake.accepted_orders()] == ["FILLED", "FILLED"]  # Binance's rule, the default
    assert fake.duplicate_client_ids() == ["again"]  # why the broker looks an id up before re-sending it


async def test_an_open_stops_client_id_is_refused_as_duplicate(fake: FakeBinance, exchange: Any) -> None:
    await exchange.create_order("BTC/USDT", "market", "buy", 0.1, None)
    stop = {"stopLossPrice": 49000, "newClientOrderId": "st"}
    await exchange.create_order("BTC/USDT", "market", "sell", 0.01, None, stop)

    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await exchange.create_order("BTC/USDT", "market", "sell", 0.01, None, stop)

    assert len(fake.order_posts()) == 3 and len(fake.accepted_orders()) == 2
    assert fake.duplicate_client_ids() == []


async def test_strict_mode_refuses_any_reused_client_id_with_2010() -> None:
    async with FakeBinance(reject_duplicates_of_open_only=False) as fake, binance_client(fake) as exchange:
        fake.add_market("BTC", "USDT", price="50000")
        fake.set_balance("USDT", "10000")
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "dup"})

        with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
            await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "dup"})

    assert len(fake.accepted_orders()) == 1


async def test_order_helpers_filter_by_symbol(fake: FakeBinance, exchange: Any) -> None:
    fake.add_market("ETH", "USDT", price="3000")
    await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "same"})
    await exchange.create_order("ETH/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "same"})

    assert [r.params["symbol"] for r in fake.order_posts("ETH/USDT")] == ["ETHUSDT"]
    assert [o.symbol for o in fake.accepted_orders("BTCUSDT")] == ["BTCUSDT"]
    assert fake.duplicate_client_ids() == []  # one id on two symbols names two different orders


async def test_the_full_order_reply_carries_fills_with_commission_but_a_query_does_not(
    fake: FakeBinance, exchange: Any
) -> None:
    buy = await exchange.create_order("BTC/USDT", "market", "buy", 0.1, None, {"newClientOrderId": "b"})
    sell = await exchange.create_order("BTC/USDT", "market", "sell", 0.05, None, {"newClientOrderId": "s"})
    queried = await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "b"})

    assert [(f["commission"], f["commissionAsset"]) for f in buy["info"]["fills"]] == [("0.00010000", "BTC")]
    assert [(f["commission"], f["commissionAsset"]) for f in sell["info"]["fills"]] == [("2.50000000", "USDT")]
    assert "fills" not in queried["info"] and queried["status"] == "closed"
    trades = await exchange.fetch_my_trades("BTC/USDT")
    assert [(t["info"]["commission"], t["info"]["commissionAsset"]) for t in trades] == [
        ("0.00010000", "BTC"),
        ("2.50000000", "USDT"),
    ]


async def test_unknown_after_booking_raises_request_timeout_but_the_order_is_booked(
    fake: FakeBinance, exchange: Any
) -> None:
    fake.inject("POST", "/api/v3/order", FaultKind.UNKNOWN_AFTER_BOOKING)

    with pytest.raises(ccxt.RequestTimeout, match="-1007"):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "u"})

    assert [(o.client_order_id, o.status) for o in fake.accepted_orders()] == [("u", "FILLED")]
    assert fake.order_posts()[0].status == 503
    assert fake.exchange.free("USDT") == Decimal("9500")


@pytest.mark.parametrize(
    ("kind", "raw_reply"), [(FaultKind.EMPTY_OBJECT_REPLY, {}), (FaultKind.EMPTY_BODY_REPLY, "")], ids=str
)
async def test_an_empty_order_reply_parses_into_an_order_without_id_or_status(
    fake: FakeBinance, exchange: Any, kind: FaultKind, raw_reply: Any
) -> None:
    fake.inject("POST", "/api/v3/order", kind)

    order = await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "e"})

    assert order["info"] == raw_reply  # no exception: the client must notice the missing id itself
    assert order["id"] is None and order["clientOrderId"] is None and order["status"] is None
    assert [(o.client_order_id, o.status) for o in fake.accepted_orders()] == [("e", "FILLED")]


@pytest.mark.parametrize(
    "kind", [FaultKind.UNKNOWN_AFTER_BOOKING, FaultKind.EMPTY_OBJECT_REPLY, FaultKind.EMPTY_BODY_REPLY], ids=str
)
async def test_after_handling_faults_also_apply_to_queries(fake: FakeBinance, exchange: Any, kind: FaultKind) -> None:
    fake.inject("GET", "/api/v3/account", kind)

    try:
        balance: Any = await exchange.fetch_balance()
    except ccxt.RequestTimeout as timeout:
        balance = timeout

    if kind is FaultKind.UNKNOWN_AFTER_BOOKING:
        assert isinstance(balance, ccxt.RequestTimeout)
    else:
        assert balance["total"] == {}  # an empty account, not an error
    assert fake.requests("GET", "/api/v3/account")[0].fault is kind


async def test_a_late_order_is_invisible_until_it_is_booked(fake: FakeBinance, exchange: Any) -> None:
    fake.inject("POST", "/api/v3/order", Fault(FaultKind.LATE_VISIBILITY, visible_after_s=0.2))

    with pytest.raises(ccxt.RequestTimeout, match="-1007"):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "late"})

    with pytest.raises(ccxt.OrderNotFound):
        await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "late"})
    assert await exchange.fetch_open_orders("BTC/USDT") == []
    assert await exchange.fetch_my_trades("BTC/USDT") == []
    assert (await exchange.fetch_balance())["free"]["USDT"] == pytest.approx(10000)
    assert fake.pending_bookings == 1 and fake.accepted_orders() == []


async def test_a_late_order_is_booked_after_the_delay_at_the_price_of_that_moment(
    fake: FakeBinance, exchange: Any
) -> None:
    fake.inject("POST", "/api/v3/order", Fault(FaultKind.LATE_VISIBILITY, visible_after_s=0.2))
    with pytest.raises(ccxt.RequestTimeout):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "late"})
    fake.set_price("BTC/USDT", "51000")

    await wait_until(lambda: fake.pending_bookings == 0)

    order = await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "late"})
    assert order["status"] == "closed" and order["average"] == pytest.approx(51000)
    assert fake.exchange.free("USDT") == Decimal("9490")
    assert fake.exchange.free("BTC") == Decimal("0.00999")  # the fee is charged in BTC


async def test_a_late_order_refused_when_due_is_dropped_silently(fake: FakeBinance, exchange: Any) -> None:
    fake.inject("POST", "/api/v3/order", Fault(FaultKind.LATE_VISIBILITY, visible_after_s=0.2))
    with pytest.raises(ccxt.RequestTimeout):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "late"})
    fake.set_balance("USDT", "1")

    await wait_until(lambda: fake.pending_bookings == 0)

    assert fake.accepted_orders() == []
    assert [(p["newClientOrderId"], r.msg) for p, r in fake.dropped_bookings] == [
        ("late", "Account has insufficient balance for requested action.")
    ]


async def test_stopping_the_server_cancels_late_bookings(fake: FakeBinance, exchange: Any) -> None:
    fake.inject("POST", "/api/v3/order", Fault(FaultKind.LATE_VISIBILITY, visible_after_s=0.05))
    with pytest.raises(ccxt.RequestTimeout):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "late"})

    await fake.stop()
    await asyncio.sleep(0.1)  # past the booking's due time

    assert fake.pending_bookings == 0 and fake.accepted_orders() == []


def test_late_visibility_is_refused_on_endpoints_that_book_nothing() -> None:
    with pytest.raises(ValueError, match="LATE_VISIBILITY"):
        FakeBinance().inject("GET", "/api/v3/order", FaultKind.LATE_VISIBILITY)


async def test_stop_limit_triggered_through_its_limit_rests_until_the_price_returns(
    fake: FakeBinance, exchange: Any
) -> None:
    await exchange.create_order("BTC/USDT", "market", "buy", 0.1, None)
    params = {"newClientOrderId": "sl", "stopLossPrice": 49000}
    await exchange.create_order("BTC/USDT", "limit", "sell", 0.05, 48900, params)

    fake.set_price("BTC/USDT", "48000")  # gap down through stop and limit
    assert (await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "sl"}))["status"] == "open"
    fake.set_price("BTC/USDT", "48950")
    order = await exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "sl"})
    assert order["status"] == "closed" and order["average"] == pytest.approx(48900)


async def test_cancel_releases_what_a_resting_stop_locked(fake: FakeBinance, exchange: Any) -> None:
    await exchange.create_order("BTC/USDT", "market", "buy", 0.1, None)
    await exchange.create_order(
        "BTC/USDT", "market", "sell", 0.05, None, {"stopLossPrice": 49000, "clientOrderId": "st"}
    )
    assert fake.exchange.locked("BTC") == Decimal("0.05")

    await exchange.cancel_order(None, "BTC/USDT", {"clientOrderId": "st"})

    assert fake.exchange.locked("BTC") == 0
    assert await exchange.fetch_open_orders("BTC/USDT") == []


async def test_a_fault_hits_only_the_next_requests_it_was_injected_for(fake: FakeBinance, exchange: Any) -> None:
    fake.inject("GET", "/api/v3/account", Fault(FaultKind.SERVER_ERROR, status=502), times=2)

    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await exchange.fetch_balance()
    await exchange.fetch_balance()

    log = fake.requests("GET", "/api/v3/account")
    assert [(r.status, r.fault) for r in log] == [
        (502, FaultKind.SERVER_ERROR),
        (502, FaultKind.SERVER_ERROR),
        (200, None),
    ]
    assert all(r.has_api_key for r in log)


async def test_throttling_faults_carry_retry_after(fake: FakeBinance, exchange: Any) -> None:
    fake.inject("GET", "/api/v3/account", Fault(FaultKind.IP_BANNED, retry_after_s=42))

    with pytest.raises(ccxt.DDoSProtection) as raised:
        await exchange.fetch_balance()

    assert getattr(raised.value, "retry_after_s", None) == 42


async def test_a_hung_request_is_released_when_the_server_stops() -> None:
    fake = FakeBinance()
    await fake.start()
    fake.inject("GET", "/api/v3/ping", Fault(FaultKind.TIMEOUT, hang_s=60))
    request = asyncio.create_task(get(fake, "/api/v3/ping"))
    while not fake.requests("GET", "/api/v3/ping"):
        await asyncio.sleep(0.01)

    async with asyncio.timeout(5):
        await fake.stop()
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
