"""Specification of the fake Binance spot server the execution tests stand on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import pytest

from engine.execution.ccxt_client import create_binance_client
from engine.timeframes import HOUR_MS
from tests.fakes.fake_binance import FakeBinance, Fault, FaultKind

T0 = 1_699_999_200_000  # an hour boundary, UTC ms


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.add_market("BTC", "USDT", price="50000")
        server.set_balance("USDT", "10000")
        yield server


@pytest.fixture
async def exchange(fake: FakeBinance) -> AsyncIterator[Any]:
    client = create_binance_client(
        fake.api_key, fake.api_secret, timeout_s=0.3, base_url=fake.base_url, enable_rate_limit=False
    )
    client.timeout_on_exit = 0
    try:
        yield client
    finally:
        await client.close()


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


async def test_duplicate_client_order_id_is_refused_with_2010(fake: FakeBinance, exchange: Any) -> None:
    await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "dup"})

    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "dup"})
    assert len(fake.exchange.orders) == 1


async def test_binance_mode_only_refuses_ids_of_open_orders(fake: FakeBinance, exchange: Any) -> None:
    fake.exchange.reject_duplicates_of_open_only = True
    await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "again"})

    await exchange.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "again"})

    assert len(fake.exchange.orders) == 2  # why the broker looks an id up before re-sending it


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
