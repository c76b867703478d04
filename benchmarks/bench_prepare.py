"""Provides the prepare benchmark: ``Strategy.prepare`` of the product strategy, warm kernel cache, best of 5.

Series: the bundled BTC/USDT 5m candles (8,928 bars) and, when ../shared/data has it, the real BTC/USDT 1m
file (130,708 bars). The first call compiles or loads the kernels and is not timed.

Run: ``.venv/bin/python benchmarks/bench_prepare.py``
"""

from __future__ import annotations

import timing  # benchmarks/timing.py: shared data path and best-of timing
from timing import SHARED_DATA

from engine.analysis.strategy import Strategy, StrategyParams
from engine.config import Settings
from engine.data.csv_import import read_candle_file
from engine.data.sample import load_sample
from engine.domain.models import Candles

REPEATS = 5
BTC_1M_FILE = SHARED_DATA / "BTC_USDT-1m.csv.gz"


def series() -> list[tuple[str, Candles]]:
    found = [("bundled BTC/USDT 5m", load_sample("BTC/USDT", "5m"))]
    if BTC_1M_FILE.is_file():
        found.append(("shared BTC/USDT 1m", read_candle_file(BTC_1M_FILE, "BTC/USDT", "1m")))
    return found


def main() -> None:
    config = Settings()
    strategy = Strategy(StrategyParams(), config.risk, config.breaker)
    for name, candles in series():
        strategy.prepare(candles)  # compiles or loads the kernels
        best = timing.best_of(lambda candles=candles: strategy.prepare(candles), REPEATS)
        print(f"{name}: {len(candles):,} bars, Strategy.prepare best of {REPEATS}: {best * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
