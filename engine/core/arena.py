"""Provides ``Arena``: every state record and outbox array of one core as views into one byte buffer.

A call from Python into a kernel pays for typing each argument, and a structured array costs microseconds
to type, a plain byte array a fraction of one. The per-bar entry points (:func:`decide_in`, :func:`simulate_in`)
therefore take the buffer and its layout and re-view the records inside compiled code; Python reads and writes
the same memory through the arena's views (``arena.account[0]["cash"]``...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.core.jit import njit
from engine.core.machine import decide
from engine.core.records import DECISION_DTYPE, EVENT_DTYPE, TRADE_DTYPE
from engine.core.simulated import simulate_bar
from engine.core.state import (
    ACCOUNT_DTYPE,
    BAR_DTYPE,
    BREAKER_DTYPE,
    CONFIG_DTYPE,
    MARKET_DTYPE,
    POSITION_DTYPE,
)

INT64 = np.dtype(np.int64)
PARTS: tuple[tuple[str, np.dtype[Any]], ...] = (
    ("config", CONFIG_DTYPE), ("markets", MARKET_DTYPE), ("account", ACCOUNT_DTYPE), ("breakers", BREAKER_DTYPE),
    ("api_errors", INT64), ("positions", POSITION_DTYPE), ("events", EVENT_DTYPE), ("decisions", DECISION_DTYPE),
    ("trades", TRADE_DTYPE), ("counts", INT64), ("bar", BAR_DTYPE),
)
CONFIG_SIZE, MARKET_SIZE, ACCOUNT_SIZE, BREAKER_SIZE = (d.itemsize for d in (CONFIG_DTYPE, MARKET_DTYPE, ACCOUNT_DTYPE,
                                                                            BREAKER_DTYPE))
POSITION_SIZE, EVENT_SIZE, DECISION_SIZE, TRADE_SIZE, BAR_SIZE = (d.itemsize for d in (
    POSITION_DTYPE, EVENT_DTYPE, DECISION_DTYPE, TRADE_DTYPE, BAR_DTYPE))
ALIGN = 64


class Arena:
    """One buffer holding ``parts`` (name -> array with the dtype of :data:`PARTS`), copied in; views as attributes."""

    def __init__(self, parts: dict[str, np.ndarray]) -> None:
        offsets, total = [], 0
        for name, dtype in PARTS:
            offsets.append((total, len(parts[name])))
            total += -(-len(parts[name]) * dtype.itemsize // ALIGN) * ALIGN
        self.buffer = np.zeros(total, np.uint8)
        self.layout = np.array([v for pair in offsets for v in pair], np.int64)
        for (name, dtype), (offset, count) in zip(PARTS, offsets, strict=True):
            view = self.buffer[offset:offset + count * dtype.itemsize].view(dtype)
            view[:] = parts[name]
            setattr(self, name, view)

    def view(self, name: str) -> np.ndarray:
        array: np.ndarray = getattr(self, name)
        return array


@njit()
def _span(layout: Any, part: int, size: int) -> tuple[int, int]:
    start = layout[2 * part]
    return start, start + layout[2 * part + 1] * size


@njit(cache=True)
def decide_in(buffer: Any, layout: Any, symbol: int) -> None:
    """:func:`engine.core.machine.decide` on the arena's bar row, with the outbox emptied first."""
    a, b = _span(layout, 0, CONFIG_SIZE)
    config = buffer[a:b].view(CONFIG_DTYPE)
    a, b = _span(layout, 1, MARKET_SIZE)
    markets = buffer[a:b].view(MARKET_DTYPE)
    a, b = _span(layout, 2, ACCOUNT_SIZE)
    account = buffer[a:b].view(ACCOUNT_DTYPE)
    a, b = _span(layout, 3, BREAKER_SIZE)
    breakers = buffer[a:b].view(BREAKER_DTYPE)
    a, b = _span(layout, 4, 8)
    api_errors = buffer[a:b].view(np.int64)
    a, b = _span(layout, 5, POSITION_SIZE)
    positions = buffer[a:b].view(POSITION_DTYPE)
    a, b = _span(layout, 6, EVENT_SIZE)
    events = buffer[a:b].view(EVENT_DTYPE)
    a, b = _span(layout, 7, DECISION_SIZE)
    decisions = buffer[a:b].view(DECISION_DTYPE)
    a, b = _span(layout, 9, 8)
    counts = buffer[a:b].view(np.int64)
    a, b = _span(layout, 10, BAR_SIZE)
    bar = buffer[a:b].view(BAR_DTYPE)
    counts[:] = 0
    decide(config, markets, account, breakers, api_errors, positions, events, decisions, counts, symbol, bar[0])


@njit(cache=True)
def simulate_in(buffer: Any, layout: Any, symbol: int) -> float:
    """:func:`engine.core.simulated.simulate_bar` on the arena's bar row, with the outbox emptied first."""
    a, b = _span(layout, 0, CONFIG_SIZE)
    config = buffer[a:b].view(CONFIG_DTYPE)
    a, b = _span(layout, 1, MARKET_SIZE)
    markets = buffer[a:b].view(MARKET_DTYPE)
    a, b = _span(layout, 2, ACCOUNT_SIZE)
    account = buffer[a:b].view(ACCOUNT_DTYPE)
    a, b = _span(layout, 3, BREAKER_SIZE)
    breakers = buffer[a:b].view(BREAKER_DTYPE)
    a, b = _span(layout, 4, 8)
    api_errors = buffer[a:b].view(np.int64)
    a, b = _span(layout, 5, POSITION_SIZE)
    positions = buffer[a:b].view(POSITION_DTYPE)
    a, b = _span(layout, 6, EVENT_SIZE)
    events = buffer[a:b].view(EVENT_DTYPE)
    a, b = _span(layout, 7, DECISION_SIZE)
    decisions = buffer[a:b].view(DECISION_DTYPE)
    a, b = _span(layout, 8, TRADE_SIZE)
    trades = buffer[a:b].view(TRADE_DTYPE)
    a, b = _span(layout, 9, 8)
    counts = buffer[a:b].view(np.int64)
    a, b = _span(layout, 10, BAR_SIZE)
    bar = buffer[a:b].view(BAR_DTYPE)
    counts[:] = 0
    return float(simulate_bar(config, markets, account, breakers, api_errors, positions, events, decisions, trades,
                              counts, symbol, bar[0]))
