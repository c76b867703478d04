"""Provides ``tradebot data import`` and ``tradebot data list``: candle files into the store."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="import and list stored candles")
    data_commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    importer = data_commands.add_parser(
        "import",
        help="import a candle CSV/CSV.gz (timestamp_ms,open,high,low,close,volume or Binance kline CSV)",
    )
    importer.add_argument("file", type=Path)
    importer.add_argument("--symbol", required=True, help="market symbol, e.g. BTC/USDT")
    importer.add_argument("--timeframe", required=True, help="bar size of the file, e.g. 1h")
    importer.set_defaults(handler=handle_import)

    lister = data_commands.add_parser("list", help="show stored candle series")
    lister.set_defaults(handler=handle_list)


def format_time(time_ms: int | None) -> str:
    if time_ms is None:
        return "-"
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def handle_import(args: argparse.Namespace, settings: Settings) -> int:
    result = asyncio.run(_import(settings, args.file, args.symbol, args.timeframe))
    gaps = result.gaps
    print(
        f"imported {result.rows} candles of {args.symbol} {args.timeframe} from {args.file} "
        f"({format_time(result.first_ms)} .. {format_time(result.last_ms)})"
    )
    if gaps.count:
        print(
            f"gaps: {gaps.count} (missing {gaps.missing_bars} bars; largest {gaps.largest_gap_bars} bars "
            f"from {format_time(gaps.largest_gap_start_ms)}); gaps are reported, not filled"
        )
    else:
        print("gaps: none")
    return 0


async def _import(settings: Settings, file: Path, symbol: str, timeframe: str) -> Any:
    from engine.data.csv_import import import_candle_file
    from engine.store import Store

    async with await Store.open(settings.storage.database_path) as store:
        return await import_candle_file(store, file, symbol, timeframe)


def handle_list(args: argparse.Namespace, settings: Settings) -> int:
    series = asyncio.run(_list(settings))
    if not series:
        print(f"no candles stored in {settings.storage.database_path}")
        return 0
    header = f"{'symbol':<12} {'tf':<4} {'first':<16} {'last':<16} {'rows':>9} {'gaps':>5} {'missing':>8}"
    print(header)
    for info in series:
        print(
            f"{info.symbol:<12} {info.timeframe:<4} {format_time(info.first_ms):<16} {format_time(info.last_ms):<16} "
            f"{info.rows:>9} {info.gap_count:>5} {info.missing_bars:>8}"
        )
    return 0


async def _list(settings: Settings) -> list[Any]:
    from engine.store import Store

    async with await Store.open(settings.storage.database_path) as store:
        return list(await store.candle_series())
