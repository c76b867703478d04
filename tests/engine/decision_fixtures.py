"""Provides hand-made PreparedSymbol inputs for decision-path tests (every array under the test's control)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from engine.analysis.strategy import PreparedSymbol, Strategy, StrategyParams
from engine.config import BreakerConfig, RiskConfig, Settings
from engine.core.decision import DecisionCore
from engine.core.portfolio import Portfolio
from engine.domain.models import Candles, MarketLimits
from engine.simulation.account import SimulatedAccount
from engine.simulation.fills import FillModel

HOUR_MS = 3_600_000
START_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC
LIMITS = MarketLimits("TEST/USDT", lot_step=0.001, tick_size=0.01, min_qty=0.001, min_notional=5.0)


def candles(
    opens: Sequence[float],
    highs: Sequence[float],
    lows: Sequence[float],
    closes: Sequence[float],
    symbol: str = "TEST/USDT",
    start_ms: int = START_MS,
) -> Candles:
    n = len(closes)
    return Candles(
        symbol,
        "1h",
        start_ms + np.arange(n, dtype=np.int64) * HOUR_MS,
        np.asarray(opens, float),
        np.asarray(highs, float),
        np.asarray(lows, float),
        np.asarray(closes, float),
        np.ones(n),
    )


def flat_candles(n: int, price: float = 100.0, symbol: str = "TEST/USDT") -> Candles:
    return candles([price] * n, [price + 0.5] * n, [price - 0.5] * n, [price] * n, symbol)


def prepared(
    bars: Candles,
    entries: dict[int, int] | None = None,
    exits: Sequence[int] = (),
    atr: float = 1.0,
    risk: RiskConfig | None = None,
    breaker: BreakerConfig | None = None,
) -> PreparedSymbol:
    """The real ``Strategy.prepare`` output with entry/exit/ATR arrays replaced by the given ones."""
    settings = Settings()
    base = Strategy(StrategyParams(), risk or settings.risk, breaker or settings.breaker).prepare(bars)
    n = len(bars)
    direction = np.zeros(n, dtype=np.int8)
    for index, side in (entries or {}).items():
        direction[index] = side
    exit_long = np.zeros(n, dtype=bool)
    exit_long[list(exits)] = True
    return replace(
        base,
        entry_direction=direction,
        entry_strength=np.where(direction != 0, 1.0, 0.0),
        entry_multiplier=np.where(direction != 0, 1.0, 0.0),
        exit_long=exit_long,
        exit_short=exit_long.copy(),
        atr=np.full(n, atr),
        volatility_ratio=np.ones(n),
        normal_volatility=np.full(n, atr),
        volatility_alarm=np.zeros(n, dtype=bool),
        swing_low=np.full(n, np.nan),
        swing_high=np.full(n, np.nan),
    )


def account(
    risk: RiskConfig | None = None,
    breaker: BreakerConfig | None = None,
    take_profit_atr_multiple: float = 4.0,
    capital: float = 10_000.0,
    fill_model: FillModel | None = None,
) -> SimulatedAccount:
    settings = Settings()
    core = DecisionCore(
        risk or settings.risk,
        breaker or settings.breaker.model_copy(update={"latching": []}),
        Portfolio(capital),
        {"TEST/USDT": LIMITS},
        take_profit_atr_multiple=take_profit_atr_multiple,
    )
    return SimulatedAccount(core, fill_model or FillModel(commission_rate=0.001, slippage_rate=0.0005))


def run(sim: SimulatedAccount, item: PreparedSymbol, upto: int | None = None) -> SimulatedAccount:
    for index in range(len(item) if upto is None else upto):
        sim.process_bar(item, index)
    return sim
