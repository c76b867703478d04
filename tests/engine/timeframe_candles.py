"""Test helpers shared by the timeframe and resampling specifications: synthetic and real candles."""

from __future__ import annotations

import gzip

import numpy as np

from engine.domain.models import Candles
from engine.domain.timeframes import parse_timeframe
from tests.shared_data import shared_data_path

T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC, a midnight and a 4h boundary


def make_candles(timeframe: str, open_times: np.ndarray, seed: int = 0) -> Candles:
    """Synthetic, internally consistent candles at the given open times."""
    rng = np.random.default_rng(seed)
    n = len(open_times)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) + rng.uniform(0.0, 1.0, n)
    low = np.minimum(open_, close) - rng.uniform(0.0, 1.0, n)
    volume = rng.uniform(1.0, 10.0, n)
    return Candles(
        "TEST/USDT", timeframe, np.asarray(open_times, dtype=np.int64), open_, high, low, close, volume
    )


def contiguous(timeframe: str, count: int, start_ms: int = T0, seed: int = 0) -> Candles:
    return make_candles(timeframe, start_ms + parse_timeframe(timeframe) * np.arange(count), seed)


def load_shared(name: str, timeframe: str) -> Candles:
    path = shared_data_path(name)
    with gzip.open(path, "rt") as handle:
        data = np.loadtxt(handle, delimiter=",", skiprows=1)
    return Candles(name, timeframe, data[:, 0].astype(np.int64), *(data[:, k] for k in range(1, 6)))
