"""Specification of paper == backtest to the last bit: the live decision inputs and trades are the backtest's.

The live path (:class:`engine.analysis.strategy_live.IncrementalPreparer`: the recursions carried one bar at a time,
the windows recomputed on the last bars) must give the very bytes ``Strategy.prepare`` gives over the same
bars, so that a paper replay and a backtest make byte-identical trades. The rule: primed on any prefix
(from one bar on) of a series and fed the rest, every PreparedSymbol array equals ``prepare`` over the whole
series bit for bit at every bar, warm-up included (the recursions seed on the same bars with the same
sum), because ``prepare`` is free of look-ahead and the live recursions run the vectorised functions' own
kernels one bar at a time (``tests/engine/test_indicators_live.py`` specifies each of them).

Time budget: ~60 s for this file on the idle 2-core machine, 40 s of it the replay (a bar costs the
preparer ~3 ms, the volume and squeeze windows, and the runtime ~4.5 ms). So: each bundled series is primed
on all but its last ``TAIL_BARS`` bars (the carried recursions then run over them; before the fix about
half of any such stretch differed in the last bits); one series is fed from bar 30 through every seed (1d
emas included); the adversarial series are fed from bar 30; the longest real history in ../shared/data
(BTC/USDT 5m, 207,624 bars; skipped when absent) is checked on its last ``TAIL_BARS`` bars; and the real
runtime replays one whole bundled series (``REPLAYED``, one of the two shortest) against the backtester.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.analysis.strategy import PreparedSymbol, Strategy, StrategyParams
from engine.analysis.strategy_live import IncrementalPreparer
from engine.backtest.engine import BacktestEngine
from engine.data.csv_import import read_candle_file
from engine.data.sample import load_sample, sample_files
from engine.domain.models import Candles, ClosedTrade
from engine.runtime.engine import build_engine
from tests.engine.prepared_columns import default_strategy, prepared_columns
from tests.engine.runtime_helpers import make_settings
from tests.shared_data import shared_data_path

TAIL_BARS = 150
HOUR_MS = 3_600_000
BUNDLED = [(sample.symbol, sample.timeframe) for sample in sample_files()]
REPLAYED = ("BTC/USDT", "5m")  # the whole series goes through the runtime (~8,900 bars)
WARMUP = 500  # the replay's warm-up bars, as in test_runtime


def _first_difference(got: np.ndarray, want: np.ndarray) -> str:
    width = got.dtype.itemsize
    unequal = np.flatnonzero((got.view(np.uint8).reshape(-1, width) != want.view(np.uint8).reshape(-1, width)).any(1))
    index = int(unequal[0])
    shown = [float(v).hex() if isinstance(v, float) else repr(v) for v in (got[index].item(), want[index].item())]
    return f"{len(unequal)} bars differ, first at {index}: live {shown[0]} vs vectorised {shown[1]}"


def assert_bit_identical(live: PreparedSymbol, vectorised: PreparedSymbol) -> None:
    """Every array of ``live`` has the bytes of the same bars of ``vectorised`` (its last len(live) bars)."""
    got, want = prepared_columns(live), prepared_columns(vectorised)
    assert got.keys() == want.keys()
    for name, values in want.items():
        expected = np.ascontiguousarray(values[len(values) - len(live) :])
        actual = np.ascontiguousarray(got[name])
        assert actual.dtype == expected.dtype, name
        if expected.dtype.kind == "f":
            np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{name}: NaN positions")
        assert actual.tobytes() == expected.tobytes(), f"{name}: {_first_difference(actual, expected)}"


def _prime_and_feed(
    strategy: Strategy, candles: Candles, prime_bars: int, max_bars: int | None = None
) -> PreparedSymbol:
    """The preparer primed on the first ``prime_bars`` bars, fed the rest; holding every bar unless ``max_bars``."""
    held = max(max_bars or len(candles), IncrementalPreparer.bars_needed(strategy))
    preparer = IncrementalPreparer(strategy, max_bars=held)
    preparer.prime(candles.slice(0, prime_bars))
    return preparer.update_candles(candles.slice(prime_bars, len(candles)))


# --- the preparer on real series --------------------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "timeframe"), BUNDLED, ids=[f"{s}-{t}" for s, t in BUNDLED])
def test_every_bundled_series_fed_bar_by_bar_is_bit_identical_to_prepare(symbol: str, timeframe: str) -> None:
    candles = load_sample(symbol, timeframe)
    strategy = default_strategy()
    live = _prime_and_feed(strategy, candles, len(candles) - TAIL_BARS)
    vectorised = strategy.prepare(candles)
    assert np.count_nonzero(np.isfinite(vectorised.atr[-TAIL_BARS:])) == TAIL_BARS
    assert_bit_identical(live, vectorised)


def test_a_series_fed_from_its_thirtieth_bar_is_bit_identical_through_every_seed() -> None:
    candles = load_sample("ETH/USDT", "1h").slice(0, 1300)  # the 1d ema(50) seeds at bar ~1,220
    strategy = default_strategy()
    vectorised = strategy.prepare(candles)
    assert np.count_nonzero(vectorised.mtf.trends["1d"]) > 0, "the daily trend must start inside the fed bars"
    assert_bit_identical(_prime_and_feed(strategy, candles, 30), vectorised)


def test_the_longest_real_history_is_bit_identical_on_its_last_bars() -> None:
    # 207,624 BTC/USDT 5m bars (2024-03 .. 2026-02): every recursion has run ~200k steps before the tail.
    candles = read_candle_file(shared_data_path("BTC_USDT-5m.csv.gz"), "BTC/USDT", "5m")
    strategy = default_strategy()
    live = _prime_and_feed(strategy, candles, len(candles) - TAIL_BARS, max_bars=2 * TAIL_BARS)
    assert_bit_identical(live, strategy.prepare(candles))


# --- the preparer on adversarial series -------------------------------------------------------------------


def _candles(close: np.ndarray, volume: np.ndarray, times: np.ndarray, seed: int = 1) -> Candles:
    rng = np.random.default_rng(seed)
    opened = np.concatenate([close[:1], close[:-1]])
    wick = rng.uniform(0.0, 0.004, len(close))
    high = np.maximum(opened, close) * (1 + wick)
    low = np.minimum(opened, close) * (1 - wick[::-1])
    flat = np.concatenate([[False], close[1:] == close[:-1]])  # a flat run: identical prices, no range
    high[flat], low[flat], opened[flat] = close[flat], close[flat], close[flat]
    return Candles("TEST/USDT", "1h", times, opened, high, low, close, volume)


def _walk(length: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.012, length)))
    volume = rng.lognormal(3.0, 1.0, length)
    times = 1_700_000_000_000 - 1_700_000_000_000 % (24 * HOUR_MS) + 5 * HOUR_MS + np.arange(length) * HOUR_MS
    return close, volume, times.astype(np.int64)


def _flat_runs(length: int) -> Candles:
    close, volume, times = _walk(length, seed=2)
    for start, stop in ((150, 230), (260, 281), (320, 326), (335, 338)):  # longer than, equal to, shorter than windows
        close[start:stop] = close[start - 1]
    return _candles(close, volume, times)


def _spikes(length: int) -> Candles:
    close, volume, times = _walk(length, seed=3)
    close[220] *= 50.0  # a 50x print, back the next bar
    close[300:302] /= 50.0  # a 50x drop for two bars
    volume[220] *= 50.0
    return _candles(close, volume, times)


def _gaps(length: int) -> Candles:
    close, volume, times = _walk(length + 140, seed=4)
    keep = np.ones(len(close), dtype=bool)
    for start, stop in ((100, 103), (200, 224), (300, 372), (450, 451), (470, 480)):  # hours, a day, 3 days
        keep[start:stop] = False
    return _candles(close[keep], volume[keep], times[keep])


def _tiny_prices_zero_volume(length: int) -> Candles:
    close, volume, times = _walk(length, seed=5)
    volume[::3] = 0.0
    volume[250:330] = 0.0
    return _candles(close * 1e-10, volume, times)  # prices ~1e-8, like a satoshi pair


ADVERSARIAL = {"flat-runs": _flat_runs, "spikes": _spikes, "time-gaps": _gaps,
               "tiny-prices-and-zero-volume": _tiny_prices_zero_volume}
SHORT_EMAS = StrategyParams(mtf_ema_fast=3, mtf_ema_slow=5, allow_short=True)  # every timeframe's ema seeds


@pytest.mark.parametrize("build", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_adversarial_series_fed_bar_by_bar_are_bit_identical_to_prepare(build: Any) -> None:
    candles = build(350)
    strategy = default_strategy(StrategyParams(allow_short=True))
    vectorised = strategy.prepare(candles)
    assert np.count_nonzero(vectorised.signals.signal) > 0
    assert_bit_identical(_prime_and_feed(strategy, candles, 30), vectorised)


def test_a_flat_run_keeps_the_magic_trend_direction_of_every_timeframe_as_prepare() -> None:
    # A flat close window has no cci (NaN): a started Magic Trend then points down, as in Pine; it must not
    # fall back to "warming up" (the live trend said 0 on 65 of these 1h bars before the fix).
    candles = _flat_runs(400)
    strategy = default_strategy(StrategyParams(mtf_trend_method="magic_trend"))
    vectorised = strategy.prepare(candles)
    assert (vectorised.mtf.trends["1h"][170:230] == -1).all()  # every 20-bar close window flat: no cci
    assert_bit_identical(_prime_and_feed(strategy, candles, 100), vectorised)


@pytest.mark.parametrize("prime_bars", [1, 13, 21])
def test_priming_on_any_prefix_of_a_flat_start_is_bit_identical(prime_bars: int) -> None:
    candles = _flat_runs(400).slice(140, 260)  # starts just before a flat run: cci and stdev windows flat
    strategy = default_strategy(SHORT_EMAS)
    assert_bit_identical(_prime_and_feed(strategy, candles, prime_bars), strategy.prepare(candles))


# --- the paper replay against the backtester --------------------------------------------------------------


def _trade_bytes(trades: list[ClosedTrade]) -> bytes:
    """The trades as JSON with every float as float.hex (every bit kept)."""
    def encode(value: Any) -> Any:
        if isinstance(value, float):
            return value.hex()
        return value.value if isinstance(value, enum.Enum) else value

    rows = [{k: encode(v) for k, v in dataclasses.asdict(trade).items()} for trade in trades]
    return json.dumps(rows, sort_keys=True).encode()


async def test_a_paper_replay_of_a_whole_bundled_series_makes_byte_identical_trades(tmp_path: Path) -> None:
    symbol, timeframe = REPLAYED
    candles = load_sample(symbol, timeframe)
    settings = make_settings(tmp_path, [symbol], exchange={"base_timeframe": timeframe})
    engine = build_engine(settings, series={symbol: candles}, replay_speed=float("inf"), warmup_bars=WARMUP,
                          snapshot_rate_hz=50.0, stop_when_replay_done=True)
    await asyncio.wait_for(engine.run(), 240)

    backtest = BacktestEngine({symbol: candles}, settings=engine.settings, unattended=True)
    result = backtest.run_backtest(start=int(candles.open_time_ms[WARMUP]))
    expected = [record.trade for record in result.trades if record.exit_kind != "end_of_data"]

    assert len(expected) >= 5, "the series must hold trades for the comparison to mean anything"
    assert _trade_bytes(engine.portfolio.closed_trades) == _trade_bytes(expected)
