"""The differential corpus of the compiled core: series, configurations, and the run-and-compare helpers.

Series: bundled 1h and 5m candles, and synthetic adversarial ones (flat runs, x25 spikes, gaps, prices of
0.0004 with matching ticks, a symbol with missing bars). Configurations: the quiet-path check's six plus low
breaker thresholds, latching breakers (attended) and the SMA cross workload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.analysis.strategy import PreparedSymbol, StrategyParams
from engine.backtest import BacktestEngine
from engine.backtest.compact import compact_for_backtest
from engine.backtest.params import ParameterSet
from engine.backtest.result import BacktestResult
from engine.backtest.sma_cross import prepare_sma_cross, sma_cross_breaker, sma_cross_risk
from engine.config import BreakerConfig, RiskConfig
from engine.data.csv_import import read_candle_file
from engine.data.sample import load_sample
from engine.domain.models import Candles, MarketLimits
from tests.shared_data import shared_data_path

HOUR_MS = 3_600_000
BARS = 3000
REAL_BARS = 40_000  # of the real 1m/5m/1h files in ../shared/data (skipped when absent)


@dataclass(frozen=True)
class Config:
    risk: dict[str, Any] = field(default_factory=dict)
    strategy: dict[str, Any] = field(default_factory=dict)
    breaker: dict[str, Any] = field(default_factory=dict)
    unattended: bool = True
    sma_cross: bool = False


CONFIGS: dict[str, Config] = {
    "percent": Config(risk={"trailing_policy": "percent", "trailing_stop_activation_percent": 0.5}),
    "percent_no_target_shorts": Config(
        risk={"trailing_policy": "percent", "trailing_stop_activation_percent": 0.3,
              "trailing_stop_distance_percent": 0.8},
        strategy={"take_profit_atr_multiple": 0.0, "allow_short": True},
    ),
    "atr": Config(risk={"trailing_policy": "atr", "chandelier_atr_multiple": 1.5}, strategy={"allow_short": True}),
    "atr_no_target": Config(risk={"trailing_policy": "atr"}, strategy={"take_profit_atr_multiple": 0.0}),
    "swing": Config(risk={"trailing_policy": "swing", "swing_lookback": 3}, strategy={"allow_short": True}),
    "tight_limits": Config(
        risk={"trailing_policy": "percent", "max_daily_loss_percent": 0.5, "max_drawdown_percent": 1.5,
              "risk_per_trade_percent": 2.0, "max_position_size_percent": 100.0},
        strategy={"allow_short": True},
    ),
    "low_breakers": Config(
        risk={"trailing_policy": "percent", "trailing_stop_activation_percent": 0.3},
        strategy={"allow_short": True},
        breaker={"volatility_multiplier": 1.3, "volatility_lookback": 20, "max_consecutive_losses": 1,
                 "daily_loss_percent": 0.3, "cooldown_s": 3600.0, "half_open_size_ratio": 0.25},
    ),
    "latching_attended": Config(
        risk={"trailing_policy": "atr"}, strategy={"allow_short": True},
        breaker={"max_consecutive_losses": 2, "latching": ["loss", "volatility"], "volatility_multiplier": 1.5},
        unattended=False,
    ),
    "sma_cross": Config(sma_cross=True),
}


def _candles(symbol: str, times: np.ndarray, close: np.ndarray, rng: np.random.Generator) -> Candles:
    opens = np.concatenate(([close[0]], close[:-1]))
    wiggle = np.abs(rng.normal(0.0, 0.004, len(close)))
    high = np.maximum(opens, close) * (1.0 + wiggle)
    low = np.minimum(opens, close) * (1.0 - wiggle)
    volume = rng.lognormal(3.0, 0.6, len(close))
    return Candles(symbol, "1h", times.astype(np.int64), opens, high, low, close, volume)


def adversarial(symbol: str, seed: int, price: float = 100.0, bars: int = BARS) -> Candles:
    """A random walk with flat runs, x25 spikes (up and down wicks) and opening gaps."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0, 0.01, bars)))
    for start in range(300, bars, 700):
        close[start:start + 120] = close[start]  # a flat run: open == high == low == close
    candles = _candles(symbol, 1_600_000_000_000 + np.arange(bars) * HOUR_MS, close, rng)
    opens, high, low = candles.open.copy(), candles.high.copy(), candles.low.copy()
    for start in range(300, bars, 700):
        opens[start:start + 120] = high[start:start + 120] = low[start:start + 120] = close[start]
    for k in range(150, bars, 400):
        high[k] = max(opens[k], close[k]) * 25.0  # a x25 spike up
        low[k + 7] = min(opens[k + 7], close[k + 7]) / 25.0  # and down
    for k in range(90, bars, 333):
        gap = 1.2 if k % 2 else 0.8
        opens[k] = close[k - 1] * gap  # an opening gap through any stop or target
        high[k] = max(high[k], opens[k])
        low[k] = min(low[k], opens[k])
    return Candles(symbol, "1h", candles.open_time_ms, opens, high, low, close, candles.volume)


def with_missing_bars(candles: Candles, seed: int) -> Candles:
    """The same series with a few hundred bars left out (an exchange outage: a time gap)."""
    keep = np.ones(len(candles), dtype=bool)
    rng = np.random.default_rng(seed)
    for start in rng.integers(100, len(candles) - 200, 6):
        keep[start:start + int(rng.integers(5, 60))] = False
    return Candles(candles.symbol, candles.timeframe, candles.open_time_ms[keep], candles.open[keep],
                   candles.high[keep], candles.low[keep], candles.close[keep], candles.volume[keep])


