"""Provides the compiled backtest driver: prepared symbols through :func:`engine.core.loop.run_timeline`.

:func:`simulate_compiled` takes what ``BacktestEngine.simulate`` takes and returns the same
``BacktestResult`` (trades with their texts, equity samples, metrics, event counts, rejected orders), so the
two can be compared field by field. Not wired into ``BacktestEngine`` yet (phase 1 of issue 15).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from engine.analysis.strategy import PreparedSymbol
from engine.backtest.compiled_trades import trade_records
from engine.backtest.engine import BacktestEngine, _volume_signal_counts
from engine.backtest.loop import merge_timeline
from engine.backtest.metrics import compute_metrics
from engine.backtest.params import ParameterSet
from engine.backtest.result import BacktestResult
from engine.config import BreakerConfig, RiskConfig
from engine.core.loop import run_timeline
from engine.core.records import EVENT_KINDS, Outbox
from engine.core.simulated import close_all_at
from engine.core.state import (
    API_ERROR_CAPACITY,
    BAR_DTYPE,
    config_record,
    market_records,
    new_account,
    new_breakers,
    new_positions,
    with_take_profit,
)
from engine.domain.errors import BacktestException
from engine.domain.models import MarketLimits
from engine.domain.timeframes import parse_timeframe
from engine.simulation.fills import FillModel


@dataclass
class CoreState:
    """Every state record of one compiled core (see ``engine.core.state``)."""

    config: np.ndarray
    markets: np.ndarray
    account: np.ndarray
    breakers: np.ndarray
    api_errors: np.ndarray
    positions: np.ndarray

    @classmethod
    def fresh(cls, risk: RiskConfig, breaker: BreakerConfig, engine: BacktestEngine, take_profit: float,
              limits: Sequence[MarketLimits], capital: float) -> CoreState:
        config = with_take_profit(config_record(risk, breaker, engine.backtest_config), take_profit)
        return cls(config, market_records(limits), new_account(capital), new_breakers(breaker),
                   np.zeros(API_ERROR_CAPACITY, np.int64), new_positions(len(limits)))

    def arguments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.config, self.markets, self.account, self.breakers, self.api_errors, self.positions


Arrays = tuple[np.ndarray, ...]


class SymbolArrays(NamedTuple):
    """The per-symbol input tuples of ``run_timeline`` (index: symbol), each array contiguous in one dtype."""

    open_time: Arrays
    open: Arrays
    high: Arrays
    low: Arrays
    close: Arrays
    atr: Arrays
    normal_volatility: Arrays
    volatility_ratio: Arrays
    volatility_alarm: Arrays
    entry_direction: Arrays
    entry_strength: Arrays
    entry_multiplier: Arrays
    exit_long: Arrays
    exit_short: Arrays
    swing_low: Arrays
    swing_high: Arrays


def symbol_arrays(prepared: Sequence[PreparedSymbol]) -> SymbolArrays:
    """The inputs of ``run_timeline`` from the prepared symbols (no copy where dtype and layout already fit)."""
    def field(get: Callable[[PreparedSymbol], Any], dtype: Any) -> Arrays:
        return tuple(np.ascontiguousarray(get(item), dtype=dtype) for item in prepared)

    return SymbolArrays(
        field(lambda p: p.candles.open_time_ms, np.int64),
        field(lambda p: p.candles.open, np.float64),
        field(lambda p: p.candles.high, np.float64),
        field(lambda p: p.candles.low, np.float64),
        field(lambda p: p.candles.close, np.float64),
        field(lambda p: p.atr, np.float64),
        field(lambda p: p.normal_volatility, np.float64),
        field(lambda p: p.volatility_ratio, np.float64),
        field(lambda p: p.volatility_alarm, np.bool_),
        field(lambda p: p.entry_direction, np.int8),
        field(lambda p: p.entry_strength, np.float64),
        field(lambda p: p.entry_multiplier, np.float64),
        field(lambda p: p.exit_long, np.bool_),
        field(lambda p: p.exit_short, np.bool_),
        field(lambda p: p.swing_low, np.float64),
        field(lambda p: p.swing_high, np.float64),
    )


@dataclass
class CompiledRun:
    """What a compiled backtest produced, rows included (events and decisions only when kept)."""

    result: BacktestResult
    trade_rows: np.ndarray
    event_rows: np.ndarray
    decision_rows: np.ndarray
    state: CoreState


def simulate_compiled(
    engine: BacktestEngine,
    prepared: Sequence[PreparedSymbol],
    start_ms: int | None,
    parameters: ParameterSet,
    *,
    skip_idle: bool = True,
    keep_events: bool = False,
    keep_decisions: bool = False,
) -> CompiledRun:
    """``engine.simulate(prepared, start_ms, parameters)`` run by the compiled core."""
    breaker = parameters.breaker
    if engine.unattended:
        breaker = breaker.model_copy(update={"latching": []})
    capital = engine.backtest_config.initial_capital
    timeframes = {item.candles.timeframe for item in prepared}
    if len(timeframes) > 1:
        raise BacktestException(f"all symbols must share one timeframe, got {', '.join(sorted(timeframes))}")
    limits = [engine.market_limits.get(item.symbol) or MarketLimits(item.symbol) for item in prepared]
    state = CoreState.fresh(parameters.risk, breaker, engine, parameters.strategy.take_profit_atr_multiple, limits,
                            capital)
    timeline = merge_timeline(prepared, start_ms)
    if len(timeline) == 0:
        raise BacktestException("no bars in the requested window")
    timeframe = prepared[0].candles.timeframe
    bar_ms = parse_timeframe(timeframe)
    outbox = Outbox(len(prepared))
    bar = np.zeros(1, BAR_DTYPE)
    equity, in_market, kind_counts, trades, events, decisions, last_bar = run_timeline(
        *state.arguments(), bar, outbox.events, outbox.decisions, outbox.trades, outbox.counts,
        timeline.symbol.astype(np.int64), timeline.bar.astype(np.int64), timeline.group_end.astype(np.int64), bar_ms,
        skip_idle, keep_events, keep_decisions, *symbol_arrays(prepared),
    )
    time_ms = timeline.group_time_ms + bar_ms
    end_ms = int(time_ms[-1])
    if state.account[0]["open_count"] > 0:
        prices = np.array([float(item.candles.close[last_bar[k]]) if last_bar[k] >= 0 else np.nan
                           for k, item in enumerate(prepared)])
        outbox.counts[:] = 0
        close_all_at(state.config, state.markets, state.account, state.breakers, state.positions, outbox.events,
                     outbox.trades, outbox.counts, prices, end_ms)
        final_events, _, final_trades = outbox.take()
        for code in final_events["kind"]:
            kind_counts[code] += 1
        trades = np.concatenate([trades, final_trades])
        if keep_events:
            events = np.concatenate([events, final_events])
        equity[-1] = state.account[0]["cash"] + _marked(state)
    records = trade_records(trades, prepared, parameters.risk)
    metrics = compute_metrics(time_ms, equity, capital, [t.trade for t in records], bar_ms, in_market)
    fill_model = FillModel.from_config(engine.backtest_config)
    assumptions: dict[str, Any] = {
        "fills": fill_model.describe(),
        "unattended": engine.unattended,
        "breaker_latching": list(breaker.latching),
        "end_of_data": "open positions closed at the last bar's close minus slippage",
        "market_limits": {
            s: {"lot_step": m.lot_step, "tick_size": m.tick_size, "min_qty": m.min_qty, "min_notional": m.min_notional}
            for s, m in sorted(engine.market_limits.items())
            if s in {p.symbol for p in prepared}
        },
        "initial_capital": capital,
    }
    result = BacktestResult(
        symbols=tuple(item.symbol for item in prepared),
        timeframe=timeframe,
        start_ms=int(time_ms[0] - bar_ms),
        end_ms=end_ms,
        initial_capital=capital,
        params=parameters.flat(),
        assumptions=assumptions,
        trades=records,
        equity_time_ms=time_ms,
        equity=equity,
        in_market=in_market,
        metrics=metrics,
        event_counts={EVENT_KINDS[code]: int(n) for code, n in sorted(
            enumerate(kind_counts[:len(EVENT_KINDS)]), key=lambda pair: EVENT_KINDS[pair[0]]) if n},
        rejected_orders=int(state.account[0]["rejected_orders"]),
        volume_signal_counts=_volume_signal_counts(prepared, int(time_ms[0] - bar_ms)),
    )
    return CompiledRun(result, trades, events, decisions, state)


def _marked(state: CoreState) -> float:
    """Nothing is open after the end-of-data close: the marked sum ``Portfolio.equity`` adds to cash is 0.0."""
    assert state.account[0]["open_count"] == 0
    return 0.0


def warm_up() -> float:
    """Compile (or load from the cache) every kernel a backtest and a live step use; seconds taken.

    ``python -m engine.backtest.compiled`` runs it, e.g. once after install so the first backtest starts warm.
    """
    import time

    from engine.analysis.strategy import StrategyParams
    from engine.backtest.sma_cross import prepare_sma_cross, sma_cross_breaker, sma_cross_risk
    from engine.core.step import CompiledCore
    from engine.data.sample import load_sample

    start = time.perf_counter()
    candles = load_sample("BTC/USDT", "1h").slice(0, 300)
    risk, breaker, params = sma_cross_risk(), sma_cross_breaker(), StrategyParams(take_profit_atr_multiple=0.0)
    engine = BacktestEngine(candles, params, risk=risk, breaker=breaker)
    prepared = prepare_sma_cross(candles)
    simulate_compiled(engine, [prepared], None, ParameterSet(params, risk, breaker), keep_events=True,
                      keep_decisions=True)
    core = CompiledCore(risk, breaker, engine.backtest_config, 0.0, [engine.market_limits[candles.symbol]], 1e4)
    core.load(prepared, 100, parse_timeframe(candles.timeframe))
    core.step(0)
    core.simulate(0)
    return time.perf_counter() - start


if __name__ == "__main__":
    print(f"compiled core ready in {warm_up():.1f} s")
