"""Benchmark of the backtester (plain script; prints timings and ratios measured in this run).

1. One year of 1m candles (525,600 bars) through the full decision path (prepare + bar loop + metrics),
   target < 2 s; the candles are real Binance BTC/USDT 1m (130,708 bars from ../shared/data) tiled four
   times, each copy rescaled to continue from the previous copy's last close, timestamps consecutive.
2. Ten symbols of 525,600 bars each on one shared equity (target < 20 s): the five real 1m files
   (BTC, ETH, BNB, SOL, XRP) tiled as above, plus each of them rotated by half a tile under a second name.
3. Peak memory (tracemalloc peak of the 10-symbol run and the process's max RSS), target < 1 GB.
4. SMA(20/50) cross with a 2 x ATR(14) stop, next-open fills, 0.1 % commission, 95 % of equity per trade,
   against backtesting.py (target: >= 10x faster) and vectorbt (target: at least as fast), on BTC/USDT 5m.
   Each of the three is timed after one warm-up call (vectorbt's numba compilation and backtesting.py's
   imports excluded), best of three runs.

Run: ``.venv/bin/python benchmarks/bench_backtest.py [--quick]`` (``--quick``: only sections 1 and 4).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import resource
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.backtest import BacktestEngine  # noqa: E402
from engine.backtest.sma_cross import run_sma_cross  # noqa: E402
from engine.config import BacktestConfig  # noqa: E402
from engine.data.csv_import import read_candle_file  # noqa: E402
from engine.domain.models import Candles  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
YEAR_OF_MINUTES = 525_600
MINUTE_MS = 60_000


def tiled(path: Path, symbol: str, bars: int, rotate: int = 0) -> Candles:
    source = read_candle_file(path, symbol.split("#")[0], "1m")
    columns = [np.roll(getattr(source, name), -rotate) for name in ("open", "high", "low", "close", "volume")]
    pieces: list[list[np.ndarray]] = [[] for _ in columns]
    scale = 1.0
    while sum(len(p) for p in pieces[0]) < bars:
        for k, column in enumerate(columns):
            pieces[k].append(column * scale if k < 4 else column)
        scale = pieces[3][-1][-1] / columns[0][0]
    start = int(source.open_time_ms[0])
    times = start + np.arange(bars, dtype=np.int64) * MINUTE_MS
    return Candles(symbol, "1m", times, *(np.concatenate(p)[:bars] for p in pieces))


def timed(label: str, fn, repeat: int = 1):  # type: ignore[no-untyped-def]
    best = float("inf")
    value = None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    print(f"{label:<58} {best:8.3f} s")
    return best, value


def section_one_symbol() -> None:
    candles = tiled(SHARED / "BTC_USDT-1m.csv.gz", "BTC/USDT", YEAR_OF_MINUTES)
    engine = BacktestEngine(candles)
    seconds, result = timed("1 symbol x 525,600 1m bars, full decision path", engine.run_backtest, repeat=3)
    prepare, _ = timed("  of which Strategy.prepare", lambda: engine.prepare("BTC/USDT", None), repeat=3)
    print(
        f"  trades {len(result.trades)}, bars/s {YEAR_OF_MINUTES / seconds:,.0f}, "
        f"target < 2 s: {'met' if seconds < 2 else 'MISSED'} (loop+metrics {seconds - prepare:.3f} s)"
    )


def section_ten_symbols() -> None:
    names = ["BTC", "ETH", "BNB", "SOL", "XRP"]
    data = {}
    for name in names:
        path = SHARED / f"{name}_USDT-1m.csv.gz"
        length = len(read_candle_file(path, f"{name}/USDT", "1m"))
        data[f"{name}/USDT"] = tiled(path, f"{name}/USDT", YEAR_OF_MINUTES)
        data[f"{name}2/USDT"] = tiled(path, f"{name}2/USDT", YEAR_OF_MINUTES, rotate=length // 2)
    engine = BacktestEngine(data)
    seconds, result = timed("10 symbols x 525,600 1m bars, one shared equity", engine.run_backtest)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  trades {len(result.trades)}, target < 20 s: {'met' if seconds < 20 else 'MISSED'}")
    # tracemalloc slows allocation several-fold, so memory is measured in a second, untimed run.
    tracemalloc.start()
    engine.run_backtest()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"  peak traced memory {peak / 2**20:,.0f} MB, process max RSS {rss_mb:,.0f} MB after the timed run "
        f"(target < 1 GB: {'met' if max(peak / 2**20, rss_mb) < 1024 else 'MISSED'})"
    )


def _frame(candles: Candles) -> pd.DataFrame:
    index = pd.to_datetime(candles.open_time_ms, unit="ms", utc=True).tz_localize(None)
    return pd.DataFrame(
        {
            "Open": candles.open,
            "High": candles.high,
            "Low": candles.low,
            "Close": candles.close,
            "Volume": candles.volume,
        },
        index=index,
    )


def ours(candles: Candles):  # type: ignore[no-untyped-def]
    return run_sma_cross(candles, BacktestConfig(initial_capital=1e7, commission_percent=0.1, slippage_percent=0.0))


def with_backtesting_py(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    from engine.analysis import indicators as ind

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            close = self.data.Close
            self.fast = self.I(ind.sma, close, 20)
            self.slow = self.I(ind.sma, close, 50)
            self.atr = self.I(ind.atr, self.data.High, self.data.Low, close, 14)

        def next(self) -> None:
            if not self.position and crossover(self.fast, self.slow):
                self.buy(size=0.95, sl=self.data.Close[-1] - 2.0 * self.atr[-1])
            elif self.position and crossover(self.slow, self.fast):
                self.position.close()

    # Its tqdm progress bar goes to stderr; it is kept (part of its cost) but not shown.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        stats = Backtest(frame, SmaCross, cash=1e7, commission=0.001, finalize_trades=True).run()
    return stats


def with_vectorbt(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    import vectorbt as vbt

    from engine.analysis import indicators as ind

    close = frame["Close"]
    fast = pd.Series(ind.sma(close.to_numpy(), 20), index=frame.index)
    slow = pd.Series(ind.sma(close.to_numpy(), 50), index=frame.index)
    atr = pd.Series(ind.atr(frame["High"].to_numpy(), frame["Low"].to_numpy(), close.to_numpy(), 14), index=frame.index)
    entries = (fast > slow) & (fast.shift(1) <= slow.shift(1))
    exits = (fast < slow) & (fast.shift(1) >= slow.shift(1))
    # Decided on the close, filled at the next open (as ours and backtesting.py): shift the signals by one bar.
    portfolio = vbt.Portfolio.from_signals(
        close,
        entries.shift(1, fill_value=False),
        exits.shift(1, fill_value=False),
        price=frame["Open"],
        open=frame["Open"],
        high=frame["High"],
        low=frame["Low"],
        sl_stop=(2.0 * atr / close).shift(1),
        size=0.95,
        size_type="percent",
        fees=0.001,
        init_cash=1e7,
    )
    return portfolio.trades.count(), portfolio.total_return(), portfolio.max_drawdown()


def section_peers(bars: int) -> None:
    candles = read_candle_file(SHARED / "BTC_USDT-5m.csv.gz", "BTC/USDT", "5m")
    candles = candles.slice(len(candles) - bars, None)
    frame = _frame(candles)
    print(f"SMA(20/50) cross + 2xATR stop on BTC/USDT 5m, {len(candles):,} bars")
    ours(candles)  # warm-up
    mine, result = timed("  tradebot (shared decision loop + metrics)", lambda: ours(candles), repeat=3)
    try:
        with_vectorbt(frame)  # warm-up: numba compilation
        vbt_s, vbt = timed("  vectorbt from_signals (warm)", lambda: with_vectorbt(frame), repeat=3)
    except ImportError:
        vbt_s, vbt = float("nan"), None
    try:
        with_backtesting_py(frame)  # warm-up: its first call imports backtesting.py (and bokeh), ~0.2 s
        bt_s, bt = timed("  backtesting.py (warm)", lambda: with_backtesting_py(frame), repeat=3)
    except ImportError:
        bt_s, bt = float("nan"), None
    print(
        f"  trades: tradebot {len(result.trades)}, vectorbt {vbt[0] if vbt else '-'}, "
        f"backtesting.py {bt['# Trades'] if bt is not None else '-'}"
    )
    print(
        f"  total return: tradebot {result.metrics.total_return:+.2%}, vectorbt "
        f"{vbt[1] if vbt else float('nan'):+.2%}, backtesting.py "
        f"{(bt['Return [%]'] / 100 if bt is not None else float('nan')):+.2%}"
    )
    print(f"  speed-up vs backtesting.py: {bt_s / mine:6.1f}x (target >= 10x)")
    print(f"  speed-up vs vectorbt:       {vbt_s / mine:6.2f}x (target >= 1x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peer-bars", type=int, default=100_000)
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"shared data not found at {SHARED}")
    section_one_symbol()
    if not args.quick:
        section_ten_symbols()
    section_peers(args.peer_bars)


if __name__ == "__main__":
    main()
