"""Specification of the live warm-up: derived from every timeframe's lookbacks, it reproduces the full history."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.strategy import PreparedSymbol, Strategy, StrategyParams
from engine.analysis.strategy_live import IncrementalPreparer
from engine.analysis.warmup import derive_warmup, recursion_bars
from engine.config import Settings
from engine.data.live_history import warmup_start_ms
from engine.domain.timeframes import DAY_MS
from tests.engine.manual_clock_rig import HOUR_MS, sample

LIVE_BARS = 200  # the last bars of the sample, fed one at a time as the live engine does


def strategy() -> Strategy:
    settings = Settings()
    return Strategy(StrategyParams.from_settings(settings), settings.risk, settings.breaker)


def test_the_default_warmup_is_set_by_the_daily_trend_slow_ema() -> None:
    plan = derive_warmup(strategy(), "1h")

    # Daily ema(50): its 50-day sma seed, then 346 days until the seed weighs < 1e-6; one more day for a
    # partial first bucket; in hourly bars.
    assert recursion_bars(2 / 51) == 346
    assert plan.needs == {"1h": 397, "4h": (50 + 346 + 1) * 4, "1d": (50 + 346 + 1) * 24}
    assert plan.bars == 9528 and plan.align_ms == DAY_MS
    assert derive_warmup(strategy(), "4h").bars == (50 + 346 + 1) * 6


def test_the_warmup_grows_with_the_lookbacks() -> None:
    longer = Strategy(StrategyParams(mtf_ema_slow=100), Settings().risk, Settings().breaker)
    assert derive_warmup(longer, "1h").bars > derive_warmup(strategy(), "1h").bars
    only_hourly = Strategy(StrategyParams(mtf_timeframes=("1h",)), Settings().risk, Settings().breaker)
    assert derive_warmup(only_hourly, "1h").needs == {"1h": (50 + 346 + 1)}


def live_values(bars: int, align_ms: int) -> tuple[PreparedSymbol, int]:
    """The live path on the sample: warm up on ``bars`` (aligned), then feed the last LIVE_BARS bars one by one."""
    candles = sample()
    first_live = len(candles) - LIVE_BARS
    start = warmup_start_ms(int(candles.open_time_ms[first_live]) + 1, HOUR_MS, bars, align_ms)
    lo = int(np.searchsorted(candles.open_time_ms, start))
    preparer = IncrementalPreparer(strategy(), max(bars + 24, IncrementalPreparer.bars_needed(strategy())))
    preparer.prime(candles.slice(lo, first_live))
    prepared = preparer.update_candles(candles.slice(first_live, None))
    return prepared, len(prepared) - LIVE_BARS


def mismatches(live: PreparedSymbol, offset: int, full: PreparedSymbol) -> dict[str, int]:
    """Per value, on how many of the last LIVE_BARS bars the live path differs from the full history."""
    base = len(full) - LIVE_BARS
    counts: dict[str, int] = {}

    def count(name: str, a: np.ndarray, b: np.ndarray) -> None:
        a, b = a[offset:offset + LIVE_BARS], b[base:]
        same = np.isclose(a, b, rtol=1e-9, atol=0, equal_nan=True) if a.dtype.kind == "f" else a == b
        if not same.all():
            counts[name] = int((~same).sum())

    for name in ("entry_direction", "entry_strength", "entry_multiplier", "exit_long", "exit_short", "atr",
                 "volatility_ratio", "normal_volatility", "volatility_alarm", "swing_low", "swing_high"):
        count(name, getattr(live, name), getattr(full, name))
    for name in ("signal", "strength", "momentum", "squeeze_on", "trend_direction"):
        count(f"signals.{name}", getattr(live.signals, name), getattr(full.signals, name))
    for timeframe in full.mtf.timeframes:
        count(f"trend {timeframe}", live.mtf.trends[timeframe], full.mtf.trends[timeframe])
    return counts


@pytest.fixture(scope="module")
def full_history() -> PreparedSymbol:
    return strategy().prepare(sample())


def test_the_derived_warmup_gives_the_full_history_values_on_every_live_bar(full_history: PreparedSymbol) -> None:
    plan = derive_warmup(strategy(), "1h")
    live, offset = live_values(plan.bars, plan.align_ms)

    assert mismatches(live, offset, full_history) == {}
    assert live.mtf.trends["1d"][-1] != 0, "the daily trend is known on the last bar"


def test_a_fixed_500_bar_warmup_does_not(full_history: PreparedSymbol) -> None:
    live, offset = live_values(500, HOUR_MS)

    differing = mismatches(live, offset, full_history)

    assert differing.get("trend 1d") == LIVE_BARS, "the daily trend is unknown (neutral) on every live bar"
    assert live.mtf.trends["1d"][-1] == 0 != full_history.mtf.trends["1d"][-1]
