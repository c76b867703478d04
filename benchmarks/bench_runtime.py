"""Benchmark: closed candle -> order decision latency with 20 symbols in one paper engine.

Each of 20 symbols (real BTC/ETH/SOL/BNB/XRP 1h candles, renamed) replays bars after a 500-bar warm-up.
Reported per candle: the decision time (the symbol's worker takes the candle -> history, incremental
decision inputs (``SymbolHistory.prepared``), SimulatedAccount.process_bar done) at the real pace (one candle
per symbol per bar), and the latency including queueing when all 20 symbols' candles close at the same
instant (the live case at a bar close). Peer, measured in the same run on the same histories: a full
``Strategy.prepare`` of the symbol's history per candle (what the live path did before it was incremental).
Target: decision p99 < 5 ms. Run: ``.venv/bin/python benchmarks/bench_runtime.py [bars]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from engine.config import Settings
from engine.data.live_feed import ClosedCandle
from engine.data.sample import load_sample
from engine.domain.models import Candles
from engine.runtime.engine import build_engine

SYMBOLS = 20
WARMUP = 500


def _series(bars: int) -> dict[str, Candles]:
    bases = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"]
    series = {}
    for i in range(SYMBOLS):
        c = load_sample(bases[i % len(bases)], "1h").slice(700 * (i // len(bases)), None)
        c = c.slice(0, WARMUP + bars)
        name = f"S{i:02d}/USDT"
        series[name] = Candles(name, "1h", c.open_time_ms, c.open, c.high, c.low, c.close, c.volume)
    return series


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(bars: int) -> None:
    series = _series(bars)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(exchange={"symbols": list(series)},
                            storage={"database_path": Path(tmp) / "bench.sqlite3", "log_dir": Path(tmp)})
        engine = build_engine(settings, series=series, replay_speed=1e-9, warmup_bars=WARMUP)
        task = asyncio.create_task(engine.run())
        await engine.started.wait()
        decision: list[float] = []
        burst: list[float] = []
        full_prepare: list[float] = []
        for bar in range(WARMUP, WARMUP + bars):
            start_ns = time.perf_counter_ns()
            candles = []
            for symbol, c in series.items():
                candles.append(ClosedCandle(symbol, "1h", int(c.open_time_ms[bar]), float(c.open[bar]),
                                            float(c.high[bar]), float(c.low[bar]), float(c.close[bar]),
                                            float(c.volume[bar]), 3_600_000))
            for candle in candles:  # all 20 close at the same instant, processed one after another
                t0 = time.perf_counter_ns()
                await engine.process_candle(candle, t0)
                decision.append((time.perf_counter_ns() - t0) / 1e6)
                burst.append((time.perf_counter_ns() - start_ns) / 1e6)
            for candle in candles:  # the peer, outside the timed burst
                history = engine.histories[candle.symbol].candles()
                t0 = time.perf_counter_ns()
                engine.strategy.prepare(history)
                full_prepare.append((time.perf_counter_ns() - t0) / 1e6)
            await asyncio.sleep(0)
        engine.stop()
        await task
    print(f"symbols={SYMBOLS} bars={bars} candles={len(decision)} trades={len(engine.portfolio.closed_trades)}")
    print(f"decision latency  p50={statistics.median(decision):.2f} ms  p99={_pct(decision, 0.99):.2f} ms "
          f"max={max(decision):.2f} ms  (target p99 < 5 ms: {'met' if _pct(decision, 0.99) < 5 else 'NOT met'})")
    print(f"with 20-way queueing at one bar close  p50={statistics.median(burst):.2f} ms  "
          f"p99={_pct(burst, 0.99):.2f} ms")
    print(f"peer: full Strategy.prepare per candle  p50={statistics.median(full_prepare):.2f} ms  "
          f"p99={_pct(full_prepare, 0.99):.2f} ms  (whole decision vs prepare alone: p50 "
          f"{statistics.median(full_prepare) / statistics.median(decision):.1f}x, p99 "
          f"{_pct(full_prepare, 0.99) / _pct(decision, 0.99):.1f}x faster)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
