"""Test helpers shared by the incremental == vectorised checks: the default strategy and every per-bar array."""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.analysis.strategy import PreparedSymbol, Strategy, StrategyParams
from engine.config import Settings


def default_strategy(params: StrategyParams | None = None) -> Strategy:
    config = Settings()
    return Strategy(params or StrategyParams(), config.risk, config.breaker)


def prepared_columns(prepared: PreparedSymbol) -> dict[str, np.ndarray]:
    """Every per-bar array a PreparedSymbol holds, by a readable name."""
    columns: dict[str, np.ndarray] = {}
    for frame_name in ("candles", "signals", "volume", "mtf"):
        frame = getattr(prepared, frame_name)
        for field in dataclasses.fields(frame):
            value = getattr(frame, field.name)
            if isinstance(value, np.ndarray):
                columns[f"{frame_name}.{field.name}"] = value
    for timeframe, trend in prepared.mtf.trends.items():
        columns[f"mtf.trends.{timeframe}"] = trend
    for field in dataclasses.fields(prepared):
        value = getattr(prepared, field.name)
        if isinstance(value, np.ndarray):
            columns[field.name] = value
    return columns
