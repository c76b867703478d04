"""Provides the indicator and signal-engine benchmark on 525,600 bars (one year of 1m bars) against peers.

Data: the real Binance BTC/USDT 5m candles in ../shared/data/BTC_USDT-5m.csv.gz (207,624 rows) tiled to
525,600 bars: each further copy is rescaled so its first open equals the previous copy's last close, so the
series has no jumps. It is a stress input of real bar-to-bar behaviour, NOT one real year of 1m data. If
the file is missing, a seeded geometric random walk is used instead (the script says which).

Each line: our best-of-N time, the peer's best-of-N time measured in the same run, and peer / ours (> 1
means we are faster). Peers: TA-Lib where it has the indicator; pandas-ta-classic for rma, keltner and the
squeeze; for Magic Trend (no library has it) TA-Lib's CCI and SMA(TRANGE) plus the Pine ratchet as a plain
Python loop. The target is < 50 ms per indicator on this machine.

Run: ``.venv/bin/python benchmarks/bench_indicators.py``
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import talib
import timing  # benchmarks/timing.py: shared data path and best-of timing
from timing import BTC_5M_FILE

from engine.analysis import indicators as ind
from engine.analysis.signals import SignalEngine
from engine.analysis.signals_live import IncrementalSignalEngine
from engine.domain.models import Candles

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pandas_ta_classic as pta

DATA_FILE = BTC_5M_FILE
BARS = 525_600
REPEATS = 5


def best_of(action: Callable[[], object], repeats: int = REPEATS) -> float:
    """Fastest run in milliseconds."""
    return timing.best_of(action, repeats) * 1e3


def load_bars() -> tuple[pd.DataFrame, str]:
    if not DATA_FILE.is_file():
        rng = np.random.default_rng(42)
        close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.001, BARS)))
        spread = close * rng.uniform(0, 0.002, BARS)
        frame = pd.DataFrame({"open": np.roll(close, 1), "close": close})
        frame["high"] = np.maximum(frame["open"], close) + spread
        frame["low"] = np.minimum(frame["open"], close) - spread
        frame["volume"] = rng.uniform(1, 100, BARS)
        frame["timestamp_ms"] = np.arange(BARS) * 60_000
        return frame, "synthetic geometric random walk (data file missing)"
    source = pd.read_csv(DATA_FILE)
    pieces, last_close = [], None
    while sum(len(piece) for piece in pieces) < BARS:
        piece = source.copy()
        if last_close is not None:
            scale = last_close / piece["open"].iloc[0]
            piece[["open", "high", "low", "close"]] *= scale
        last_close = piece["close"].iloc[-1]
        pieces.append(piece)
    frame = pd.concat(pieces, ignore_index=True).iloc[:BARS].copy()
    frame["timestamp_ms"] = np.arange(BARS, dtype=np.int64) * 60_000
    return frame, f"real BTC/USDT 5m ({len(source):,} rows) tiled to {BARS:,} bars, copies rescaled to join"


def pine_magic_trend_loop(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> list[float]:
    cci = talib.CCI(close, close, close, 20).tolist()
    atr = talib.SMA(talib.TRANGE(high, low, close), 5).tolist()
    out, prev = [], 0.0
    for lo, hi, c, a in zip(low.tolist(), high.tolist(), cci, atr, strict=True):
        up, down = lo - a, hi + a
        value = (prev if up < prev else up) if c >= 0 else (prev if down > prev else down)
        out.append(value)
        prev = 0.0 if math.isnan(value) else value
    return out


def main() -> None:
    frame, description = load_bars()
    high, low, close = (frame[column].to_numpy() for column in ("high", "low", "close"))
    h, lo, c = frame["high"], frame["low"], frame["close"]
    print(f"data: {description}")
    print(f"best of {REPEATS}; peer/ours > 1 means ours is faster\n")
    cases: list[tuple[str, Callable[[], object], str, Callable[[], object]]] = [
        (
            "true_range",
            lambda: ind.true_range(high, low, close),
            "talib.TRANGE",
            lambda: talib.TRANGE(high, low, close),
        ),
        ("sma(20)", lambda: ind.sma(close, 20), "talib.SMA", lambda: talib.SMA(close, 20)),
        ("ema(20)", lambda: ind.ema(close, 20), "talib.EMA", lambda: talib.EMA(close, 20)),
        ("ema(200)", lambda: ind.ema(close, 200), "talib.EMA", lambda: talib.EMA(close, 200)),
        ("rma(14)", lambda: ind.rma(close, 14), "pandas_ta_classic.rma", lambda: pta.rma(c, length=14)),
        ("stdev(20)", lambda: ind.stdev(close, 20), "talib.STDDEV", lambda: talib.STDDEV(close, 20, 1.0)),
        ("linreg(20)", lambda: ind.linreg(close, 20), "talib.LINEARREG", lambda: talib.LINEARREG(close, 20)),
        ("highest(20)", lambda: ind.highest(high, 20), "talib.MAX", lambda: talib.MAX(high, 20)),
        ("atr(14)", lambda: ind.atr(high, low, close, 14), "talib.ATR", lambda: talib.ATR(high, low, close, 14)),
        ("cci(close, 20)", lambda: ind.cci(close, 20), "talib.CCI(c,c,c)", lambda: talib.CCI(close, close, close, 20)),
        ("bollinger(20, 2)", lambda: ind.bollinger(close, 20, 2.0), "talib.BBANDS", lambda: talib.BBANDS(close, 20)),
        (
            "keltner(20, 1.5)",
            lambda: ind.keltner(high, low, close, 20, 1.5),
            "pandas_ta_classic.kc(sma)",
            lambda: pta.kc(h, lo, c, length=20, scalar=1.5, mamode="sma"),
        ),
        (
            "squeeze_momentum",
            lambda: ind.squeeze_momentum(high, low, close),
            "pandas_ta_classic.squeeze(LB)",
            lambda: pta.squeeze(h, lo, c, bb_std=1.5, lazybear=True),
        ),
        (
            "magic_trend",
            lambda: ind.magic_trend(high, low, close),
            "talib parts + python ratchet",
            lambda: pine_magic_trend_loop(high, low, close),
        ),
    ]
    print(f"{'indicator':<18} {'ours ms':>9} {'peer':<30} {'peer ms':>9} {'peer/ours':>9}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, ours, peer_name, peer in cases:
            ours_ms = best_of(ours)
            peer_ms = best_of(peer, repeats=1 if "python" in peer_name else REPEATS)
            flag = "" if ours_ms < 50 else "  (over 50 ms target)"
            print(f"{name:<18} {ours_ms:9.2f} {peer_name:<30} {peer_ms:9.2f} {peer_ms / ours_ms:9.2f}{flag}")

    candles = Candles("BTC/USDT", "5m", *(frame[k].to_numpy() for k in ("timestamp_ms", "open")), high, low, close,
                      frame["volume"].to_numpy())  # fmt: skip
    engine = SignalEngine()
    compute_ms = best_of(lambda: engine.compute(candles), repeats=3)
    print(f"\nSignalEngine.compute on {BARS:,} bars: {compute_ms:.1f} ms ({compute_ms / BARS * 1e3:.3f} us/bar)")
    live = IncrementalSignalEngine()
    prime_ms = best_of(lambda: IncrementalSignalEngine().prime(candles.slice(0, BARS - 2000)), repeats=1)
    live.prime(candles.slice(0, BARS - 2000))
    tail = candles.slice(BARS - 2000, None)
    start = time.perf_counter()
    live.update_candles(tail)
    per_bar_us = (time.perf_counter() - start) / len(tail) * 1e6
    print(f"IncrementalSignalEngine.prime({BARS - 2000:,} bars): {prime_ms:.1f} ms; update: {per_bar_us:.0f} us/bar")


if __name__ == "__main__":
    main()
