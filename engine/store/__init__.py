"""Provides the SQLite store (aiosqlite, WAL) that persists candles, orders, positions and engine state.

Usage::

    async with Store.open("data/tradebot.sqlite") as store:
        await store.upsert_candles(candles)
        async with store.transaction():  # writes that belong together
            await store.save_order(order)
            await store.set_state("trading_state", "HALTED")

The class is assembled from one mixin per concern (candles, trading state, records) over the
connection base; all of them share the one connection and its transaction lock.
"""

from __future__ import annotations

from engine.store.base import StoreOpening
from engine.store.candles import CandleSeriesInfo, CandleStoreMixin
from engine.store.migrations import LATEST_VERSION, MIGRATIONS, Migration
from engine.store.records import (
    AuditRow,
    BacktestRunRecord,
    OptimizationResult,
    OutboxMessage,
    OutboxStatus,
    RecordStoreMixin,
)
from engine.store.trading import TRADING_STATE_KEY, TradingStoreMixin

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "TRADING_STATE_KEY",
    "AuditRow",
    "BacktestRunRecord",
    "CandleSeriesInfo",
    "Migration",
    "OptimizationResult",
    "OutboxMessage",
    "OutboxStatus",
    "Store",
    "StoreOpening",
]


class Store(CandleStoreMixin, TradingStoreMixin, RecordStoreMixin):
    """The one persistence object: ``async with Store.open(path) as store`` (or ``await``, then ``close()``)."""
