"""Provides the SQLite store (aiosqlite, WAL) that persists candles, orders, positions and engine state.

Usage::

    async with Store.open("data/tradebot.sqlite") as store:
        await store.upsert_candles(candles)
"""

from __future__ import annotations

from engine.store.candles import CandleSeriesInfo, CandleStoreMixin
from engine.store.migrations import LATEST_VERSION, MIGRATIONS, Migration

__all__ = ["LATEST_VERSION", "MIGRATIONS", "CandleSeriesInfo", "Migration", "Store"]


class Store(CandleStoreMixin):
    """The one persistence object: open with ``await Store.open(path)``, close with ``close()``."""
