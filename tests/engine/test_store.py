"""The SQLite store: pragmas, transactions, candles and the trading records, on a real file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import StoreException
from engine.models import Candles
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
        await store.set_state("trading_state", "REDUCING")
    assert raw_count(store.path, "candles") == 1
    assert await store.get_state("trading_state") == "REDUCING"


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
