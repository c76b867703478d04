"""Specification of the compiled core's commands: paper trading with commands gives the Python core's trades.

Today's ``DecisionCore`` + ``SimulatedAccount`` and ``CompiledCore.simulate`` run the same bars; between bars
both receive the same commands (halt, resume, manual close, emergency exit, its completion and clearing, a
breaker reset). Trades (every number by its bits, the exit kind), event counts and the cash must agree.
"""

from __future__ import annotations

import struct
from collections import Counter

from engine.backtest.compiled_trades import EXIT_KINDS
from engine.backtest.loop import merge_timeline
from engine.core.decision import DecisionCore, Outcome
from engine.core.portfolio import Portfolio
from engine.core.records import EVENT_KINDS
from engine.core.state import LONG, LOSS
from engine.core.step import CompiledCore
from engine.domain.timeframes import parse_timeframe
from engine.simulation.account import SimulatedAccount
from engine.simulation.fills import FillModel
from tests.engine.core.corpus import setup


def bits(value: float) -> str:
    return struct.pack("<d", value).hex()


def test_paper_trading_with_commands_gives_the_python_cores_trades_and_events() -> None:
    engine, prepared, parameters = setup("sample_1h_pair", "percent")
    breaker = parameters.breaker.model_copy(update={"latching": []})
    capital = engine.backtest_config.initial_capital
    python = DecisionCore(parameters.risk, breaker, Portfolio(capital), engine.market_limits,
                          take_profit_atr_multiple=parameters.strategy.take_profit_atr_multiple)
    sim = SimulatedAccount(python, FillModel.from_config(engine.backtest_config), keep_fills=False, keep_events=True)
    compiled = CompiledCore(parameters.risk, breaker, engine.backtest_config,
                            parameters.strategy.take_profit_atr_multiple,
                            [engine.market_limits[p.symbol] for p in prepared], capital)
    bar_ms = parse_timeframe(prepared[0].candles.timeframe)
    timeline = merge_timeline(prepared, None)
    counts: Counter[str] = Counter()
    rows = []
    closed_by_hand = False
    emergency_at = -1
    for n, (k, i) in enumerate(zip(timeline.symbol.tolist(), timeline.bar.tolist(), strict=True)):
        sim.process_bar(prepared[k], i)
        compiled.load(prepared[k], i, bar_ms)
        compiled.simulate(k)
        events, _, trades = compiled.outbox.take()
        counts.update(EVENT_KINDS[int(c)] for c in events["kind"])
        rows.extend(trades)
        now_ms = int(prepared[k].candles.open_time_ms[i]) + bar_ms

        def both(outcome: Outcome, command: str, *args: object) -> None:
            sim.submit(outcome)
            getattr(compiled, command)(*args)
            command_events, _, _ = compiled.outbox.take()
            counts.update(EVENT_KINDS[int(c)] for c in command_events["kind"])

        if n == 800:
            both(python.halt(now_ms, "by hand"), "halt", now_ms)
        elif n == 1200:
            both(python.resume(now_ms), "resume", now_ms)
        elif n >= 1600 and not closed_by_hand and prepared[0].symbol in python.portfolio.positions:
            closed_by_hand = True
            both(python.close_position(prepared[0].symbol, now_ms, "by hand"), "close_position", 0, now_ms)
        elif n >= 2400 and emergency_at < 0 and python.portfolio.positions:
            emergency_at = n
            both(python.emergency_exit(now_ms, "test"), "emergency_exit", now_ms)
        elif emergency_at > 0 and n == emergency_at + 200:
            both(Outcome((), python.breaker.complete_emergency_exit(now_ms)), "complete_emergency_exit", now_ms)
        elif emergency_at > 0 and n == emergency_at + 600:
            both(Outcome((), python.breaker.manual_resume("emergency", now_ms)), "clear_emergency_exit", now_ms)
            both(python.resume(now_ms), "resume", now_ms)
        elif n == 5400:
            both(Outcome((), python.breaker.manual_resume("loss", now_ms)), "resume_breaker", LOSS, now_ms)
    assert closed_by_hand and emergency_at > 0
    expected = sim.log.trades
    kinds = {t.exit_kind.value for t in expected}
    assert {"manual", "emergency_exit"} <= kinds and len(expected) > 20
    assert len(rows) == len(expected)
    for record, row in zip(expected, rows, strict=True):
        trade = record.trade
        assert (trade.symbol, trade.side.value == "long", trade.entry_ms, trade.exit_ms) == (
            prepared[int(row["symbol"])].symbol, int(row["side"]) == LONG, int(row["entry_ms"]), int(row["exit_ms"]))
        for name in ("quantity", "entry_price", "exit_price", "pnl", "fees"):
            assert bits(getattr(trade, name)) == bits(float(row[name])), name
        assert record.exit_kind == EXIT_KINDS[int(row["exit_kind"])]
        assert record.stop_and_target_in_one_bar == bool(row["ambiguous"])
    assert dict(sorted(counts.items())) == dict(sorted(sim.log.event_counts.items()))
    assert bits(python.portfolio.cash) == bits(float(compiled.account[0]["cash"]))
