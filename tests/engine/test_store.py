"""The SQLite store: pragmas, transactions, candles and the trading records, on a real file."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.errors import StoreException
from engine.domain.models import (
    Candles,
    ClosedTrade,
    EquityPoint,
    ExitKind,
    Fill,
    Order,
    OrderKind,
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    Side,
    TradingState,
)
from engine.store import CandleSeriesInfo, Store

MINUTE_MS = 60_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "store.sqlite") as opened:
        yield opened


def make_candles(open_times: list[int] | np.ndarray, symbol: str = "BTC/USDT", timeframe: str = "1m") -> Candles:
    times = np.asarray(open_times, dtype=np.int64)
    rng = np.random.default_rng(len(times))
    close = 30_000 + rng.standard_normal(len(times)).cumsum()
    return Candles(
        symbol,
        timeframe,
        times,
        close + rng.standard_normal(len(times)) * 0.1,
        close + 1.0 / 3.0,
        close - 0.1,
        close,
        rng.random(len(times)) * 7.0,
    )


def raw_count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


# --- connection -------------------------------------------------------------------------------------


async def test_file_is_in_wal_mode_with_foreign_keys_and_normal_sync(store: Store) -> None:
    assert await store.pragma("journal_mode") == "wal"
    assert await store.pragma("foreign_keys") == 1
    assert await store.pragma("synchronous") == 1  # NORMAL
    assert await store.pragma("busy_timeout") >= 1000


async def test_open_can_be_awaited_and_closed_explicitly(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.sqlite")
    await store.upsert_candles(make_candles([0]))
    await store.close()
    await store.close()  # idempotent
    assert raw_count(tmp_path / "a.sqlite", "candles") == 1


async def test_transaction_rollback_leaves_database_unchanged(store: Store) -> None:
    await store.upsert_candles(make_candles([0, MINUTE_MS]))
    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction():
            await store.upsert_candles(make_candles([2 * MINUTE_MS, 3 * MINUTE_MS]))
            await store.set_state("trading_state", "HALTED")
            raise RuntimeError("boom")
    assert len(await store.read_candles("BTC/USDT", "1m")) == 2
    assert await store.get_state("trading_state", "ACTIVE") == "ACTIVE"
    assert raw_count(store.path, "candles") == 2


async def test_transaction_commits_all_writes_together(store: Store) -> None:
    async with store.transaction():
        await store.upsert_candles(make_candles([0]))
        await store.set_state("trading_state", "HALTED")
    assert raw_count(store.path, "candles") == 1
    assert await store.get_state("trading_state") == "HALTED"


async def test_sqlite_error_inside_a_write_surfaces_as_store_exception_naming_the_file(store: Store) -> None:
    with pytest.raises(StoreException) as raised:
        async with store.transaction():
            await store._conn.execute("INSERT INTO no_such_table VALUES (1)")
    assert str(store.path) in str(raised.value)


# --- candles ----------------------------------------------------------------------------------------


async def test_candle_round_trip_is_bit_exact(store: Store) -> None:
    candles = make_candles(np.arange(500) * MINUTE_MS)
    extremes = Candles(
        "ETH/USDT",
        "1m",
        np.array([0, MINUTE_MS], dtype=np.int64),
        np.array([5e-324, 1.7976931348623157e308]),
        np.array([0.1 + 0.2, np.nextafter(1.0, 2.0)]),
        np.array([-1e-300, 1e-300]),
        np.array([np.pi, np.e]),
        np.array([0.0, np.inf]),
    )
    await store.upsert_candles(candles)
    await store.upsert_candles(extremes)
    for original in (candles, extremes):
        loaded = await store.read_candles(original.symbol, original.timeframe)
        assert loaded.symbol == original.symbol and loaded.timeframe == original.timeframe
        assert loaded.open_time_ms.dtype == np.int64
        for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
            assert getattr(loaded, name).tobytes() == getattr(original, name).tobytes(), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=40, unique=False)
)
async def test_any_finite_float64_round_trips_bit_exactly(tmp_path: Path, values: list[float]) -> None:
    times = np.arange(len(values), dtype=np.int64) * MINUTE_MS
    array = np.array(values, dtype=np.float64)
    candles = Candles("X/Y", "1m", times, array, array, array, array, array)
    async with Store.open(tmp_path / "hyp.sqlite") as store:
        await store.delete_candles("X/Y", "1m")
        await store.upsert_candles(candles)
        loaded = await store.read_candles("X/Y", "1m")
    # SQLite keeps -0.0 as 0.0 (no price or volume is ever negative zero); "+ 0.0" maps -0.0 to 0.0.
    assert loaded.close.tobytes() == (array + 0.0).tobytes()


async def test_upsert_is_idempotent_and_later_values_win(store: Store) -> None:
    first = make_candles(np.arange(100) * MINUTE_MS)
    assert await store.upsert_candles(first) == 100
    assert await store.upsert_candles(first) == 100
    assert raw_count(store.path, "candles") == 100

    corrected = Candles("BTC/USDT", "1m", first.open_time_ms[:1], *(np.array([42.0]) for _ in range(5)))
    await store.upsert_candles(corrected)
    loaded = await store.read_candles("BTC/USDT", "1m")
    assert len(loaded) == 100
    assert loaded.close[0] == 42.0
    assert loaded.close[1:].tobytes() == first.close[1:].tobytes()


async def test_nan_candle_is_refused_and_batch_is_not_stored(store: Store) -> None:
    candles = make_candles([0, MINUTE_MS])
    volume = candles.volume.copy()
    volume[1] = np.nan
    bad = Candles(
        "BTC/USDT", "1m", candles.open_time_ms, candles.open, candles.high, candles.low, candles.close, volume
    )
    with pytest.raises(StoreException):
        await store.upsert_candles(bad)
    assert raw_count(store.path, "candles") == 0


async def test_read_candles_filters_half_open_range_and_sorts(store: Store) -> None:
    await store.upsert_candles(make_candles([5 * MINUTE_MS, 1 * MINUTE_MS, 3 * MINUTE_MS, 2 * MINUTE_MS]))
    window = await store.read_candles("BTC/USDT", "1m", start_ms=2 * MINUTE_MS, end_ms=5 * MINUTE_MS)
    assert window.open_time_ms.tolist() == [2 * MINUTE_MS, 3 * MINUTE_MS]
    everything = await store.read_candles("BTC/USDT", "1m")
    assert everything.open_time_ms.tolist() == [MINUTE_MS, 2 * MINUTE_MS, 3 * MINUTE_MS, 5 * MINUTE_MS]


async def test_read_candles_keeps_series_apart(store: Store) -> None:
    await store.upsert_candles(make_candles([0, MINUTE_MS], symbol="BTC/USDT"))
    await store.upsert_candles(make_candles([0], symbol="ETH/USDT"))
    await store.upsert_candles(make_candles([0], symbol="BTC/USDT", timeframe="5m"))
    assert len(await store.read_candles("BTC/USDT", "1m")) == 2
    assert len(await store.read_candles("ETH/USDT", "1m")) == 1
    assert len(await store.read_candles("BTC/USDT", "5m")) == 1
    missing = await store.read_candles("DOGE/USDT", "1m")
    assert len(missing) == 0 and missing.symbol == "DOGE/USDT"


async def test_candle_series_reports_range_rows_and_gaps(store: Store) -> None:
    # bars 0..9 with 3,4 missing (one gap of 2) and 7 missing (one gap of 1)
    await store.upsert_candles(make_candles([t * MINUTE_MS for t in (0, 1, 2, 5, 6, 8, 9)]))
    await store.upsert_candles(make_candles([0, 300_000, 600_000], symbol="BTC/USDT", timeframe="5m"))
    await store.upsert_candles(make_candles([3_600_000], symbol="ETH/USDT", timeframe="1h"))

    series = await store.candle_series()

    assert series == [
        CandleSeriesInfo("BTC/USDT", "1m", 0, 9 * MINUTE_MS, 7, 2, 3, 2),
        CandleSeriesInfo("BTC/USDT", "5m", 0, 600_000, 3, 0, 0, 0),
        CandleSeriesInfo("ETH/USDT", "1h", 3_600_000, 3_600_000, 1, 0, 0, 0),
    ]


async def test_candle_series_is_empty_for_a_new_store(store: Store) -> None:
    assert await store.candle_series() == []


# --- orders, fills, positions, trades ---------------------------------------------------------------

T0 = 1_700_000_000_000


def make_order(client_id: str = "tb-1", status: OrderStatus = OrderStatus.INTENT, **changes: object) -> Order:
    order = Order(
        client_order_id=client_id,
        symbol="BTC/USDT",
        side=Side.BUY,
        type=OrderType.LIMIT,
        quantity=0.125,
        status=status,
        created_ms=T0,
        price=30_000.5,
        stop_price=29_000.0,
        reason="signal LONG",
    )
    return replace(order, **changes)  # type: ignore[arg-type]


async def test_order_round_trips_every_field(store: Store) -> None:
    order = make_order(
        status=OrderStatus.PARTIALLY_FILLED,
        exchange_order_id="998877",
        filled_quantity=0.05,
        average_price=30_000.25,
        reduce_only=True,
    )
    await store.save_order(order)
    assert await store.get_order("tb-1") == order
    assert await store.get_order("unknown") is None


async def test_saving_an_order_again_updates_it_in_place(store: Store) -> None:
    await store.save_order(make_order())
    filled = make_order(status=OrderStatus.FILLED, filled_quantity=0.125, average_price=30_000.0)
    await store.save_order(filled, updated_ms=T0 + 5)
    assert await store.get_order("tb-1") == filled
    assert raw_count(store.path, "orders") == 1


async def test_open_orders_excludes_terminal_statuses_and_keeps_intents(store: Store) -> None:
    for index, status in enumerate(OrderStatus):
        await store.save_order(make_order(f"tb-{index}", status, created_ms=T0 + index))
    open_statuses = [order.status for order in await store.open_orders()]
    assert open_statuses == [s for s in OrderStatus if not s.is_terminal]
    assert OrderStatus.INTENT in open_statuses
    assert await store.open_orders(symbol="ETH/USDT") == []


def make_fill(trade_id: str = "t1", quantity: float = 0.125, side: Side = Side.BUY) -> Fill:
    return Fill("tb-1", "BTC/USDT", side, quantity, 30_000.0, 0.03, T0 + 10, "USDT", trade_id)


def make_position(quantity: float = 0.125) -> Position:
    return Position("BTC/USDT", PositionSide.LONG, quantity, 30_000.0, T0 + 10, stop_price=29_000.0, entry_fee=0.03)


async def test_record_fill_writes_fill_order_and_position_together(store: Store) -> None:
    await store.save_order(make_order())
    filled = make_order(status=OrderStatus.FILLED, filled_quantity=0.125, average_price=30_000.0)

    assert await store.record_fill(make_fill(), make_position(), order=filled) is True

    assert await store.fills("tb-1") == [make_fill()]
    assert await store.get_order("tb-1") == filled
    assert await store.open_positions() == [make_position()]


async def test_record_fill_closing_a_position_deletes_it_and_keeps_the_trade(store: Store) -> None:
    await store.save_order(make_order())
    await store.record_fill(make_fill("t1"), make_position())
    trade = ClosedTrade(
        "BTC/USDT",
        PositionSide.LONG,
        0.125,
        30_000.0,
        31_000.0,
        T0 + 10,
        T0 + 99,
        pnl=124.9,
        fees=0.1,
        reason="trailing stop crossed",
        exit_kind=ExitKind.TRAILING_STOP,
    )
    await store.save_order(make_order("tb-2", side=Side.SELL, reduce_only=True))
    exit_fill = Fill("tb-2", "BTC/USDT", Side.SELL, 0.125, 31_000.0, 0.07, T0 + 99, "USDT", "t2")

    await store.record_fill(exit_fill, None, trade)

    assert await store.open_positions() == []
    assert await store.trades() == [trade]


async def test_record_fill_is_atomic_when_a_later_write_fails(store: Store) -> None:
    await store.save_order(make_order())
    broken_trade = ClosedTrade("BTC/USDT", PositionSide.LONG, 0.1, 1.0, 2.0, 0, 1, pnl=float("nan"))

    with pytest.raises(StoreException):  # NaN pnl violates NOT NULL after fill and position were written
        await store.record_fill(make_fill(), make_position(), broken_trade)

    assert await store.fills() == []
    assert await store.open_positions() == []
    assert await store.trades() == []


async def test_record_fill_for_an_unknown_order_is_refused(store: Store) -> None:
    with pytest.raises(StoreException, match="FOREIGN KEY"):
        await store.record_fill(make_fill(), make_position())
    assert await store.open_positions() == []


async def test_replayed_fill_with_same_trade_id_changes_nothing(store: Store) -> None:
    await store.save_order(make_order())
    await store.record_fill(make_fill("t1"), make_position(0.125))
    assert await store.record_fill(make_fill("t1"), make_position(0.25)) is False
    assert len(await store.fills()) == 1
    assert (await store.open_positions())[0].quantity == 0.125


async def test_one_open_position_per_symbol(store: Store) -> None:
    await store.save_position(make_position(0.1))
    await store.save_position(replace(make_position(0.3), trailing_stop_price=29_500.0, last_price=30_100.0))
    positions = await store.open_positions()
    assert len(positions) == 1
    assert positions[0].quantity == 0.3 and positions[0].trailing_stop_price == 29_500.0
    assert await store.delete_position("BTC/USDT") is True
    assert await store.delete_position("BTC/USDT") is False


async def test_trades_filter_by_symbol_time_and_limit(store: Store) -> None:
    for index, symbol in enumerate(["BTC/USDT", "ETH/USDT", "BTC/USDT", "BTC/USDT"]):
        await store.record_trade(ClosedTrade(symbol, PositionSide.SHORT, 1.0, 10.0, 9.0, index, 100 + index, pnl=1.0))
    assert [t.exit_ms for t in await store.trades()] == [100, 101, 102, 103]
    assert [t.exit_ms for t in await store.trades(symbol="BTC/USDT", limit=2)] == [102, 103]
    assert [t.exit_ms for t in await store.trades(since_ms=102)] == [102, 103]


# --- equity, breakers, kv ---------------------------------------------------------------------------


async def test_equity_history_returns_newest_points_oldest_first(store: Store) -> None:
    for minute in range(5):
        await store.append_equity(EquityPoint(T0 + minute, 1000.0 + minute, 900.0, float(minute)))
    history = await store.equity_history(limit=3)
    assert history == [EquityPoint(T0 + m, 1000.0 + m, 900.0, float(m)) for m in (2, 3, 4)]
    assert len(await store.equity_history()) == 5


async def test_breaker_state_is_restored_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "breakers.sqlite"
    tripped = {"state": "open", "value": 5.2, "threshold": 5.0, "since_ms": T0}
    async with Store.open(path) as store:
        await store.record_breaker_transition("daily_loss", {"state": "closed"}, "reset", time_ms=T0 - 1)
        await store.record_breaker_transition("daily_loss", tripped, "tripped", time_ms=T0)
        await store.record_breaker_transition("api_errors", {"state": "half_open"}, "half_open", time_ms=T0)

    async with Store.open(path) as reopened:
        assert await reopened.breaker_states() == {
            "api_errors": {"state": "half_open"},
            "daily_loss": tripped,
        }
        events = await reopened.breaker_events("daily_loss")
    assert [e["event"] for e in events] == ["reset", "tripped"]
    assert events[-1]["state"] == tripped and events[-1]["time_ms"] == T0


async def test_kv_state_stores_json_values_and_enums(store: Store) -> None:
    assert await store.get_state("missing", {"d": 1}) == {"d": 1}
    await store.set_state("trading_state", TradingState.HALTED)
    await store.set_state("limits", {"max_dd_pct": 12.5, "symbols": ["BTC/USDT"]})
    assert await store.get_state("trading_state") == "HALTED"
    assert await store.get_state("limits") == {"max_dd_pct": 12.5, "symbols": ["BTC/USDT"]}


async def test_status_summary_has_the_documented_keys_and_is_json(store: Store) -> None:
    await store.set_state("trading_state", TradingState.HALTED)
    await store.save_order(make_order())
    await store.save_position(make_position())
    await store.append_equity(EquityPoint(T0, 1000.0, 800.0, 200.0))
    await store.record_breaker_transition("drawdown", {"state": "open"}, "tripped", time_ms=T0)

    summary = await store.status_summary()

    assert {"trading_state", "positions", "orders", "equity", "breakers"} <= summary.keys()
    assert summary["trading_state"] == "HALTED"
    assert summary["positions"][0]["symbol"] == "BTC/USDT" and summary["positions"][0]["side"] == "long"
    assert summary["orders"][0]["client_order_id"] == "tb-1" and summary["orders"][0]["status"] == "intent"
    assert summary["equity"] == {"time_ms": T0, "equity": 1000.0, "cash": 800.0, "unrealized_pnl": 200.0}
    assert summary["breakers"] == {"drawdown": {"state": "open"}}
    assert json.loads(json.dumps(summary)) == summary


async def test_status_summary_of_an_empty_store_defaults_to_active(store: Store) -> None:
    summary = await store.status_summary()
    assert summary["trading_state"] == "ACTIVE"
    assert summary["positions"] == [] and summary["orders"] == [] and summary["equity"] is None


# --- concurrency ------------------------------------------------------------------------------------


async def test_other_tasks_do_not_see_uncommitted_writes(store: Store) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with store.transaction():
            await store.set_state("k", "uncommitted")
            inside.set()
            await release.wait()
            raise RuntimeError("abort")

    task = asyncio.create_task(writer())
    await inside.wait()
    reader = asyncio.create_task(store.get_state("k", "none"))
    await asyncio.sleep(0)
    assert not reader.done()  # waits for the transaction instead of reading its dirty value
    release.set()
    with pytest.raises(RuntimeError):
        await task
    assert await reader == "none"


async def test_nested_transaction_failure_rolls_back_only_the_inner_block(store: Store) -> None:
    async with store.transaction():
        await store.set_state("outer", 1)
        with pytest.raises(ValueError):
            async with store.transaction():
                await store.set_state("inner", 2)
                raise ValueError("inner fails")
    assert await store.get_state("outer") == 1
    assert await store.get_state("inner") is None


# --- crash safety -----------------------------------------------------------------------------------

_CRASHING_WRITER = """
import asyncio, sys
import numpy as np
from engine.domain.models import Candles
from engine.store import Store

