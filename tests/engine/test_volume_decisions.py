"""Specification of the volume rules in the entry decision: breakout volume, institutional activity, divergence."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.mtf import MtfFrame
from engine.analysis.signals import SIGNAL_LONG, SIGNAL_NONE, SIGNAL_SHORT, SignalFrame
from engine.analysis.strategy import EntriesAndExits, PreparedSymbol, Strategy, StrategyParams, fold_entries_and_exits
from engine.analysis.strategy_live import IncrementalPreparer
from engine.analysis.volume import VolumeAnalyzer, VolumeFrame
from engine.analysis.volume_rules import (
    CANDIDATE,
    DOWNSIZED_DIVERGENCE,
    DOWNSIZED_INSTITUTIONAL,
    VETOED_BREAKOUT_VOLUME,
    VETOED_DIVERGENCE,
    VETOED_INSTITUTIONAL,
    volume_rule_counts,
)
from engine.backtest import BacktestEngine
from engine.config import Settings
from engine.data.sample import load_sample
from engine.domain.models import Candles

IGNORE_ALL: dict[str, Any] = {
    "breakout_volume_rule": "ignore",
    "institutional_against_action": "ignore",
    "divergence_against_action": "ignore",
}
T0 = 1_735_689_600_000
HOUR_MS = 3_600_000


def _frames(
    signal: int = SIGNAL_LONG, strength: float = 0.8, **volume: float
) -> tuple[SignalFrame, MtfFrame, VolumeFrame]:
    """One bar with ``signal`` of ``strength``, aligned timeframes and an ordinary (1.2x median) volume bar."""
    times = np.array([T0], dtype=np.int64)

    def one(value: float, dtype: Any = np.float64) -> np.ndarray:
        return np.array([value], dtype=dtype)

    signals = SignalFrame(
        "TEST/USDT", "1h", times, one(signal, np.int8), one(strength), one(1.0), one(0.1),
        one(False, np.bool_), one(True, np.bool_), one(5, np.int64), one(1, np.int8), one(100.0), one(1.0),
        one(0, np.int8),
    )
    mtf = MtfFrame(times, ("1h",), {"1h": one(1, np.int8)}, one(1.0), one(1.0), one(False, np.bool_),
                   one(False, np.bool_))
    values: dict[str, Any] = {
        "relative_volume": 1.2, "move_direction": signal if signal in (1, -1) else 0, "body_direction": 1,
        "confirmation_strength": 0.4, "spike": False, "spike_strength": 0.2, "breakout_direction": 0,
        "breakout_strength": 0.0, "breakout_level": 100.0, "divergence_direction": 0, "divergence_strength": 0.0,
        "divergence_volume_ratio": 1.0, "volume_strength": 0.6, "recent_spike_direction": 0,
        "recent_divergence_direction": 0,
    }
    values.update(volume)
    types = {f.name: f.type for f in dataclasses.fields(VolumeFrame)}
    columns = {
        name: one(value, np.int8 if "Int8" in str(types[name]) else np.bool_ if "Bool" in str(types[name]) else None)
        for name, value in values.items()
    }
    return signals, mtf, VolumeFrame(times, **columns)


def _fold(params: StrategyParams | None = None, signal: int = SIGNAL_LONG, **volume: float) -> EntriesAndExits:
    return fold_entries_and_exits(params or StrategyParams(), *_frames(signal, **volume))


def _only(**changes: Any) -> StrategyParams:
    """Every volume rule ignored except the changed ones."""
    return StrategyParams(**{**IGNORE_ALL, **changes})


# --- breakout volume -------------------------------------------------------------------------------------------


def test_a_breakout_on_volume_below_the_minimum_is_vetoed() -> None:
    entries = _fold(_only(breakout_volume_rule="relative_volume", breakout_min_relative_volume=1.0),
                    relative_volume=0.7)
    assert entries.direction[0] == 0 and entries.strength[0] == 0.0
    assert entries.volume_rule_effect[0] == CANDIDATE | VETOED_BREAKOUT_VOLUME


def test_a_breakout_on_enough_volume_enters() -> None:
    entries = _fold(_only(breakout_volume_rule="relative_volume", breakout_min_relative_volume=1.0),
                    relative_volume=1.0)
    assert entries.direction[0] == 1
    assert entries.volume_rule_effect[0] == CANDIDATE


def test_a_breakout_with_unknown_volume_in_warm_up_is_vetoed() -> None:
    assert _fold(_only(breakout_volume_rule="relative_volume"), relative_volume=np.nan).direction[0] == 0


def test_the_volume_breakout_rule_needs_the_analysers_breakout_in_the_signals_direction() -> None:
    params = _only(breakout_volume_rule="volume_breakout", allow_short=True)
    assert _fold(params, relative_volume=3.0, breakout_direction=0).direction[0] == 0
    assert _fold(params, relative_volume=3.0, breakout_direction=-1).direction[0] == 0
    assert _fold(params, relative_volume=3.0, breakout_direction=1).direction[0] == 1
    assert _fold(params, SIGNAL_SHORT, relative_volume=3.0, breakout_direction=-1).direction[0] == -1


# --- institutional activity and divergence against the signal ---------------------------------------------------


def test_institutional_selling_against_a_long_downsizes_it_by_the_ratio() -> None:
    params = _only(institutional_against_action="downsize", institutional_downsize_ratio=0.4)
    plain, sold = _fold(params), _fold(params, recent_spike_direction=-1)
    assert sold.direction[0] == 1
    assert sold.strength[0] == pytest.approx(0.4 * plain.strength[0])
    assert sold.volume_rule_effect[0] == CANDIDATE | DOWNSIZED_INSTITUTIONAL


def test_institutional_selling_against_a_long_vetoes_it_when_so_set() -> None:
    entries = _fold(_only(institutional_against_action="veto"), recent_spike_direction=-1)
    assert entries.direction[0] == 0
    assert entries.volume_rule_effect[0] == CANDIDATE | VETOED_INSTITUTIONAL


def test_institutional_buying_does_not_touch_a_long_and_is_against_a_short() -> None:
    params = _only(institutional_against_action="veto", allow_short=True)
    assert _fold(params, recent_spike_direction=1).direction[0] == 1
    assert _fold(params, SIGNAL_SHORT, recent_spike_direction=1).direction[0] == 0
    assert _fold(params, SIGNAL_SHORT, recent_spike_direction=-1).direction[0] == -1


def test_a_bearish_divergence_against_a_long_downsizes_or_vetoes_per_the_parameter() -> None:
    downsized = _fold(_only(divergence_against_action="downsize", divergence_downsize_ratio=0.5),
                      recent_divergence_direction=-1)
    vetoed = _fold(_only(divergence_against_action="veto"), recent_divergence_direction=-1)
    plain = _fold(_only())
    assert downsized.direction[0] == 1 and downsized.strength[0] == pytest.approx(0.5 * plain.strength[0])
    assert downsized.volume_rule_effect[0] == CANDIDATE | DOWNSIZED_DIVERGENCE
    assert vetoed.direction[0] == 0 and vetoed.volume_rule_effect[0] == CANDIDATE | VETOED_DIVERGENCE


def test_a_bullish_divergence_is_against_a_short_only() -> None:
    params = _only(divergence_against_action="veto", allow_short=True)
    assert _fold(params, recent_divergence_direction=1).direction[0] == 1
    assert _fold(params, SIGNAL_SHORT, recent_divergence_direction=1).direction[0] == 0


def test_two_downsizing_rules_multiply_and_a_vetoed_entry_is_not_counted_as_downsized() -> None:
    params = StrategyParams(institutional_downsize_ratio=0.5, divergence_downsize_ratio=0.5)
    both = _fold(params, relative_volume=1.5, recent_spike_direction=-1, recent_divergence_direction=-1)
    plain = _fold(params, relative_volume=1.5)
    assert both.strength[0] == pytest.approx(0.25 * plain.strength[0])
    vetoed = _fold(params, relative_volume=0.5, recent_spike_direction=-1, recent_divergence_direction=-1)
    assert vetoed.volume_rule_effect[0] == CANDIDATE | VETOED_BREAKOUT_VOLUME


def test_a_downsized_entry_enters_even_below_the_minimum_strength() -> None:
    # The minimum judges the signal; the downsizing only sizes the position.
    params = _only(divergence_against_action="downsize", divergence_downsize_ratio=0.1, min_entry_strength=0.2)
    entries = _fold(params, recent_divergence_direction=-1)
    assert entries.direction[0] == 1 and 0 < entries.strength[0] < 0.2


def test_ignore_restores_the_rule_without_volume_decisions() -> None:
    against: dict[str, Any] = {"relative_volume": 0.1, "recent_spike_direction": -1, "recent_divergence_direction": -1}
    assert _fold(_only(**IGNORE_ALL), **against).strength[0] == _fold(_only()).strength[0]
    assert _fold(_only(**IGNORE_ALL), **against).volume_rule_effect[0] == CANDIDATE


def test_bars_without_an_entry_signal_carry_no_volume_rule_code() -> None:
    entries = _fold(StrategyParams(), SIGNAL_NONE, relative_volume=0.1, recent_spike_direction=-1)
    assert entries.direction[0] == 0 and entries.volume_rule_effect[0] == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("breakout_volume_rule", "loud"),
        ("breakout_min_relative_volume", 0.0),
        ("institutional_against_action", "panic"),
        ("institutional_downsize_ratio", 0.0),
        ("institutional_downsize_ratio", 1.5),
        ("institutional_memory_bars", 0),
        ("divergence_against_action", "Veto"),
        ("divergence_downsize_ratio", -0.5),
        ("divergence_memory_bars", 2.5),
    ],
)
def test_an_invalid_volume_rule_parameter_is_rejected_by_name(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"StrategyParams.{name} "):
        StrategyParams(**{name: value})


# --- the volume frame's memories -------------------------------------------------------------------------------


def _candles(close: np.ndarray, open_: np.ndarray, volume: np.ndarray) -> Candles:
    high, low = np.maximum(open_, close) + 0.5, np.minimum(open_, close) - 0.5
    return Candles("TEST/USDT", "1h", T0 + HOUR_MS * np.arange(len(close)), open_, high, low, close, volume)


def _random_candles(count: int, seed: int) -> Candles:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, count))
    volume = rng.lognormal(3.0, 0.8, count) * np.where(rng.random(count) < 0.1, 6.0, 1.0)
    return _candles(close, np.r_[close[0], close[:-1]], volume)


MEMORY = VolumeAnalyzer(lookback_periods=10, breakout_lookback=5, divergence_lookback=5, divergence_window=3,
                        spike_memory=4, divergence_memory=3)


def test_a_spike_is_remembered_for_its_memory_and_superseded_by_a_later_one() -> None:
    close = np.full(30, 100.0)
    open_ = close.copy()
    volume = np.full(30, 10.0)
    open_[15], volume[15] = 101.0, 50.0  # a selling spike (close below open)
    open_[22], volume[22] = 99.0, 50.0  # a buying spike
    frame = MEMORY.analyze(_candles(close, open_, volume))
    assert list(frame.recent_spike_direction[14:20]) == [0, -1, -1, -1, -1, 0]
    assert list(frame.recent_spike_direction[22:27]) == [1, 1, 1, 1, 0]


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=90), st.integers(min_value=0, max_value=1_000))
def test_the_memories_up_to_a_bar_do_not_depend_on_later_bars_and_the_newest_bar_path_agrees(
    stop: int, seed: int
) -> None:
    candles = _random_candles(90, seed)
    full = MEMORY.analyze(candles)
    part = MEMORY.analyze(candles.slice(0, stop))
    latest = MEMORY.analyze_latest(candles.slice(0, stop))
    for name in ("recent_spike_direction", "recent_divergence_direction"):
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[:stop], err_msg=name)
        assert getattr(latest, name)[-1] == getattr(full, name)[stop - 1], name


# --- real data: the per-bar code, its counts, the live path and the trades --------------------------------------


@pytest.fixture(scope="module")
def btc() -> Candles:
    return load_sample("BTC/USDT", "1h").slice(0, 4000)


def _strategy(params: StrategyParams) -> Strategy:
    config = Settings()
    return Strategy(params, config.risk, config.breaker)


@pytest.mark.parametrize("cut", [900, 2300, 3100])
def test_the_volume_rule_code_up_to_a_bar_does_not_depend_on_later_bars(btc: Candles, cut: int) -> None:
    strategy = _strategy(StrategyParams())
    full, part = strategy.prepare(btc), strategy.prepare(btc.slice(0, cut))
    np.testing.assert_array_equal(part.volume_rule_effect, full.volume_rule_effect[:cut])


def test_the_counts_count_each_rules_vetoes_and_downsizes(btc: Candles) -> None:
    prepared = _strategy(StrategyParams()).prepare(btc)
    codes = np.zeros(len(prepared), dtype=np.int8)
    codes[[10, 20, 30, 40]] = CANDIDATE
    codes[10] |= VETOED_BREAKOUT_VOLUME | VETOED_DIVERGENCE
    codes[20] |= VETOED_INSTITUTIONAL
    codes[30] |= DOWNSIZED_INSTITUTIONAL | DOWNSIZED_DIVERGENCE
    counts = volume_rule_counts(dataclasses.replace(prepared, volume_rule_effect=codes))
    assert counts == {
        "candidates": 4,
        "vetoed_breakout_volume": 1,
        "vetoed_institutional": 1,
        "vetoed_divergence": 1,
        "downsized_institutional": 1,
        "downsized_divergence": 1,
        "vetoed_any": 2,
        "downsized_any": 1,
    }
    later = volume_rule_counts(dataclasses.replace(prepared, volume_rule_effect=codes),
                               start_ms=int(prepared.candles.open_time_ms[15]))
    assert later["candidates"] == 3 and later["vetoed_breakout_volume"] == 0 and later["vetoed_institutional"] == 1


def test_the_counts_agree_with_the_entries_the_rules_removed(btc: Candles) -> None:
    ruled = _strategy(StrategyParams()).prepare(btc)
    ignored = _strategy(StrategyParams(**IGNORE_ALL)).prepare(btc)
    counts = volume_rule_counts(ruled)
    removed = (ignored.entry_direction != 0) & (ruled.entry_direction == 0)
    assert counts["vetoed_any"] == np.count_nonzero(removed) > 0
    assert counts["candidates"] == np.count_nonzero(ignored.entry_direction)
    downsized = (ruled.entry_direction != 0) & (ruled.entry_strength < ignored.entry_strength)
    assert counts["downsized_any"] == np.count_nonzero(downsized) > 0


def test_a_prepared_symbol_built_without_the_code_reads_as_no_rule_acted(btc: Candles) -> None:
    prepared = _strategy(StrategyParams()).prepare(btc.slice(0, 300))
    fields = {f.name: getattr(prepared, f.name) for f in dataclasses.fields(PreparedSymbol)}
    del fields["volume_rule_effect"]
    rebuilt = PreparedSymbol(**fields)
    assert len(rebuilt.volume_rule_effect) == 300 and not rebuilt.volume_rule_effect.any()


def test_the_reasons_of_a_vetoed_bar_say_which_volume_rule_vetoed_it(btc: Candles) -> None:
    prepared = _strategy(StrategyParams()).prepare(btc)
    bar = int(np.flatnonzero(prepared.volume_rule_effect & VETOED_BREAKOUT_VOLUME)[0])
    assert "volume: breakout without volume, entry vetoed" in prepared.reasons_at(bar)


def test_the_live_preparer_carries_the_code_bar_for_bar(btc: Candles) -> None:
    strategy = _strategy(StrategyParams(institutional_against_action="veto", allow_short=True))
    candles = btc.slice(0, 2000)
    preparer = IncrementalPreparer(strategy, max_bars=len(candles))
    preparer.prime(candles.slice(0, 400))
    live = preparer.update_candles(candles.slice(400, len(candles)))
    vectorised = strategy.prepare(candles)
    codes = vectorised.volume_rule_effect[400:]
    assert (codes & VETOED_BREAKOUT_VOLUME).any() and (codes & VETOED_INSTITUTIONAL).any()
    assert (codes & DOWNSIZED_DIVERGENCE).any()
    np.testing.assert_array_equal(live.volume_rule_effect, vectorised.volume_rule_effect)
    # The signal strength itself differs in the last ulp live (its ATR recursion); the downsizing adds nothing.
    np.testing.assert_allclose(live.entry_strength, vectorised.entry_strength, rtol=1e-12, atol=0)


def _trades(result: Any) -> list[tuple[int, int, float]]:
    return [(t.trade.entry_ms, t.trade.exit_ms, round(t.trade.quantity, 9)) for t in result.trades]


def test_the_default_volume_rules_change_the_trades_on_real_btc_hours(btc: Candles) -> None:
    engine = BacktestEngine({"BTC/USDT": btc})
    ruled = engine.run_backtest("2024-10-01")
    ignored = engine.run_backtest("2024-10-01", overrides=IGNORE_ALL)
    assert ruled.trades and ignored.trades
    assert _trades(ruled) != _trades(ignored)
    entries_ruled = {t.trade.entry_ms for t in ruled.trades}
    assert {t.trade.entry_ms for t in ignored.trades} - entries_ruled  # some ignored-rule entry was vetoed
