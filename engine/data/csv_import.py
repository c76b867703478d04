"""Provides reading of candle files (CSV, CSV.gz, Binance kline dumps) and their validated import into the store.

Formats, detected from the first line of the file (gzip is detected from its magic bytes, not the name):

* ``timestamp_ms,open,high,low,close,volume`` header, then one candle per line (the project's own format,
  also used by ``/work/shared/data`` and ``engine/sample_data``).
* Binance kline CSV as published on data.binance.vision: no header, 12 columns
  ``openTime,open,high,low,close,volume,closeTime,quoteVolume,trades,takerBase,takerQuote,ignore``;
  the same 12 columns with Binance's ``open_time,...,ignore`` header are accepted too. Binance writes spot open
  times in microseconds (16 digits) since 2025; those are converted to ms (see ``timestamps_to_ms``).

Row numbers in errors are 1-based physical line numbers, header line included (first candle = row 2 in a file
with a header, row 1 in a headerless Binance file). Blank lines are rows too and are rejected.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]

from engine.data.validate import (
    CandleColumns,
    GapReport,
    Rule,
    find_gaps,
    timestamps_to_ms,
    validate_columns,
    validate_symbol,
)
from engine.domain.errors import DataValidationError
from engine.domain.models import Candles
from engine.domain.timeframes import parse_timeframe

_GZIP_MAGIC = b"\x1f\x8b"
_OHLCV_HEADER = ("timestamp_ms", "open", "high", "low", "close", "volume")
_BINANCE_HEADER = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
_BINANCE_NAMES = (
    "openTime",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "closeTime",
    "quoteVolume",
    "trades",
    "takerBase",
    "takerQuote",
    "ignore",
)
_INTEGER = re.compile(r"\s*[0-9]+\s*")
_DECIMAL = re.compile(r"\s*[+-]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|nan|inf|infinity)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class CandleFileFormat:
    """A recognised layout of candle file.

    Attributes:
        name: ``"ohlcv"`` or ``"binance_kline"``.
        has_header: whether the first line is a header to skip.
        column_names: names of all columns, in file order; the first six are time, OHLC and volume.
        compressed: gzip-compressed.
    """

    name: str
    has_header: bool
    column_names: tuple[str, ...]
    compressed: bool

    @property
    def first_row(self) -> int:
        """File row number of the first candle."""
        return 2 if self.has_header else 1


def _open_text(path: Path, compressed: bool) -> IO[str]:
    if compressed:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def detect_format(path: str | Path) -> CandleFileFormat:
    """Recognise the layout of a candle file from its first line.

    Raises:
        DataValidationError: rule ``empty_file``, ``unknown_header`` or ``column_count`` (row 1).
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
        with _open_text(path, compressed) as text:
            first_line = text.readline()
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise DataValidationError(str(path), None, Rule.UNREADABLE_FILE, str(error)) from None
    fields = [field.strip() for field in first_line.rstrip("\r\n").split(",")]
    if not first_line.strip():
        raise DataValidationError(str(path), 1, Rule.EMPTY_FILE, "the first line is empty")
    if _INTEGER.fullmatch(fields[0]):
        if len(fields) != len(_BINANCE_NAMES):
            raise DataValidationError(
                str(path),
                1,
                Rule.COLUMN_COUNT,
                f"a file without header must be a Binance kline CSV with {len(_BINANCE_NAMES)} columns, "
                f"found {len(fields)}",
            )
        return CandleFileFormat("binance_kline", False, _BINANCE_NAMES, compressed)
    header = tuple(field.lower() for field in fields)
    if header == _OHLCV_HEADER:
        return CandleFileFormat("ohlcv", True, _OHLCV_HEADER, compressed)
    if header == _BINANCE_HEADER:
        return CandleFileFormat("binance_kline", True, _BINANCE_HEADER, compressed)
    raise DataValidationError(
        str(path),
        1,
        Rule.UNKNOWN_HEADER,
        f"header {first_line.strip()!r} is neither {','.join(_OHLCV_HEADER)!r} nor a Binance kline header; "
        "headerless files must be Binance klines (12 columns)",
    )


