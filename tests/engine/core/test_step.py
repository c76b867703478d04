"""Specification of ``CompiledCore``: one call per closed bar gives what the compiled loop gives.

Paper trading calls :meth:`CompiledCore.simulate` per closed bar and live trading :meth:`CompiledCore.step`;
both must decide exactly as the backtest loop does over the same bars.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.backtest.compiled import simulate_compiled
from engine.backtest.loop import merge_timeline
from engine.core.records import DECISION_ENTRY, EV_BREAKER_TRIPPED, EV_EMERGENCY_EXIT_STARTED
from engine.core.state import HALTED, OPEN, SYSTEM
from engine.core.step import CompiledCore
from engine.domain.timeframes import parse_timeframe
from tests.engine.core.corpus import setup


def rows_identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Same rows, every field compared by its bytes (NaN equals NaN, -0.0 differs from 0.0)."""
    if a.dtype != b.dtype or len(a) != len(b):
        return False
    return all(np.ascontiguousarray(a[name]).tobytes() == np.ascontiguousarray(b[name]).tobytes()
               for name in a.dtype.names or ())


def core_for(series_name: str, config_name: str) -> tuple[CompiledCore, list, int]:  # type: ignore[type-arg]
    engine, prepared, parameters = setup(series_name, config_name)
    breaker = parameters.breaker.model_copy(update={"latching": []}) if engine.unattended else parameters.breaker
    core = CompiledCore(parameters.risk, breaker, engine.backtest_config, parameters.strategy.take_profit_atr_multiple,
                        [engine.market_limits[p.symbol] for p in prepared], engine.backtest_config.initial_capital)
    return core, prepared, parse_timeframe(prepared[0].candles.timeframe)


@pytest.mark.parametrize(("series_name", "config_name"), [
    ("sample_1h_pair", "low_breakers"), ("sample_1h_pair", "tight_limits"), ("synthetic_three_with_gaps", "swing"),
])
def test_simulate_called_bar_by_bar_gives_the_loops_trades_events_and_decisions(
    series_name: str, config_name: str
) -> None:
    engine, prepared, parameters = setup(series_name, config_name)
    loop = simulate_compiled(engine, prepared, None, parameters, skip_idle=False, keep_events=True,
                             keep_decisions=True)
    core, prepared, bar_ms = core_for(series_name, config_name)
    timeline = merge_timeline(prepared, None)
    events, decisions, trades = [], [], []
    for k, i in zip(timeline.symbol.tolist(), timeline.bar.tolist(), strict=True):
        core.load(prepared[k], i, bar_ms)
        core.simulate(k)
        bar_events, bar_decisions, bar_trades = core.outbox.take()
        events.append(bar_events)
        decisions.append(bar_decisions)
        trades.append(bar_trades)
    stepped_trades = np.concatenate(trades)
    assert len(stepped_trades) > 5
    assert rows_identical(stepped_trades, loop.trade_rows[:len(stepped_trades)])
    assert len(loop.trade_rows) - len(stepped_trades) == core.open_count  # the end-of-data closes
    assert rows_identical(np.concatenate(decisions), loop.decision_rows)
    assert rows_identical(np.concatenate(events), loop.event_rows[:sum(len(e) for e in events)])


def test_step_decides_the_loops_first_entry_on_the_same_bar() -> None:
    engine, prepared, parameters = setup("sample_1h_BTC_USDT", "percent")
    loop = simulate_compiled(engine, prepared, None, parameters, keep_decisions=True)
    first = loop.decision_rows[0]
    assert first["kind"] == DECISION_ENTRY
    core, prepared, bar_ms = core_for("sample_1h_BTC_USDT", "percent")
    for i in range(int(first["bar"]) + 1):
        core.load(prepared[0], i, bar_ms)
        core.step(0)
        _, decisions, _ = core.outbox.take()
        if i < first["bar"]:
            assert len(decisions) == 0
    assert rows_identical(decisions, loop.decision_rows[:1])


def _open_a_position(core: CompiledCore, prepared: list, bar_ms: int) -> int:  # type: ignore[type-arg]
    """Simulate bars until a position is open; the next bar's index."""
    for i in range(len(prepared[0])):
        core.load(prepared[0], i, bar_ms)
        core.simulate(0)
        core.outbox.take()
        if core.open_count:
            return i + 1
    raise AssertionError("no position opened")


def test_an_emergency_exit_closes_everything_halts_and_happens_once() -> None:
    core, prepared, bar_ms = core_for("sample_1h_BTC_USDT", "percent")
    next_bar = _open_a_position(core, prepared, bar_ms)
    now_ms = int(prepared[0].candles.open_time_ms[next_bar])
    assert core.emergency_exit(now_ms)
    events, decisions, _ = core.outbox.take()
    assert EV_EMERGENCY_EXIT_STARTED in events["kind"]
    assert core.account[0]["trading_state"] == HALTED
    assert len(decisions) == 1 and core.positions[0]["pending"]
    assert not core.emergency_exit(now_ms + 1)
    core.load(prepared[0], next_bar, bar_ms)
    core.simulate(0)  # the exit fills at this open
    assert core.open_count == 0
    for i in range(next_bar + 1, len(prepared[0])):
        core.load(prepared[0], i, bar_ms)
        core.simulate(0)
        assert core.open_count == 0  # latched: no entry ever again


def test_api_errors_reaching_the_threshold_trip_the_system_breaker_and_block_the_next_entry() -> None:
    engine, prepared, parameters = setup("sample_1h_BTC_USDT", "percent")
    loop = simulate_compiled(engine, prepared, None, parameters, keep_decisions=True)
    entry_bar = int(loop.decision_rows[0]["bar"])
    core, prepared, bar_ms = core_for("sample_1h_BTC_USDT", "percent")
    for i in range(entry_bar):
        core.load(prepared[0], i, bar_ms)
        core.step(0)
    close_ms = int(prepared[0].candles.open_time_ms[entry_bar]) + bar_ms
    for k in range(int(core.config[0]["api_error_threshold"])):
        core.api_call(close_ms - 1000 + k, ok=False)
        events, _, _ = core.outbox.take()
    assert list(events["kind"]) == [EV_BREAKER_TRIPPED]
    assert core.breakers[SYSTEM]["state"] == OPEN
    core.load(prepared[0], entry_bar, bar_ms)
    core.step(0)
    _, decisions, _ = core.outbox.take()
    assert len(decisions) == 0  # the errors are inside the window: still open, no entry
