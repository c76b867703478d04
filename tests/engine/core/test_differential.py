"""Specification of the compiled core: it gives the Python core's results, bit for bit, over the corpus.

Every series of ``corpus.SERIES`` under every configuration of ``corpus.CONFIGS`` runs through today's
``BacktestEngine.simulate`` and through ``engine.backtest.compiled.simulate_compiled``; trades (every field,
floats compared by their bits), event counts, rejected orders, equity samples (bits), in-market samples and
the result JSON must be identical.
"""

from __future__ import annotations

from collections import Counter

import pytest

from engine.backtest.compiled import simulate_compiled
from tests.engine.core.corpus import CONFIGS, REAL_SERIES, SERIES, differences, setup


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("series_name", SERIES + REAL_SERIES)
def test_compiled_core_gives_the_python_core_results_bit_for_bit(series_name: str, config_name: str) -> None:
    engine, prepared, parameters = setup(series_name, config_name)
    python = engine.simulate(prepared, None, parameters)
    compiled = simulate_compiled(engine, prepared, None, parameters).result
    assert differences(python, compiled) == []


@pytest.mark.parametrize("config_name", ["low_breakers", "tight_limits", "swing"])
def test_visiting_every_bar_gives_the_same_results_as_jumping_idle_stretches(config_name: str) -> None:
    engine, prepared, parameters = setup("synthetic_three_with_gaps", config_name)
    jumped = simulate_compiled(engine, prepared, None, parameters).result
    visited = simulate_compiled(engine, prepared, None, parameters, skip_idle=False).result
    assert differences(jumped, visited) == []


def test_a_start_time_trades_only_bars_from_it_in_both_cores() -> None:
    engine, prepared, parameters = setup("sample_1h_pair", "percent")
    start_ms = int(prepared[0].candles.open_time_ms[1200])
    python = engine.simulate(prepared, start_ms, parameters)
    compiled = simulate_compiled(engine, prepared, start_ms, parameters).result
    assert python.trades and differences(python, compiled) == []


def test_the_corpus_exercises_every_exit_kind_both_sides_limits_and_breakers() -> None:
    """Without this the comparison above could pass on runs that never reach the interesting paths."""
    kinds: Counter[str] = Counter()
    sides: set[str] = set()
    events: Counter[str] = Counter()
    ambiguous = rejected = 0
    for series_name in ("sample_1h_pair", "synthetic_three_with_gaps"):
        for config_name in CONFIGS:
            engine, prepared, parameters = setup(series_name, config_name)
            result = engine.simulate(prepared, None, parameters)
            kinds.update(t.exit_kind for t in result.trades)
            sides |= {t.trade.side.value for t in result.trades}
            events.update(result.event_counts)
            ambiguous += result.ambiguous_trades
            rejected += result.rejected_orders
    assert {"trailing_stop", "target", "stop", "signal", "risk_limit", "end_of_data"} <= set(kinds)
    assert sides == {"long", "short"}
    assert {"RiskLimitWarning", "RiskLimitBreached", "RiskHaltCleared", "TradingStateChanged", "BreakerTripped",
            "BreakerCoolingDown", "BreakerHalfOpened", "BreakerReset", "OrderRejected"} <= set(events)
    assert ambiguous > 0 and rejected > 0
