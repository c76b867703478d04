"""Provides the benchmark of resampling, the volume analyser and the multi-timeframe analyser against peers.

Data: the real Binance BTC/USDT 5m candles in ../shared/data/BTC_USDT-5m.csv.gz (207,624 rows, ~2 years).

Measured in the same run (best of a few repeats):
* ``resample`` 5m -> 1h vs the peer ``pandas.DataFrame.resample(...).agg(first/max/min/last/sum)``;
* ``VolumeAnalyzer.analyze`` (every measure, every bar) vs the peer: pandas rolling median of volume alone
  (one of its ~10 measures), and the newest-bar path ``analyze_latest`` per call;
* ``MultiTimeframeAnalyzer.prepare`` on the 5m base with 1h/4h/1d resampled inside, and ``latest_trends``
  per call (what live pays per closed bar).

Run: ``.venv/bin/python benchmarks/bench_analyzers.py``
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import timing  # benchmarks/timing.py: shared data path and best-of timing
from timing import BTC_5M_FILE

from engine.analysis.mtf import MultiTimeframeAnalyzer
from engine.analysis.volume import VolumeAnalyzer
from engine.data.csv_import import read_candle_file
from engine.domain.models import Candles
from engine.domain.timeframes import resample

DATA_FILE = BTC_5M_FILE
REPEATS = 3


def best_of(action: Callable[[], object], repeats: int = REPEATS) -> float:
    return timing.best_of(action, repeats)


def pandas_resample(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})


def main() -> None:
    candles: Candles = read_candle_file(DATA_FILE, "BTC/USDT", "5m")
    frame = pd.DataFrame(
        {name: getattr(candles, name) for name in ("open", "high", "low", "close", "volume")},
        index=pd.to_datetime(candles.open_time_ms, unit="ms", utc=True),
    )
    rows = len(candles)
    print(f"BTC/USDT 5m: {rows:,} candles")

    ours = best_of(lambda: resample(candles, "1h"))
    peer = best_of(lambda: pandas_resample(frame))
    print(
        f"resample 5m->1h     ours {ours * 1e3:8.1f} ms   pandas resample.agg {peer * 1e3:8.1f} ms   "
        f"ratio {peer / ours:5.1f}x"
    )

    volume = VolumeAnalyzer()
    ours = best_of(lambda: volume.analyze(candles))
    peer = best_of(lambda: frame["volume"].rolling(volume.lookback_periods).median())
    print(
        f"volume analyze      ours {ours * 1e3:8.1f} ms (all measures)   pandas rolling median only "
        f"{peer * 1e3:8.1f} ms   ratio {peer / ours:5.2f}x"
    )
    latest = best_of(lambda: volume.analyze_latest(candles), repeats=50)
    print(f"volume newest bar   {latest * 1e6:8.1f} us per call")

    mtf = MultiTimeframeAnalyzer(timeframes=("1h", "4h", "1d"))
    ours = best_of(lambda: mtf.prepare(candles))
    print(f"mtf prepare         {ours * 1e3:8.1f} ms for {rows:,} base bars ({ours / rows * 1e9:6.1f} ns/bar)")
    history = candles.slice(rows - 30_000)  # ~100 days of 5m history kept by a live feed
    cold = best_of(lambda: MultiTimeframeAnalyzer().latest_trends(history), repeats=5)
    mtf.latest_trends(history)
    warm = best_of(lambda: mtf.latest_trends(history), repeats=20)
    print(f"mtf newest bar      cold {cold * 1e3:6.1f} ms   memoised {warm * 1e3:6.1f} ms (30,000 bars of history)")


if __name__ == "__main__":
    main()