async def main(path):
    def candles(start):
        times = np.arange(start, start + 1000, dtype=np.int64) * 60_000
        return Candles("BTC/USDT", "1m", times, *(np.full(1000, 1.5) for _ in range(5)))
    store = await Store.open(path)
    await store.upsert_candles(candles(0))
    async with store.transaction():
        await store.upsert_candles(candles(1000))
        await store.set_state("trading_state", "HALTED")
        print("in-transaction", flush=True)
        await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


async def test_sigkill_mid_transaction_keeps_committed_rows_and_drops_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CRASHING_WRITER,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    assert line.strip() == b"in-transaction"
    process.send_signal(signal.SIGKILL)
    await process.wait()

    async with Store.open(path) as store:
        assert len(await store.read_candles("BTC/USDT", "1m")) == 1000
        assert await store.get_state("trading_state") is None


async def test_an_order_s_kind_and_exit_kind_are_stored_and_read_back_as_enums(store: Store) -> None:
    order = replace(make_order("tb-x", side=Side.SELL), kind=OrderKind.EXIT, exit_kind=ExitKind.TARGET,
                    reason="exit: take_profit")
    await store.save_order(order)
    await store.save_order(replace(order, status=OrderStatus.FILLED))
    stored = await store.get_order("tb-x")
    assert stored is not None and stored.kind is OrderKind.EXIT and stored.exit_kind is ExitKind.TARGET
