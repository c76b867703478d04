"""Specification of the backtest timeline: every bar of every symbol once, by open time then symbol."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backtest.loop import merge_timeline

MINUTE_MS = 60_000


class _Sized:
    def __init__(self, open_time_ms: np.ndarray) -> None:
        self.open_time_ms = open_time_ms

    def __len__(self) -> int:
        return len(self.open_time_ms)


def _expected(grids: list[list[int]], start_ms: int | None) -> list[tuple[int, int, int]]:
    items = [
        (time, k, bar)
        for k, grid in enumerate(grids)
        for bar, time in enumerate(grid)
        if start_ms is None or time >= start_ms
    ]
    return sorted(items)


grid_strategy = st.lists(
    st.builds(lambda start, length: [(start + i) * MINUTE_MS for i in range(length)], st.integers(0, 20),
              st.integers(0, 25)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=80, deadline=None)
@given(grid_strategy, st.one_of(st.none(), st.integers(0, 30).map(lambda m: m * MINUTE_MS)))
def test_items_are_ordered_by_open_time_then_symbol(grids: list[list[int]], start_ms: int | None) -> None:
    prepared: Any = [SimpleNamespace(candles=_Sized(np.asarray(g, dtype=np.int64))) for g in grids]
    timeline = merge_timeline(prepared, start_ms)
    expected = _expected(grids, start_ms)
    got = [(grids[k][b], k, b) for k, b in zip(timeline.symbol.tolist(), timeline.bar.tolist(), strict=True)]
    assert got == expected
    times = [t for t, _, _ in expected]
    ends = [i for i in range(len(times)) if i == len(times) - 1 or times[i + 1] != times[i]]
    assert timeline.group_end.tolist() == ends
    assert timeline.group_time_ms.tolist() == [times[i] for i in ends]


def test_symbols_on_one_grid_are_interleaved() -> None:
    grid = [i * MINUTE_MS for i in range(5)]
    prepared: Any = [SimpleNamespace(candles=_Sized(np.asarray(grid, dtype=np.int64))) for _ in range(3)]
    timeline = merge_timeline(prepared, 2 * MINUTE_MS)
    assert timeline.symbol.tolist() == [0, 1, 2] * 3
    assert timeline.bar.tolist() == [2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert timeline.group_end.tolist() == [2, 5, 8]
