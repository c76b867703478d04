"""Provides the store benchmark: write and read one year of 1m candles (525,600) and compare with a peer.

Data: the real Binance BTC/USDT 1m candles in ../shared/data/BTC_USDT-1m.csv.gz (130,708 rows) tiled to
525,600 rows with continuous open times (values repeat; storage cost does not depend on them). Falls back
to a synthetic random walk when the file is absent.

Peer, measured in the same run on the same schema and pragmas: plain ``sqlite3`` ``executemany`` over
``DataFrame.itertuples`` for the write and ``pandas.read_sql`` + ``to_numpy`` for the read.

Run: ``.venv/bin/python benchmarks/bench_store.py``
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from engine.domain.models import Candles
from engine.store import Store
from engine.store.migrations import MIGRATIONS, SCHEMA_VERSION_DDL

ROWS = 525_600  # one year of 1m bars
MINUTE_MS = 60_000
DATA_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "BTC_USDT-1m.csv.gz"
READ_SQL = (
    "SELECT open_time_ms, open, high, low, close, volume FROM candles"
    " WHERE symbol = ? AND timeframe = ? ORDER BY open_time_ms"
)


def load_candles() -> tuple[Candles, str]:
    if DATA_FILE.is_file():
        frame = pd.read_csv(DATA_FILE)
        reps = -(-ROWS // len(frame))
        columns = {name: np.tile(frame[name].to_numpy(np.float64), reps)[:ROWS] for name in frame.columns}
        source = f"real BTC/USDT 1m from {DATA_FILE.name} ({len(frame):,} rows) tiled to {ROWS:,}"
        start = int(frame["timestamp_ms"].iloc[0])
    else:
        rng = np.random.default_rng(7)
        close = 30_000 * np.exp(np.cumsum(rng.standard_normal(ROWS) * 5e-4))
        columns = {
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": rng.random(ROWS) * 10,
        }
        source = f"synthetic random walk ({ROWS:,} rows; {DATA_FILE} absent)"
        start = 1_700_000_000_000
    times = start + np.arange(ROWS, dtype=np.int64) * MINUTE_MS
    candles = Candles(
        "BTC/USDT", "1m", times, columns["open"], columns["high"], columns["low"], columns["close"], columns["volume"]
    )
    return candles, source


async def bench_store(path: Path, candles: Candles) -> dict[str, float]:
    timings: dict[str, float] = {}
    async with Store.open(path) as store:
        started = time.perf_counter()
        await store.upsert_candles(candles)
        timings["write"] = time.perf_counter() - started

        started = time.perf_counter()
        await store.upsert_candles(candles)
        timings["re-upsert (all conflicts)"] = time.perf_counter() - started

        started = time.perf_counter()
        loaded = await store.read_candles("BTC/USDT", "1m")
        timings["read"] = time.perf_counter() - started

        started = time.perf_counter()
        window = await store.read_candles(
            "BTC/USDT", "1m", int(candles.open_time_ms[ROWS // 2]), int(candles.open_time_ms[ROWS // 2 + 1440])
        )
        timings["read 1 day window"] = time.perf_counter() - started

        started = time.perf_counter()
        series = await store.candle_series()
        timings["candle_series (gaps)"] = time.perf_counter() - started

    assert len(window) == 1440 and series[0].rows == ROWS and series[0].gap_count == 0
    for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
        assert getattr(loaded, name).tobytes() == getattr(candles, name).tobytes(), name
    return timings


def bench_peer(path: Path, candles: Candles) -> dict[str, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(SCHEMA_VERSION_DDL)
    for statement in MIGRATIONS[0].statements:
        conn.execute(statement)
    frame = pd.DataFrame(
        {
            "symbol": "BTC/USDT",
            "timeframe": "1m",
            "open_time_ms": candles.open_time_ms,
            "open": candles.open,
            "high": candles.high,
            "low": candles.low,
            "close": candles.close,
            "volume": candles.volume,
        }
    )
    timings: dict[str, float] = {}
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO candles VALUES (?, ?, ?, ?, ?, ?, ?, ?)", frame.itertuples(index=False))
    conn.execute("COMMIT")
    timings["write"] = time.perf_counter() - started

    started = time.perf_counter()
    loaded = pd.read_sql(READ_SQL, conn, params=("BTC/USDT", "1m"))
    arrays = [loaded[name].to_numpy() for name in loaded.columns]
    timings["read"] = time.perf_counter() - started
    conn.close()
    assert len(arrays[0]) == ROWS
    return timings


def main() -> None:
    candles, source = load_candles()
    print(f"data: {source}")
    with tempfile.TemporaryDirectory() as tmp:
        ours = asyncio.run(bench_store(Path(tmp) / "store.sqlite", candles))
        peer = bench_peer(Path(tmp) / "peer.sqlite", candles)
    for name, seconds in ours.items():
        line = f"store {name:<28} {seconds:7.3f} s"
        if name in peer:
            line += f"   peer {peer[name]:7.3f} s   store/peer = {seconds / peer[name]:.2f}"
        print(line)


if __name__ == "__main__":
    main()
