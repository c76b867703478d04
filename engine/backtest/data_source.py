"""Provides where backtest candles come from: a CSV file, a series stored in SQLite, or the bundled sample.

Also stores and reads backtest runs (``engine.store`` is async; these helpers are called from the CLI
with ``asyncio.run`` and from the console with ``await``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.backtest.result import BacktestResult, plain
from engine.data.csv_import import read_candle_file
from engine.data.sample import load_sample
from engine.domain.errors import DataException
from engine.domain.models import Candles


def looks_like_file(source: str) -> bool:
    return source.endswith((".csv", ".csv.gz", ".gz")) or Path(source).is_file()


async def load_candles(source: str | None, symbol: str, timeframe: str, database_path: str | Path) -> Candles:
    """Candles for a backtest.

    Args:
        source: a CSV/CSV.gz path, a symbol stored in the SQLite store (e.g. ``"BTC/USDT"``), or None for
            the bundled sample of ``symbol``.
        symbol: the market symbol of the candles (``BASE/QUOTE``).
        timeframe: bar size, e.g. ``"1h"``.
        database_path: the SQLite store, used when ``source`` is not a file.

    Raises:
        DataException: the file is invalid or the store holds no such series.
    """
    import asyncio

    if source is None:
        return await asyncio.to_thread(load_sample, symbol, timeframe)
    if looks_like_file(source):
        if not Path(source).is_file():
            raise DataException(f"candle file {source} does not exist")
        return await asyncio.to_thread(read_candle_file, source, symbol, timeframe)
    from engine.store import Store

    stored_symbol = source
    async with await Store.open(database_path) as store:
        candles = await store.read_candles(stored_symbol, timeframe)
    if len(candles) == 0:
        raise DataException(
            f"no stored candles of {stored_symbol} {timeframe} in {database_path} (import them with "
            "`tradebot data import`)"
        )
    return candles


async def save_run(database_path: str | Path, name: str, result: BacktestResult) -> int:
    """Store a backtest run (params, metrics and the full result); returns its id."""
    from engine.store import Store

    async with await Store.open(database_path) as store:
        return await store.save_backtest_run(
            name,
            plain(result.params),
            plain(result.metrics_dict()),
            plain(result.to_dict()),
        )


async def load_runs(database_path: str | Path, run_ids: list[int]) -> list[Any]:
    """Stored runs (``BacktestRunRecord``) in the given order; a missing id raises DataException."""
    from engine.store import Store

    async with await Store.open(database_path) as store:
        runs = []
        for run_id in run_ids:
            record = await store.get_backtest_run(run_id)
            if record is None:
                raise DataException(f"no backtest run with id {run_id} in {database_path}")
            runs.append(record)
    return runs
