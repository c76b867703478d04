"""Specification of CcxtBroker: the real ccxt Binance client against the loopback fake exchange."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.errors import (
    ExchangeCallException,
    ExchangeUnavailableException,
    InsufficientFundsException,
    OrderNotFoundException,
    OrderRejectedException,
)
from engine.domain.models import MarketLimits, OrderStatus, OrderType, Side
from engine.execution.broker import (
    CLIENT_ORDER_ID_MAX_CHARS,
    Broker,
    OrderAck,
    StopReplaceError,
    make_client_order_id,
)
from engine.execution.ccxt_broker import CcxtBroker
from engine.execution.ccxt_client import create_binance_client
from engine.execution.order_resolution import ResolutionPolicy
from engine.execution.retry import RetryPolicy
from tests.fakes.fake_binance import FakeBinance, Fault, FaultKind

CLIENT_TIMEOUT_S = 0.3
POLICY = RetryPolicy(max_attempts=4, attempt_timeout_s=1.5, base_delay_s=0.001, max_delay_s=0.005)
ORDER = ("POST", "/api/v3/order")


@dataclass
class Recorder:
    errors: list[ExchangeCallException] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)


@dataclass
class Rig:
    fake: FakeBinance
    broker: CcxtBroker
    recorder: Recorder

    def orders_posted(self) -> int:
        return len(self.fake.requests(*ORDER))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with FakeBinance(fee_rate="0.001") as fake:
        fake.add_market("BTC", "USDT", price="50000", tick_size="0.01", step_size="0.00001", min_notional="5")
        fake.add_market("ETH", "USDT", price="3000", order_types=("LIMIT", "MARKET", "STOP_LOSS_LIMIT"))
        fake.set_balance("USDT", "10000")
        fake.set_balance("BTC", "0")
        recorder = Recorder()
        client = create_binance_client(
            fake.api_key, fake.api_secret, timeout_s=CLIENT_TIMEOUT_S, base_url=fake.base_url, enable_rate_limit=False
        )
        client.timeout_on_exit = 0  # ccxt lingers 250 ms on close for TLS; loopback is plain HTTP
        broker = CcxtBroker(client, policy=POLICY, on_error=recorder.errors.append, sleep=recorder.sleep)
        try:
            yield Rig(fake, broker, recorder)
        finally:
            await broker.close()


async def buy(rig: Rig, quantity: float = 0.1, client_id: str = "entry-1") -> OrderAck:
    return await rig.broker.submit_market_order(client_id, "BTC/USDT", Side.BUY, quantity)


def test_ccxt_broker_satisfies_the_broker_protocol() -> None:
    assert issubclass(CcxtBroker, Broker)


async def test_markets_become_market_limits_from_exchange_filters(rig: Rig) -> None:
    limits = await rig.broker.load_markets()

    assert limits["BTC/USDT"] == MarketLimits("BTC/USDT", lot_step=1e-5, tick_size=0.01, min_qty=1e-5, min_notional=5.0)
    assert set(limits) == {"BTC/USDT", "ETH/USDT"}


async def test_market_order_round_trip_fills_charges_fee_and_moves_balances(rig: Rig) -> None:
    ack = await buy(rig, 0.1)

    assert ack.status is OrderStatus.FILLED
    assert ack.order.type is OrderType.MARKET
    assert ack.client_order_id == "entry-1"
    assert ack.filled_quantity == pytest.approx(0.1)
    assert ack.average_price == pytest.approx(50000)
    assert len(ack.fills) == 1
    assert ack.fills[0].fee == pytest.approx(0.0001) and ack.fills[0].fee_asset == "BTC"
    assert not ack.recovered
    balances = await rig.broker.fetch_balances()
    assert balances["USDT"].free == pytest.approx(5000)
    assert balances["BTC"].total == pytest.approx(0.0999)


async def test_quantity_is_truncated_to_the_lot_step_never_rounded_up(rig: Rig) -> None:
    ack = await buy(rig, 0.0123499)

    assert ack.order.quantity == pytest.approx(0.01234)
    assert rig.fake.requests(*ORDER)[0].params["quantity"] == "0.01234"


async def test_stop_loss_rests_on_the_exchange_and_fills_when_price_crosses(rig: Rig) -> None:
    await buy(rig, 0.1)

    stop = await rig.broker.place_stop_loss("stop-1", "BTC/USDT", Side.SELL, 0.0999, 49000.004)

    assert stop.status is OrderStatus.OPEN
    assert stop.order.type is OrderType.STOP_MARKET
    assert stop.order.stop_price == pytest.approx(49000.0)
    assert [o.client_order_id for o in await rig.broker.fetch_open_orders("BTC/USDT")] == ["stop-1"]
    assert rig.fake.exchange.locked("BTC") == Decimal("0.0999")

    rig.fake.set_price("BTC/USDT", "48950")
    filled = await rig.broker.fetch_order("stop-1", "BTC/USDT")

    assert filled is not None and filled.status is OrderStatus.FILLED
    assert filled.average_price == pytest.approx(48950)
    assert [f.price for f in filled.fills] == [pytest.approx(48950)]
    assert await rig.broker.fetch_open_orders() == []


async def test_market_without_stop_market_gets_a_stop_limit_beyond_the_stop(rig: Rig) -> None:
    await rig.broker.submit_market_order("eth-entry", "ETH/USDT", Side.BUY, 1.0)

    stop = await rig.broker.place_stop_loss("eth-stop", "ETH/USDT", Side.SELL, 0.999, 2900)

    assert stop.order.type is OrderType.STOP_LIMIT
    assert stop.order.stop_price == pytest.approx(2900)
    assert stop.order.price is not None and stop.order.price < 2900


async def test_replace_stop_cancels_the_old_then_places_the_new(rig: Rig) -> None:
    await buy(rig, 0.1)
    await rig.broker.place_stop_loss("stop-1", "BTC/USDT", Side.SELL, 0.0999, 49000)

    new = await rig.broker.replace_stop_loss("stop-1", "stop-2", "BTC/USDT", Side.SELL, 0.0999, 49500)

    assert new.client_order_id == "stop-2" and new.order.stop_price == pytest.approx(49500)
    old = await rig.broker.fetch_order("stop-1", "BTC/USDT")
    assert old is not None and old.status is OrderStatus.CANCELED
    assert [o.client_order_id for o in await rig.broker.fetch_open_orders("BTC/USDT")] == ["stop-2"]
    methods = [r.method for r in rig.fake.log if r.path == "/api/v3/order" and r.method != "GET"]
    assert methods[-2:] == ["DELETE", "POST"]


async def test_a_second_full_size_stop_is_refused_which_is_why_replace_cancels_first(rig: Rig) -> None:
    await buy(rig, 0.1)
    await rig.broker.place_stop_loss("stop-1", "BTC/USDT", Side.SELL, 0.0999, 49000)

    with pytest.raises(InsufficientFundsException):
        await rig.broker.place_stop_loss("stop-2", "BTC/USDT", Side.SELL, 0.0999, 49500)


async def test_replace_of_a_stop_that_already_filled_returns_it_and_places_nothing(rig: Rig) -> None:
    await buy(rig, 0.1)
    await rig.broker.place_stop_loss("stop-1", "BTC/USDT", Side.SELL, 0.0999, 49000)
    rig.fake.set_price("BTC/USDT", "48000")
    posts_before = rig.orders_posted()

    result = await rig.broker.replace_stop_loss("stop-1", "stop-2", "BTC/USDT", Side.SELL, 0.0999, 49500)

    assert result.client_order_id == "stop-1" and result.status is OrderStatus.FILLED
    assert rig.orders_posted() == posts_before


async def test_refused_replacement_puts_the_old_stop_back_and_says_so(rig: Rig) -> None:
    await buy(rig, 0.1)
    await rig.broker.place_stop_loss("stop-1", "BTC/USDT", Side.SELL, 0.0999, 49000)
    rig.fake.inject("POST", "/api/v3/order", FaultKind.REJECT_FILTER, times=1)  # the new level only

    with pytest.raises(StopReplaceError) as raised:
        await rig.broker.replace_stop_loss("stop-1", "stop-2", "BTC/USDT", Side.SELL, 0.0999, 49500)

    restored = raised.value.restored
    assert not raised.value.unprotected and not raised.value.would_trigger
    assert restored is not None and restored.order.stop_price == pytest.approx(49000)
    open_stops = await rig.broker.fetch_open_orders("BTC/USDT")
    assert [o.order.stop_price for o in open_stops] == [pytest.approx(49000)]


async def test_a_replacement_the_market_already_crossed_is_reported_for_an_exit_not_restored(rig: Rig) -> None:
    await buy(rig, 0.1)
    await rig.broker.place_stop_loss("stop-1", "BTC/USDT", Side.SELL, 0.0999, 49000)
    rig.fake.set_price("BTC/USDT", "49400")

    with pytest.raises(StopReplaceError) as raised:  # 49500 is already crossed by the market
        await rig.broker.replace_stop_loss("stop-1", "stop-2", "BTC/USDT", Side.SELL, 0.0999, 49500)

    assert raised.value.would_trigger and raised.value.unprotected
    assert await rig.broker.fetch_open_orders("BTC/USDT") == []


async def test_replacement_and_restore_both_refused_reports_the_position_unprotected(rig: Rig) -> None:
    await buy(rig, 0.1)
    await rig.broker.place_stop_loss("stop-1", "BTC/USDT", Side.SELL, 0.0999, 49000)
    # Both the new stop and the restore of the old level are refused.
    rig.fake.inject("POST", "/api/v3/order", FaultKind.REJECT_FILTER, times=1)
    rig.fake.inject("POST", "/api/v3/order", FaultKind.REJECT_INSUFFICIENT, times=1)

    with pytest.raises(StopReplaceError) as raised:
        await rig.broker.replace_stop_loss("stop-1", "stop-2", "BTC/USDT", Side.SELL, 0.0999, 49500)

    assert raised.value.unprotected
    assert await rig.broker.fetch_open_orders("BTC/USDT") == []


async def test_replace_of_a_stop_that_never_existed_just_places_the_new_one(rig: Rig) -> None:
    await buy(rig, 0.1)

    new = await rig.broker.replace_stop_loss("stop-missing", "stop-2", "BTC/USDT", Side.SELL, 0.0999, 49500)

    assert new.status is OrderStatus.OPEN and new.client_order_id == "stop-2"


async def test_resubmit_after_a_lost_reply_finds_the_order_instead_of_placing_another(rig: Rig) -> None:
    rig.fake.inject(*ORDER, Fault(FaultKind.TIMEOUT_AFTER_PROCESSING, hang_s=2.0))

    ack = await buy(rig, 0.1)

    assert ack.recovered and ack.status is OrderStatus.FILLED
    assert len(rig.fake.exchange.orders) == 1
    assert rig.orders_posted() == 1
    assert len(rig.recorder.errors) == 1
    assert rig.fake.exchange.free("USDT") == Decimal("5000")


async def test_timeout_before_the_exchange_saw_the_order_sends_it_once_more(rig: Rig) -> None:
    rig.fake.inject(*ORDER, Fault(FaultKind.TIMEOUT, hang_s=2.0))

    ack = await buy(rig, 0.1)

    assert not ack.recovered and ack.status is OrderStatus.FILLED
    assert len(rig.fake.exchange.orders) == 1
    assert rig.orders_posted() == 2
    # Looked up before the first send, then over the whole absence window before the re-send.
    assert len(rig.fake.requests("GET", "/api/v3/order")) > 2
    assert sum(rig.recorder.sleeps) >= ResolutionPolicy().window_s


async def test_duplicate_client_order_id_returns_the_existing_order(rig: Rig) -> None:
    first = await buy(rig, 0.1)

    again = await buy(rig, 0.1)

    assert again.recovered and again.order.exchange_order_id == first.order.exchange_order_id
    assert len(rig.fake.exchange.orders) == 1
    assert rig.recorder.errors == []


async def test_a_filled_orders_client_id_is_looked_up_not_bought_again(rig: Rig) -> None:
    await buy(rig, 0.1)  # filled: Binance itself would accept this client id again
    posts = rig.orders_posted()

    again = await buy(rig, 0.1)

    assert again.recovered and rig.orders_posted() == posts
    assert rig.fake.duplicate_client_ids() == []


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.SERVER_ERROR, status=503),
        Fault(FaultKind.SERVER_ERROR, status=502),
        Fault(FaultKind.RATE_LIMITED, retry_after_s=None),
        Fault(FaultKind.IP_BANNED, retry_after_s=None),
        Fault(FaultKind.MALFORMED_JSON),
        Fault(FaultKind.TIMEOUT, hang_s=2.0),
    ],
    ids=lambda fault: f"{fault.kind}-{fault.status}",
)
async def test_transient_faults_are_retried_and_each_counted(rig: Rig, fault: Fault) -> None:
    rig.fake.inject("GET", "/api/v3/account", fault, times=2)

    balances = await rig.broker.fetch_balances()

    assert balances["USDT"].free == pytest.approx(10000)
    assert len(rig.fake.requests("GET", "/api/v3/account")) == 3
    assert len(rig.recorder.errors) == 2
    assert all(isinstance(e, ExchangeUnavailableException) for e in rig.recorder.errors)


async def test_rate_limit_waits_at_least_the_servers_retry_after(rig: Rig) -> None:
    rig.fake.inject("GET", "/api/v3/account", Fault(FaultKind.RATE_LIMITED, retry_after_s=7))

    await rig.broker.fetch_balances()

    assert rig.recorder.sleeps == [7.0]


async def test_malformed_reply_to_an_order_is_resolved_by_lookup_not_a_second_order(rig: Rig) -> None:
    rig.fake.inject(*ORDER, FaultKind.MALFORMED_JSON)

    ack = await buy(rig, 0.1)  # booked by the exchange, but the reply was garbled

    assert ack.recovered and ack.status is OrderStatus.FILLED
    assert rig.orders_posted() == 1
    assert len(rig.fake.exchange.orders) == 1


async def test_persistent_outage_gives_up_after_the_policy_attempts(rig: Rig) -> None:
    rig.fake.inject("GET", "/api/v3/account", FaultKind.SERVER_ERROR, times=POLICY.max_attempts)

    with pytest.raises(ExchangeUnavailableException) as raised:
        await rig.broker.fetch_balances()

    assert raised.value.attempts == POLICY.max_attempts
    assert len(rig.recorder.errors) == POLICY.max_attempts


async def test_partial_fill_is_reported_as_is_and_not_retried(rig: Rig) -> None:
    rig.fake.inject(*ORDER, Fault(FaultKind.PARTIAL_FILL, fill_ratio="0.5"))

    ack = await buy(rig, 0.1)

    assert ack.filled_quantity == pytest.approx(0.05)
    assert ack.status is OrderStatus.CANCELED  # Binance expires a market order's unfilled rest
    assert ack.order.quantity == pytest.approx(0.1)
    assert rig.orders_posted() == 1 and rig.recorder.errors == []


async def test_insufficient_funds_is_not_retried_and_raises_clearly(rig: Rig) -> None:
    with pytest.raises(InsufficientFundsException) as raised:
        await buy(rig, 1.0)  # 50 000 USDT with 10 000 in the account

    assert "submit_market_order BTC/USDT buy entry-1" in str(raised.value)
    assert "insufficient balance" in raised.value.reason
    assert rig.orders_posted() == 1
    assert len(rig.recorder.errors) == 1


@pytest.mark.parametrize(
    ("fault", "expected"),
    [(FaultKind.REJECT_INSUFFICIENT, InsufficientFundsException), (FaultKind.REJECT_FILTER, OrderRejectedException)],
)
async def test_injected_rejections_are_not_retried(
    rig: Rig, fault: FaultKind, expected: type[ExchangeCallException]
) -> None:
    rig.fake.inject(*ORDER, fault)

    with pytest.raises(expected):
        await buy(rig, 0.1)

    assert rig.orders_posted() == 1 and len(rig.recorder.errors) == 1


async def test_order_below_min_notional_is_rejected_without_retry(rig: Rig) -> None:
    with pytest.raises(OrderRejectedException):
        await buy(rig, 0.00005)  # 2.5 USDT < 5 USDT minimum

    assert rig.orders_posted() == 1


async def test_cancel_of_a_filled_order_returns_it_as_filled(rig: Rig) -> None:
    await buy(rig, 0.1)

    ack = await rig.broker.cancel_order("entry-1", "BTC/USDT")

    assert ack.status is OrderStatus.FILLED


async def test_cancel_and_fetch_of_an_unknown_order(rig: Rig) -> None:
    await rig.broker.load_markets()

    assert await rig.broker.fetch_order("nope", "BTC/USDT") is None
    with pytest.raises(OrderNotFoundException):
        await rig.broker.cancel_order("nope", "BTC/USDT")


async def test_balances_show_what_a_resting_stop_locks(rig: Rig) -> None:
    await buy(rig, 0.1)
    await rig.broker.place_stop_loss("stop-1", "BTC/USDT", Side.SELL, 0.05, 49000)

    btc = (await rig.broker.fetch_balances())["BTC"]

    assert btc.total == pytest.approx(0.0999)
    assert btc.free == pytest.approx(0.0499)
    assert btc.locked == pytest.approx(0.05)


async def test_keys_never_reach_logs_or_errors(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig.fake.inject("GET", "/api/v3/account", FaultKind.SERVER_ERROR, times=10)

    with pytest.raises(ExchangeUnavailableException) as raised:
        await rig.broker.fetch_balances()
    rig.fake.clear_faults()
    await buy(rig, 0.1)

    texts = [caplog.text, str(raised.value), *(str(e) for e in rig.recorder.errors)]
    for text in texts:
        assert rig.fake.api_key not in text
        assert str(rig.fake.api_secret) not in text
        assert "signature=" not in text


def test_client_order_id_is_deterministic() -> None:
    first = make_client_order_id("tb", "BTC/USDT", 1_700_000_000_000, "entry")
    assert first == make_client_order_id("tb", "BTC/USDT", 1_700_000_000_000, "entry")
    assert first != make_client_order_id("tb", "BTC/USDT", 1_700_000_000_000, "stop")
    assert first != make_client_order_id("tb", "BTC/USDT", 1_700_003_600_000, "entry")
    assert first.startswith("tb-BTCUSDT-")


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.text(alphabet="abcXYZ019-_/", min_size=1, max_size=12).filter(lambda s: any(c.isalnum() for c in s)),
    symbol=st.from_regex(r"[A-Z0-9]{2,12}/[A-Z]{3,6}", fullmatch=True),
    bar_time_ms=st.integers(min_value=0, max_value=2**45),
    purpose=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=30),
)
def test_client_order_id_is_binance_legal(prefix: str, symbol: str, bar_time_ms: int, purpose: str) -> None:
    client_id = make_client_order_id(prefix, symbol, bar_time_ms, purpose)

    assert 1 <= len(client_id) <= CLIENT_ORDER_ID_MAX_CHARS
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in client_id)
    assert client_id == make_client_order_id(prefix, symbol, bar_time_ms, purpose)
