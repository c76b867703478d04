"""Provides the candle file import benchmark: parse + validate vs a bare pandas read, and a full store import.

Data: the real Binance BTC/USDT 5m candles in ../shared/data/BTC_USDT-5m.csv.gz (207,624 rows, ~2 years).

Measured in the same run:
* peer: ``pandas.read_csv`` of the same file with no validation at all (the floor for our fast path);
* ``read_candle_file`` (format detection, parse, every validation rule, gap-free check);
* the careful line-by-line path, forced by one bad value in the last row of a plain-CSV copy (the error path);
* ``import_candle_file`` into a fresh SQLite store, first import and idempotent re-import.

Run: ``.venv/bin/python benchmarks/bench_csv_import.py``
"""

from __future__ import annotations

import asyncio
import gzip
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import timing  # benchmarks/timing.py: shared data path and best-of timing
from timing import BTC_5M_FILE

from engine.data.csv_import import import_candle_file, read_candle_file
from engine.domain.errors import DataValidationError
from engine.store import Store

DATA_FILE = BTC_5M_FILE
REPEATS = 5


def best_of(action: Callable[[], object]) -> float:
    return timing.best_of(action, REPEATS)


def expect_rejection(path: Path) -> None:
    try:
        read_candle_file(path, "BTC/USDT", "5m")
    except DataValidationError:
        return
    raise AssertionError("the broken file was accepted")


async def store_import(directory: Path) -> tuple[float, float]:
    async with Store.open(directory / "bench.sqlite") as store:
        start = time.perf_counter()
        first = await import_candle_file(store, DATA_FILE, "BTC/USDT", "5m")
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        again = await import_candle_file(store, DATA_FILE, "BTC/USDT", "5m")
        again_s = time.perf_counter() - start
    assert first.inserted == first.rows and again.unchanged == again.rows
    return first_s, again_s


def main() -> None:
    if not DATA_FILE.is_file():
        print(f"skipped: {DATA_FILE} is absent")
        return
    rows = len(read_candle_file(DATA_FILE, "BTC/USDT", "5m"))
    peer = best_of(lambda: pd.read_csv(DATA_FILE))
    ours = best_of(lambda: read_candle_file(DATA_FILE, "BTC/USDT", "5m"))
    print(f"rows: {rows:,}")
    print(f"pandas.read_csv, no validation (peer): {peer * 1000:8.1f} ms")
    print(f"read_candle_file, validated:           {ours * 1000:8.1f} ms  ratio {ours / peer:.2f}x peer")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        lines = gzip.decompress(DATA_FILE.read_bytes()).decode().splitlines(keepends=True)
        lines[-1] = lines[-1].replace(",", ",x", 1)
        broken = directory / "broken.csv"
        broken.write_text("".join(lines))
        careful = best_of(lambda: expect_rejection(broken))
        print(f"rejecting a bad last row (careful path): {careful * 1000:6.1f} ms  ratio {careful / peer:.2f}x peer")
        first_s, again_s = asyncio.run(store_import(directory))
        print(f"import_candle_file into SQLite: first {first_s * 1000:.0f} ms, re-import {again_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
