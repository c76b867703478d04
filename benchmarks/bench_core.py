"""Benchmark of the compiled decision core (``engine.core``) against today's Python core, measured in one run.

Data: the real Binance BTC/USDT 1m candles in ../shared/data (130,708 bars) tiled to 525,600 bars (one year of
minutes; each copy rescaled to continue from the previous copy's last close, as ``bench_backtest.py`` does),
prepared once with the product strategy (Squeeze Momentum + Magic Trend, default settings) and compacted as
``run_backtest`` does. Prepare is not timed here (``bench_backtest.py`` does).

Lines (best of N, the load average printed first because the machine is shared):
1. the bar loop alone, ns/bar: ``engine.backtest.loop.run_loop`` (today) vs ``engine.core.loop.run_timeline``,
   and peer / ours (> 1: the compiled loop is faster); both runs give the same trades (checked);
2. the whole simulate step (loop + end-of-data + metrics + result): ``BacktestEngine.simulate`` vs
   ``engine.backtest.compiled.simulate_compiled``;
3. ``CompiledCore.step`` per call (live: decide on a loaded bar), ``load`` of a bar from the prepared arrays,
   and ``simulate`` per call (paper), against ``DecisionCore.on_bar`` per call on the same bars;
4. ten symbols of 525,600 bars on one shared equity: the loops per timeline item (today's timeline driver);
5. first-run compile time (a fresh interpreter, empty ``NUMBA_CACHE_DIR``) and cached start-up time (the same
   again with that cache filled): import plus the first small compiled run.

Run: ``.venv/bin/python benchmarks/bench_core.py [--quick]`` (``--quick``: 130,708 bars, no compile timing).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_backtest import SHARED, YEAR_OF_MINUTES, tiled  # noqa: E402
from timing import best_of  # noqa: E402

from engine.backtest import BacktestEngine  # noqa: E402
from engine.backtest.compact import compact_for_backtest  # noqa: E402
from engine.backtest.compiled import CoreState, simulate_compiled, symbol_arrays  # noqa: E402
from engine.backtest.loop import merge_timeline, run_loop  # noqa: E402
from engine.backtest.params import ParameterSet  # noqa: E402
from engine.core.decision import DecisionCore  # noqa: E402
from engine.core.loop import run_timeline  # noqa: E402
from engine.core.portfolio import Portfolio  # noqa: E402
from engine.core.records import Outbox  # noqa: E402
from engine.core.state import BAR_DTYPE  # noqa: E402
from engine.core.step import CompiledCore  # noqa: E402
from engine.data.csv_import import read_candle_file  # noqa: E402
from engine.simulation.account import SimulatedAccount  # noqa: E402
from engine.simulation.fills import FillModel  # noqa: E402

WARM_UP = """
import time; start = time.perf_counter()
import sys; sys.path.insert(0, {root!r})
from engine.backtest import BacktestEngine
from engine.backtest.params import ParameterSet
from engine.backtest.sma_cross import prepare_sma_cross, sma_cross_breaker, sma_cross_risk
from engine.backtest.compiled import simulate_compiled
from engine.data.sample import load_sample
from engine.analysis.strategy import StrategyParams
candles = load_sample("BTC/USDT", "1h").slice(0, 500)
risk, breaker, params = sma_cross_risk(), sma_cross_breaker(), StrategyParams(take_profit_atr_multiple=0.0)
engine = BacktestEngine(candles, params, risk=risk, breaker=breaker)
before = time.perf_counter()
simulate_compiled(engine, [prepare_sma_cross(candles)], None, ParameterSet(params, risk, breaker))
print(time.perf_counter() - start, time.perf_counter() - before)
"""


def ratio_line(label: str, ours_s: float, peer_s: float, per: int, unit: str = "ns/bar") -> None:
    scale = 1e9 if unit.startswith("ns") else 1e6
    print(f"{label:<44} ours {ours_s / per * scale:9.1f} {unit}   today {peer_s / per * scale:9.1f} {unit}   "
          f"today / ours {peer_s / ours_s:7.1f}x")


def python_loop(engine: BacktestEngine, prepared: list, parameters: ParameterSet) -> int:  # type: ignore[type-arg]
    breaker = parameters.breaker.model_copy(update={"latching": []})
    core = DecisionCore(parameters.risk, breaker, Portfolio(engine.backtest_config.initial_capital),
                        engine.market_limits, take_profit_atr_multiple=parameters.strategy.take_profit_atr_multiple)
    sim = SimulatedAccount(core, FillModel.from_config(engine.backtest_config), keep_fills=False, keep_events=False)
    run_loop(prepared, sim)
    return len(sim.log.trades)


def compiled_loop(engine: BacktestEngine, prepared: list, parameters: ParameterSet,  # type: ignore[type-arg]
                  skip_idle: bool = True) -> int:
    breaker = parameters.breaker.model_copy(update={"latching": []})
    limits = [engine.market_limits[p.symbol] for p in prepared]
    state = CoreState.fresh(parameters.risk, breaker, engine, parameters.strategy.take_profit_atr_multiple, limits,
                            engine.backtest_config.initial_capital)
    timeline = merge_timeline(prepared, None)
    outbox = Outbox(len(prepared))
    output = run_timeline(*state.arguments(), np.zeros(1, BAR_DTYPE), outbox.events, outbox.decisions, outbox.trades,
                          outbox.counts, timeline.symbol.astype(np.int64), timeline.bar.astype(np.int64),
                          timeline.group_end.astype(np.int64), 60_000, skip_idle, False, False,
                          *symbol_arrays(prepared))
    return len(output[3])


def section_loops(bars: int, repeats: int) -> None:
    candles = tiled(SHARED / "BTC_USDT-1m.csv.gz", "BTC/USDT", bars)
    engine = BacktestEngine(candles)
    parameters = engine.parameters
    prepared = [compact_for_backtest(engine.prepare("BTC/USDT", None, parameters), parameters.risk)]
    python_trades, compiled_trades = python_loop(engine, prepared, parameters), compiled_loop(engine, prepared,
                                                                                                parameters)
    print(f"{bars:,} 1m bars, product strategy: {python_trades} trades (Python loop), {compiled_trades} (compiled)")
    peer = best_of(lambda: python_loop(engine, prepared, parameters), repeats)
    ours = best_of(lambda: compiled_loop(engine, prepared, parameters), repeats)
    ratio_line("bar loop (idle stretches jumped in both)", ours, peer, bars)
    every_bar = best_of(lambda: compiled_loop(engine, prepared, parameters, skip_idle=False), repeats)
    print(f"{'  compiled loop visiting every bar':<44} {every_bar / bars * 1e9:9.1f} ns/bar "
          f"(the idle jump saves {every_bar / ours:.1f}x)")
    python = engine.simulate(prepared, None, parameters)
    compiled = simulate_compiled(engine, prepared, None, parameters).result
    print(f"  results identical: {python.to_json() == compiled.to_json()}")
    peer = best_of(lambda: engine.simulate(prepared, None, parameters), repeats)
    ours = best_of(lambda: simulate_compiled(engine, prepared, None, parameters), repeats)
    ratio_line("simulate (loop + end of data + metrics)", ours, peer, bars)
    section_step(engine, prepared, parameters)


def section_step(engine: BacktestEngine, prepared: list, parameters: ParameterSet) -> None:  # type: ignore[type-arg]
    item = prepared[0]
    calls = min(len(item), 50_000)
    core = CompiledCore(parameters.risk, parameters.breaker.model_copy(update={"latching": []}),
                        engine.backtest_config, parameters.strategy.take_profit_atr_multiple,
                        [engine.market_limits[item.symbol]], engine.backtest_config.initial_capital)
    python = DecisionCore(parameters.risk, parameters.breaker, Portfolio(10_000.0), engine.market_limits)
    core.load(item, 0, 60_000)
    core.step(0)

    def load_all() -> None:
        for i in range(calls):
            core.load(item, i, 60_000)

    def step_all() -> None:  # the bar row stays loaded: the call itself (it empties the outbox first)
        for _ in range(calls):
            core.step(0)

    def python_all() -> None:
        for i in range(calls):
            python.on_bar(item, i, int(item.candles.open_time_ms[i]) + 60_000)
            python.pending.clear()

    def simulate_all() -> None:
        for i in range(calls):
            core.load(item, i, 60_000)
            core.simulate(0)

    ours, peer = best_of(step_all, 3), best_of(python_all, 3)
    ratio_line("step() per call vs DecisionCore.on_bar", ours, peer, calls, "us/call")
    print(f"{'  load() of a bar from the prepared arrays':<44} {best_of(load_all, 3) / calls * 1e6:9.2f} us/call")
    print(f"{'  load() + simulate() per bar (paper)':<44} {best_of(simulate_all, 3) / calls * 1e6:9.2f} us/call")


def section_ten_symbols() -> None:
    """The timeline driver: ten symbols of 525,600 1m bars on one shared equity (as ``bench_backtest.py``)."""
    data = {}
    for name in ("BTC", "ETH", "BNB", "SOL", "XRP"):
        path = SHARED / f"{name}_USDT-1m.csv.gz"
        length = len(read_candle_file(path, f"{name}/USDT", "1m"))
        data[f"{name}/USDT"] = tiled(path, f"{name}/USDT", YEAR_OF_MINUTES)
        data[f"{name}2/USDT"] = tiled(path, f"{name}2/USDT", YEAR_OF_MINUTES, rotate=length // 2)
    engine = BacktestEngine(data)
    parameters = engine.parameters
    prepared = [compact_for_backtest(engine.prepare(s, None, parameters), parameters.risk) for s in sorted(data)]
    items = len(merge_timeline(prepared, None))
    python = engine.simulate(prepared, None, parameters)
    compiled = simulate_compiled(engine, prepared, None, parameters).result
    print(f"10 symbols x 525,600 1m bars: {len(python.trades)} trades, results identical: "
          f"{python.to_json() == compiled.to_json()}")
    peer = best_of(lambda: python_loop(engine, prepared, parameters), 1)
    ours = best_of(lambda: compiled_loop(engine, prepared, parameters), 3)
    ratio_line("bar loop, 10 symbols (per timeline item)", ours, peer, items)
    print(f"{'  compiled loop, 10 symbols, total':<44} {ours:9.3f} s")


def section_compile() -> None:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        script = WARM_UP.format(root=str(ROOT))
        for label in ("first run (empty cache): compile", "cached start-up (cache filled)"):
            output = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                    check=True).stdout.split()
            total, run = float(output[0]), float(output[1])
            print(f"{label:<44} {run:8.2f} s first compiled run, {total:8.2f} s with imports")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    start = time.perf_counter()
    section_loops(130_708 if args.quick else YEAR_OF_MINUTES, 2 if args.quick else 3)
    if not args.quick:
        section_ten_symbols()
        section_compile()
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
