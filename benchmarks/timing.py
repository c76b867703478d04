"""Provides what every benchmark script shares: the shared real-data folder and best-of-N timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BTC_5M_FILE = SHARED_DATA / "BTC_USDT-5m.csv.gz"


def best_of(action: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` runs of ``action``, in seconds (the least disturbed by other processes)."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)