FIVE = ("BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT", "XRP/USDT")
TINY_LIMITS = MarketLimits("TINY/USDT", lot_step=1.0, tick_size=1e-8, min_qty=1.0, min_notional=5.0)


def series(name: str) -> tuple[dict[str, Candles], dict[str, MarketLimits]]:
    """The candles (by symbol) and market limit overrides of one corpus series."""
    if name == "sample_1h_pair":
        return {s: load_sample(s, "1h").slice(0, BARS) for s in ("BTC/USDT", "ETH/USDT")}, {}
    if name == "sample_1h_five":
        return {s: load_sample(s, "1h").slice(0, BARS) for s in FIVE}, {}
    if name.startswith("sample_1h_"):
        symbol = name.removeprefix("sample_1h_").replace("_", "/")
        return {symbol: load_sample(symbol, "1h").slice(0, BARS)}, {}
    if name.startswith("sample_5m_"):
        symbol = name.removeprefix("sample_5m_").replace("_", "/")
        return {symbol: load_sample(symbol, "5m")}, {}
    if name.startswith("real_"):
        _, timeframe, file_symbol, *rest = name.split("_")
        symbol = f"{file_symbol}/{rest[0]}"
        path = shared_data_path(f"{file_symbol}_{rest[0]}-{timeframe}.csv.gz")
        candles = read_candle_file(path, symbol, timeframe)
        return {symbol: candles.slice(0, REAL_BARS)}, {}
    if name == "synthetic":
        return {"SYN/USDT": adversarial("SYN/USDT", 7)}, {}
    if name == "synthetic_tiny_price":
        return {"TINY/USDT": adversarial("TINY/USDT", 11, price=0.0004)}, {"TINY/USDT": TINY_LIMITS}
    if name == "synthetic_three_with_gaps":
        return {"AAA/USDT": adversarial("AAA/USDT", 3), "BBB/USDT": with_missing_bars(adversarial("BBB/USDT", 4), 5),
                "TINY/USDT": adversarial("TINY/USDT", 6, price=0.0004)}, {"TINY/USDT": TINY_LIMITS}
    raise KeyError(name)


REAL_SERIES = ("real_1m_BTC_USDT", "real_5m_ETH_USDT", "real_5m_ADA_BTC", "real_1h_DOGE_USDT")
SERIES = ("sample_1h_BTC_USDT", "sample_1h_ETH_USDT", "sample_1h_BNB_USDT", "sample_1h_SOL_USDT",
          "sample_1h_XRP_USDT", "sample_1h_pair", "sample_1h_five", "sample_5m_BTC_USDT", "sample_5m_ETH_USDT",
          "synthetic",
          "synthetic_tiny_price", "synthetic_three_with_gaps")


def setup(series_name: str, config_name: str) -> tuple[BacktestEngine, list[PreparedSymbol], ParameterSet]:
    """The engine, compact prepared symbols and parameters of one corpus case, as ``run_backtest`` builds them."""
    data, limits = series(series_name)
    config = CONFIGS[config_name]
    if config.sma_cross:
        risk, breaker = sma_cross_risk(), sma_cross_breaker()
        strategy = StrategyParams(take_profit_atr_multiple=0.0)
    else:
        risk = RiskConfig(**config.risk)
        breaker = BreakerConfig(**config.breaker)
        strategy = StrategyParams(**config.strategy)
    engine = BacktestEngine(data, strategy, risk=risk, breaker=breaker, market_limits=limits,
                            unattended=config.unattended)
    parameters = ParameterSet(strategy, risk, breaker)
    if config.sma_cross:
        prepared = [prepare_sma_cross(data[s], atr_period=risk.atr_lookback) for s in sorted(data)]
    else:
        prepared = [compact_for_backtest(engine.prepare(s, None, parameters), risk) for s in sorted(data)]
    return engine, prepared, parameters


def bits(value: Any) -> Any:
    """``value`` with every float replaced by its IEEE bits (so -0.0, NaN payloads and ulps all count)."""
    if isinstance(value, float | np.floating):
        return struct.pack("<d", float(value)).hex()
    if isinstance(value, tuple | list):
        return tuple(bits(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return (type(value).__name__, *(bits(getattr(value, f)) for f in value.__dataclass_fields__))
    return value


def differences(python: BacktestResult, compiled: BacktestResult) -> list[str]:
    """What differs between two results, bit for bit (empty: identical)."""
    found = []
    if len(python.trades) != len(compiled.trades):
        found.append(f"trade count {len(python.trades)} != {len(compiled.trades)}")
    for k, (a, b) in enumerate(zip(python.trades, compiled.trades, strict=False)):
        if bits(a) != bits(b):
            found.append(f"trade {k}: {a} != {b}")
            break
    if python.event_counts != compiled.event_counts:
        found.append(f"event counts {python.event_counts} != {compiled.event_counts}")
    if python.rejected_orders != compiled.rejected_orders:
        found.append(f"rejected orders {python.rejected_orders} != {compiled.rejected_orders}")
    if not np.array_equal(python.equity.view(np.int64), compiled.equity.view(np.int64)):
        first = int(np.flatnonzero(python.equity.view(np.int64) != compiled.equity.view(np.int64))[0])
        found.append(f"equity differs first at sample {first}")
    if not np.array_equal(python.in_market, compiled.in_market):
        found.append("in-market samples differ")
    if not np.array_equal(python.equity_time_ms, compiled.equity_time_ms):
        found.append("sample times differ")
    if not found and python.to_json() != compiled.to_json():
        found.append("result JSON differs")
    return found
