"""Specification of the backtester's compact prepared symbol: smaller, and the same for everything the loop reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.analysis.strategy import PreparedSymbol, StrategyParams
from engine.backtest import BacktestEngine
from engine.backtest.compact import compact_for_backtest
from engine.backtest.params import ParameterSet
from engine.config import RiskConfig
from engine.data.sample import load_sample

BARS = 3000
LOOP_ARRAYS = (
    "entry_direction", "entry_strength", "entry_multiplier", "exit_long", "exit_short", "atr",
    "volatility_ratio", "normal_volatility", "volatility_alarm",
)


def _nbytes(prepared: PreparedSymbol) -> int:
    total = 0
    for part in (prepared, prepared.signals, prepared.mtf, prepared.volume):
        if part is None:
            continue
        for item in dataclasses.fields(part):
            value = getattr(part, item.name)
            values = value.values() if isinstance(value, dict) else [value]
            # A zero-stride view owns no memory; count only arrays that own their data.
            total += sum(v.nbytes for v in values if isinstance(v, np.ndarray) and v.base is None)
    return total


@pytest.fixture(scope="module", params=["percent", "swing"])
def pair(request: pytest.FixtureRequest) -> tuple[PreparedSymbol, PreparedSymbol]:
    candles = load_sample("BTC/USDT", "1h").slice(0, BARS)
    risk = RiskConfig(trailing_policy=request.param)
    engine = BacktestEngine(candles, StrategyParams(allow_short=True), risk=risk)
    full = engine.prepare("BTC/USDT", None)
    return full, compact_for_backtest(full, risk)


def test_every_array_the_loop_indexes_is_unchanged(pair: tuple[PreparedSymbol, PreparedSymbol]) -> None:
    full, compact = pair
    for name in LOOP_ARRAYS:
        np.testing.assert_array_equal(getattr(compact, name), getattr(full, name), err_msg=name)


def test_swing_levels_are_kept_only_for_the_swing_policy() -> None:
    candles = load_sample("BTC/USDT", "1h").slice(0, BARS)
    for policy, kept in (("swing", True), ("percent", False), ("atr", False)):
        risk = RiskConfig(trailing_policy=policy)
        full = BacktestEngine(candles, risk=risk).prepare("BTC/USDT", None)
        compact = compact_for_backtest(full, risk)
        assert np.array_equal(compact.swing_low, full.swing_low, equal_nan=True) is kept
        assert np.array_equal(compact.swing_high, full.swing_high, equal_nan=True) is kept


def test_reasons_and_trends_are_the_same_at_every_bar(pair: tuple[PreparedSymbol, PreparedSymbol]) -> None:
    full, compact = pair
    for index in range(len(full)):
        assert compact.signals.signal_at(index).reasons == full.signals.signal_at(index).reasons
        assert compact.reasons_at(index) == full.reasons_at(index)


def test_the_compact_symbol_is_under_half_the_size(pair: tuple[PreparedSymbol, PreparedSymbol]) -> None:
    full, compact = pair
    assert _nbytes(compact) < _nbytes(full) / 2


def test_a_backtest_on_compact_symbols_equals_one_on_full_symbols() -> None:
    data = {s: load_sample(s, "1h").slice(0, BARS) for s in ("BTC/USDT", "ETH/USDT")}
    engine = BacktestEngine(data, StrategyParams(allow_short=True))
    full = [engine.prepare(s, None) for s in sorted(data)]
    parameters: ParameterSet = engine.parameters
    via_full = engine.simulate(full, None, parameters)
    assert engine.run_backtest().to_json() == via_full.to_json()