def _columns_from(raw_times: npt.ArrayLike, values: list[npt.ArrayLike], first_row: int) -> CandleColumns:
    raw = np.asarray(raw_times, dtype=np.int64)
    times_ms, _ = timestamps_to_ms(raw)
    o, h, lo, c, v = (np.asarray(column, dtype=np.float64) for column in values)
    return CandleColumns(raw, times_ms, o, h, lo, c, v, first_row=first_row)


def _parse_fast(path: Path, fmt: CandleFileFormat) -> CandleColumns | None:
    """Parse with pandas' C reader; None when anything is off (the careful parser then finds out what)."""
    width = len(fmt.column_names)
    dtypes = {0: np.int64, **{index: np.float64 for index in range(1, width)}}
    try:
        frame = pd.read_csv(
            path,
            header=None,
            skiprows=1 if fmt.has_header else 0,
            dtype=dtypes,
            compression="gzip" if fmt.compressed else None,
            skip_blank_lines=False,  # a blank line must stay a row so that row numbers match the file
            index_col=False,
            engine="c",
            encoding="utf-8-sig",
        )
    except (ValueError, OverflowError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if frame.shape[1] != width or len(frame) == 0 or bool(frame.isna().to_numpy().any()):
        return None
    return _columns_from(
        frame[0].to_numpy(np.int64),
        [frame[index].to_numpy(np.float64) for index in range(1, 6)],
        fmt.first_row,
    )


def _rows(path: Path, fmt: CandleFileFormat) -> Iterator[tuple[int, list[str]]]:
    with _open_text(path, fmt.compressed) as text:
        reader = csv.reader(text)
        if fmt.has_header:
            next(reader, None)
        for fields in reader:
            yield reader.line_num, fields


def _cell_problem(fmt: CandleFileFormat, index: int, value: str) -> tuple[Rule, str] | None:
    name = fmt.column_names[index]
    if not value.strip():
        return Rule.EMPTY_VALUE, f"column {name!r} is empty"
    pattern = _INTEGER if index == 0 else _DECIMAL
    if pattern.fullmatch(value) is None:
        kind = "a whole number" if index == 0 else "a number"
        return Rule.NON_NUMERIC_VALUE, f"column {name!r} value {value!r} is not {kind}"
    return None


def _parse_careful(path: Path, fmt: CandleFileFormat) -> CandleColumns:
    """Parse line by line, stopping at the first line that has the wrong shape or a non-numeric value."""
    width = len(fmt.column_names)
    times: list[int] = []
    values: list[list[float]] = []
    problem_index, problem = -1, ("", "")
    for line_number, fields in _rows(path, fmt):
        cell_problem: tuple[Rule, str] | None = None
        if len(fields) != width:
            what = "a blank line" if not fields else f"{len(fields)} columns"
            cell_problem = (Rule.COLUMN_COUNT, f"expected {width} columns, found {what}")
        else:
            for index, value in enumerate(fields):
                cell_problem = _cell_problem(fmt, index, value)
                if cell_problem is not None:
                    break
        if cell_problem is None and int(fields[0]) >= 2**62:
            cell_problem = (Rule.TIMESTAMP_UNIT, f"timestamp {fields[0].strip()} is out of range")
        if cell_problem is not None:
            problem_index = line_number - fmt.first_row
            problem = (str(cell_problem[0]), cell_problem[1])
            break
        times.append(int(fields[0]))
        values.append([float(value) for value in fields[1:6]])
    table = np.asarray(values, dtype=np.float64).reshape(-1, 5)
    columns = _columns_from(np.asarray(times, dtype=np.int64), list(table.T), fmt.first_row)
    return replace(columns, parse_problem_index=problem_index, parse_problem=problem)


def read_candle_file(path: str | Path, symbol: str, timeframe: str) -> Candles:
    """Read and validate a candle file (blocking; call via ``asyncio.to_thread`` from async code).

    Args:
        path: CSV or gzip-compressed CSV in one of the formats in the module docstring.
        symbol: market symbol in ``BASE/QUOTE`` form, e.g. ``"BTC/USDT"``.
        timeframe: bar length, e.g. ``"1h"``; every open time must be aligned to it.

    Returns:
        The candles, oldest first, open times in UTC ms.

    Raises:
        DataValidationError: naming the file, the 1-based file row (header counted) and the broken rule
            (see ``engine.data.validate.Rule``); the first offending row of the file is reported.
    """
    path = Path(path)
    file = str(path)
    validate_symbol(symbol, file)
    try:
        length_ms = parse_timeframe(timeframe)
    except ValueError as error:
        raise DataValidationError(file, None, Rule.INVALID_TIMEFRAME, str(error)) from None
    fmt = detect_format(path)
    try:
        columns = _parse_fast(path, fmt) or _parse_careful(path, fmt)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataValidationError(file, None, Rule.UNREADABLE_FILE, str(error)) from None
    validate_columns(columns, length_ms, file)
    if len(columns.open_time_ms) == 0:
        raise DataValidationError(file, None, Rule.EMPTY_FILE, "the file has no candle rows")
    return Candles(
        symbol,
        timeframe,
        columns.open_time_ms,
        columns.open,
        columns.high,
        columns.low,
        columns.close,
        columns.volume,
    )


class CandleWriter(Protocol):
    """The part of ``engine.store.Store`` an import needs."""

    async def upsert_candles(self, candles: Candles) -> int: ...

    async def read_candles(
        self, symbol: str, timeframe: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> Candles: ...


@dataclass(frozen=True)
class ImportResult:
    """Outcome of one file import.

    Attributes:
        rows: candles in the file (all written).
        inserted: candles whose open time was not stored before.
        updated: candles that replaced a stored candle with different values.
        unchanged: candles identical to the stored ones (a re-import has ``unchanged == rows``).
        first_ms: open time of the first candle (UTC ms).
        last_ms: open time of the last candle (UTC ms).
        gaps: missing bars between ``first_ms`` and ``last_ms`` (reported, not filled).
    """

    rows: int
    inserted: int
    updated: int
    unchanged: int
    first_ms: int
    last_ms: int
    gaps: GapReport


def _count_changes(new: Candles, stored: Candles) -> tuple[int, int]:
    """(matching open times, of which with different values) between a new batch and the stored range."""
    if len(stored) == 0:
        return 0, 0
    in_stored = np.isin(new.open_time_ms, stored.open_time_ms, assume_unique=True)
    at = np.searchsorted(stored.open_time_ms, new.open_time_ms[in_stored])
    differs = np.zeros(int(in_stored.sum()), dtype=np.bool_)
    for name in ("open", "high", "low", "close", "volume"):
        differs |= getattr(new, name)[in_stored] != getattr(stored, name)[at]
    return int(in_stored.sum()), int(differs.sum())


async def import_candle_file(store: CandleWriter, path: str | Path, symbol: str, timeframe: str) -> ImportResult:
    """Validate a whole candle file, then upsert all of it in one store transaction.

    Nothing is written unless every row passes validation, and the store writes all rows or none, so a
    rejected file leaves the store unchanged. Importing the same file again changes nothing.

    Args:
        store: an open ``engine.store.Store`` (or anything with its ``upsert_candles``/``read_candles``).
        path: the candle file (see ``read_candle_file``).
        symbol: ``BASE/QUOTE``, e.g. ``"BTC/USDT"``.
        timeframe: e.g. ``"1h"``.

    Raises:
        DataValidationError: the file broke a rule (nothing written).
        StoreException: the write failed (nothing written).
    """
    candles = await asyncio.to_thread(read_candle_file, path, symbol, timeframe)
    first_ms, last_ms = int(candles.open_time_ms[0]), int(candles.open_time_ms[-1])
    stored = await store.read_candles(symbol, timeframe, first_ms, last_ms + 1)
    matched, updated = _count_changes(candles, stored)
    await store.upsert_candles(candles)
    return ImportResult(
        rows=len(candles),
        inserted=len(candles) - matched,
        updated=updated,
        unchanged=matched - updated,
        first_ms=first_ms,
        last_ms=last_ms,
        gaps=find_gaps(candles.open_time_ms, parse_timeframe(timeframe)),
    )
