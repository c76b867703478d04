"""Provides warm_up(): compile (or load from numba's cache) every kernel the product strategy runs.

``python -m engine.analysis.compile_kernels`` runs it, e.g. once after install (the Makefile does), so the first
backtest or live start does not pay the compile (a few seconds). It prepares a short bundled series with the
default strategy, vectorised and one bar at a time, which calls every kernel with the argument types they
always get.
"""

from __future__ import annotations

import time

WARM_UP_BARS = 600  # bars of the bundled BTC/USDT 1h series prepared at once
PRIMED_BARS = 550  # of them primed live, the rest fed one bar at a time


def warm_up() -> float:
    """Compile or load every indicator kernel; seconds taken."""
    from engine.analysis.strategy import Strategy, StrategyParams
    from engine.analysis.strategy_live import IncrementalPreparer
    from engine.config import Settings
    from engine.data.sample import load_sample

    start = time.perf_counter()
    candles = load_sample("BTC/USDT", "1h").slice(0, WARM_UP_BARS)
    config = Settings()
    strategy = Strategy(StrategyParams(), config.risk, config.breaker)
    strategy.prepare(candles)
    preparer = IncrementalPreparer(strategy, IncrementalPreparer.bars_needed(strategy))
    preparer.prime(candles.slice(0, PRIMED_BARS))
    preparer.update_candles(candles.slice(PRIMED_BARS, WARM_UP_BARS))
    return time.perf_counter() - start


if __name__ == "__main__":
    print(f"indicator kernels ready in {warm_up():.1f} s")
