"""Provides candle persistence: idempotent bulk upsert, fast columnar reads and per-series summaries."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from engine.domain.models import Candles
from engine.domain.timeframes import parse_timeframe
from engine.store.base import StoreBase

_UPSERT_CANDLE_SQL = (
    "INSERT INTO candles (symbol, timeframe, open_time_ms, open, high, low, close, volume)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (symbol, timeframe, open_time_ms) DO UPDATE SET"
    " open = excluded.open, high = excluded.high, low = excluded.low,"
    " close = excluded.close, volume = excluded.volume"
)

_ROW_DTYPE = np.dtype(
    [
        ("open_time_ms", np.int64),
        ("open", np.float64),
        ("high", np.float64),
        ("low", np.float64),
        ("close", np.float64),
        ("volume", np.float64),
    ]
)


@dataclass(frozen=True)
class CandleSeriesInfo:
    """What the store holds for one (symbol, timeframe).

    Attributes:
        first_ms: open time of the oldest candle (UTC ms).
        last_ms: open time of the newest candle (UTC ms).
        rows: number of candles stored.
        gap_count: how many times consecutive candles are more than one bar apart.
        missing_bars: bars absent between ``first_ms`` and ``last_ms`` in total.
        largest_gap_bars: most bars missing in a single gap (0 without gaps).
    """

    symbol: str
    timeframe: str
    first_ms: int
    last_ms: int
    rows: int
    gap_count: int
    missing_bars: int
    largest_gap_bars: int


class CandleStoreMixin(StoreBase):
    """Candle methods of ``engine.store.Store``."""

    async def upsert_candles(self, candles: Candles) -> int:
        """Inserts or replaces candles in one transaction; re-importing the same data changes nothing.

        Returns:
            Number of candles written (``len(candles)``).

        Raises:
            StoreException: a value is NaN (SQLite stores NaN as NULL, which the schema refuses) or the
                write failed; nothing of this batch is stored then.
        """
        if len(candles) == 0:
            return 0
        # tolist() turns each column into Python ints/floats in one C loop: float64 values round-trip
        # bit-exactly through SQLite REAL, and executemany consumes the zip lazily on the DB thread.
        rows = zip(
            repeat(candles.symbol),
            repeat(candles.timeframe),
            candles.open_time_ms.tolist(),
            candles.open.tolist(),
            candles.high.tolist(),
            candles.low.tolist(),
            candles.close.tolist(),
            candles.volume.tolist(),
            strict=False,
        )
        await self._executemany(_UPSERT_CANDLE_SQL, rows)
        return len(candles)

    async def read_candles(
        self,
        symbol: str,
        timeframe: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> Candles:
        """Candles of one series whose open time lies in ``[start_ms, end_ms)``, oldest first.

        Args:
            start_ms: inclusive lower bound on open time (UTC ms); None = from the first candle.
            end_ms: exclusive upper bound on open time (UTC ms); None = to the last candle.

        Returns:
            The candles (possibly empty), read straight into numpy arrays.
        """
        lo = -(2**63) if start_ms is None else int(start_ms)
        hi = 2**63 - 1 if end_ms is None else int(end_ms)
        sql = (
            "SELECT open_time_ms, open, high, low, close, volume FROM candles"
            " WHERE symbol = ? AND timeframe = ? AND open_time_ms >= ? AND open_time_ms < ?"
            " ORDER BY open_time_ms"
        )
        if start_ms is None and end_ms is None:
            params: tuple[object, ...] = (symbol, timeframe)
            sql = sql.replace(" AND open_time_ms >= ? AND open_time_ms < ?", "")
        else:
            params = (symbol, timeframe, lo, hi)

        def fetch(raw: sqlite3.Connection) -> np.ndarray:
            return np.fromiter(raw.execute(sql, params), dtype=_ROW_DTYPE)

        async with self._reading():
            table = await self._in_db_thread(fetch)
        return Candles(
            symbol,
            timeframe,
            *(np.ascontiguousarray(table[name]) for name in _ROW_DTYPE.names or ()),
        )

    async def candle_series(self) -> list[CandleSeriesInfo]:
        """One summary per stored (symbol, timeframe), sorted by symbol then timeframe length.

        Gaps are measured in bars of the series' timeframe (``engine.domain.timeframes.parse_timeframe``); a
        series whose timeframe cannot be parsed reports no gaps.
        """
        series = await self._fetchall(
            "SELECT symbol, timeframe, MIN(open_time_ms), MAX(open_time_ms), COUNT(*)"
            " FROM candles GROUP BY symbol, timeframe"
        )
        infos: list[CandleSeriesInfo] = []
        for symbol, timeframe, first_ms, last_ms, rows in series:
            try:
                bar_ms = parse_timeframe(timeframe)
            except ValueError:
                bar_ms = 0
            gap_count = missing_bars = largest_gap_bars = 0
            if bar_ms > 0 and rows > 1:
                # Integer division keeps an off-grid step (a shifted candle) from counting as a gap.
                gap = await self._fetchone(
                    "SELECT COUNT(*), COALESCE(SUM(step / ? - 1), 0), COALESCE(MAX(step / ? - 1), 0)"
                    " FROM (SELECT open_time_ms - LAG(open_time_ms) OVER (ORDER BY open_time_ms) AS step"
                    "       FROM candles WHERE symbol = ? AND timeframe = ?)"
                    " WHERE step >= 2 * ?",
                    (bar_ms, bar_ms, symbol, timeframe, bar_ms),
                )
                gap_count, missing_bars, largest_gap_bars = (int(value) for value in gap)
            infos.append(
                CandleSeriesInfo(
                    symbol=symbol,
                    timeframe=timeframe,
                    first_ms=int(first_ms),
                    last_ms=int(last_ms),
                    rows=int(rows),
                    gap_count=gap_count,
                    missing_bars=missing_bars,
                    largest_gap_bars=largest_gap_bars,
                )
            )
        infos.sort(key=lambda info: (info.symbol, _sort_length(info.timeframe), info.timeframe))
        return infos

    async def delete_candles(self, symbol: str, timeframe: str) -> int:
        """Removes one whole series; returns how many candles were deleted."""
        return await self._execute_rowcount(
            "DELETE FROM candles WHERE symbol = ? AND timeframe = ?", (symbol, timeframe)
        )


def _sort_length(timeframe: str) -> int:
    try:
        return parse_timeframe(timeframe)
    except ValueError:
        return 0
