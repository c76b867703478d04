"""Specification of the TradingEngine in paper mode: fidelity to the backtester, commands, many symbols, state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine.backtest.engine import BacktestEngine
from engine.config import ExchangeConfig
from engine.domain.commands import ClosePosition, EmergencyExit, Halt, Resume, ResumeBreaker, SetRiskLimit
from engine.domain.errors import ConfigException
from engine.domain.events import PositionClosed
from engine.domain.models import ExitKind, TradingState
from engine.domain.ports import RiskChangeRefused
from engine.runtime.engine import build_engine
from engine.security.audit import AuditLog
from engine.security.auth import hash_passphrase
from engine.security.crypto import KdfParams
from engine.store import Store
from tests.engine.runtime_helpers import (
    btc_window,
    finish,
    make_settings,
    paper_engine,
    renamed,
    start,
    wait_for_event,
)

WARMUP = 500


async def test_paper_replay_makes_the_same_trades_as_the_backtester(tmp_path: Path) -> None:
    candles = btc_window()
    engine = paper_engine(tmp_path, {"BTC/USDT": candles}, warmup_bars=WARMUP, stop_when_replay_done=True)
    await asyncio.wait_for(engine.run(), 120)

    backtest = BacktestEngine({"BTC/USDT": candles}, settings=engine.settings, unattended=True)
    result = backtest.run_backtest(start=int(candles.open_time_ms[WARMUP]))
    expected = [record.trade for record in result.trades if record.exit_kind != "end_of_data"]
    paper = engine.portfolio.closed_trades

    assert len(expected) >= 5, "the window must contain trades for the comparison to mean anything"
    assert paper == expected


async def test_paper_trades_and_account_are_persisted_for_status(tmp_path: Path) -> None:
    candles = btc_window()
    engine = paper_engine(tmp_path, {"BTC/USDT": candles}, stop_when_replay_done=True)
    await asyncio.wait_for(engine.run(), 120)

    async with await Store.open(engine.database_path) as store:
        trades = await store.trades()
        summary = await store.status_summary()
        equity = await store.equity_history(limit=1)
    assert trades == engine.portfolio.closed_trades
    assert summary["trading_state"] == "ACTIVE"
    assert equity[-1].equity == pytest.approx(engine.portfolio.equity())
    assert json.dumps(summary, default=str)  # what `tradebot status --json` prints


async def test_halt_then_resume_changes_the_trading_state_through_events(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=560)}, replay_speed=50.0)
    events = engine.bus.subscribe("test")
    task = start(engine)
    await engine.started.wait()

    await engine.submit(Halt(source="console", reason="test"))
    halted = await wait_for_event(events, "TradingStateChanged")
    await engine.wait_idle()
    assert halted.data["state"] == "HALTED"
    assert engine.snapshot() is not None and engine.snapshot().trading_state is TradingState.HALTED

    await engine.submit(Resume(source="telegram:1"))
    resumed = await wait_for_event(events, "TradingStateChanged")
    assert resumed.data["state"] == "ACTIVE"
    accepted = await wait_for_event(events, "CommandAccepted", lambda e: e.data["command"] == "Resume")
    assert accepted.data["source"] == "telegram:1"
    await finish(engine, task)


async def test_halted_engine_opens_no_position(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window()}, replay_speed=2000.0)
    task = start(engine)
    await engine.submit(Halt())
    await engine.replay_done.wait()
    await engine.wait_idle()
    assert engine.portfolio.closed_trades == [] and engine.portfolio.positions == {}
    await finish(engine, task)


async def _engine_with_open_position(tmp_path: Path, symbols: list[str]):  # type: ignore[no-untyped-def]
    series = {symbol: renamed(btc_window(), symbol) for symbol in symbols}
    engine = paper_engine(tmp_path, series, replay_speed=100.0)
    publish = engine.emit
    paused: list[bool] = []

    def emit_and_pause_at_first_entry(event):  # type: ignore[no-untyped-def]
        publish(event)
        if event.kind == "PositionOpened" and not paused:
            paused.append(True)
            engine.pause_candles()  # freeze the market so the test's command acts on this position

    engine.emit = emit_and_pause_at_first_entry  # type: ignore[method-assign]
    events = engine.bus.subscribe("test")
    task = start(engine)
    await wait_for_event(events, "PositionOpened")
    return engine, events, task


async def test_emergency_exit_twice_closes_every_position_once_and_halts(tmp_path: Path) -> None:
    engine, events, task = await _engine_with_open_position(tmp_path, ["BTC/USDT", "ETH/USDT"])

    await engine.submit(EmergencyExit(source="console"))
    await engine.submit(EmergencyExit(source="telegram:7"))
    await wait_for_event(events, "CommandAccepted")
    engine.resume_candles()
    await wait_for_event(events, "EmergencyExitCompleted")
    await engine.wait_idle()

    seen = events.drain_events()
    assert engine.portfolio.positions == {}
    assert engine.core.trading_state is TradingState.HALTED
    assert [e.kind for e in seen].count("PositionOpened") == 0
    assert engine.core.breaker.emergency_phase == "done"
    assert all(t.reason.startswith("emergency exit") for t in engine.portfolio.closed_trades[-1:])
    await finish(engine, task)


async def test_second_emergency_exit_is_accepted_as_nothing_new(tmp_path: Path) -> None:
    engine, events, task = await _engine_with_open_position(tmp_path, ["BTC/USDT"])
    await engine.submit(EmergencyExit(source="console"))
    await engine.submit(EmergencyExit(source="console"))
    first = await wait_for_event(events, "CommandAccepted")
    second = await wait_for_event(events, "CommandAccepted")
    assert "closing 1 positions" in first.data["outcome"]
    assert "already" in second.data["outcome"]
    await finish(engine, task)


async def test_close_position_closes_that_symbol_and_refuses_a_flat_one(tmp_path: Path) -> None:
    engine, events, task = await _engine_with_open_position(tmp_path, ["BTC/USDT"])
    await engine.submit(Halt())  # no new entry may replace the closed position during the test
    await engine.submit(ClosePosition(source="console", symbol="BTC/USDT"))
    await wait_for_event(events, "CommandAccepted", lambda e: e.data["command"] == "ClosePosition")
    engine.resume_candles()
    closed = await wait_for_event(events, "PositionClosed")
    assert isinstance(closed, PositionClosed) and closed.symbol == "BTC/USDT"
    assert (closed.exit_kind, closed.reason) == (ExitKind.MANUAL, "manual close (console)")

    await engine.submit(ClosePosition(source="console", symbol="BTC/USDT"))
    refused = await wait_for_event(events, "CommandRejected")
    assert "no open position" in refused.data["outcome"]
    await finish(engine, task)


async def test_set_risk_limit_applies_an_authenticated_value_and_refuses_an_invalid_one(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=520)}, replay_speed=10.0,
                          risk_passphrase_hash=hash_passphrase("risk-pass-123", KdfParams(n=2**4, r=8, p=1)))
    events = engine.bus.subscribe("test")
    task = start(engine)
    await engine.started.wait()
    change = SetRiskLimit(source="console", key="risk.max_daily_loss_percent", value=3.0)
    await engine.submit(await engine.risk_gate.authorize_with_passphrase(change, "risk-pass-123"))
    changed = await wait_for_event(events, "RiskLimitChanged")
    assert changed.data["new"] == 3.0 and engine.core.risk.config.max_daily_loss_percent == 3.0

    with pytest.raises(RiskChangeRefused, match="refused"):
        await engine.risk_gate.authorize_with_passphrase(
            SetRiskLimit(source="console", key="risk.max_daily_loss_percent", value=500.0), "risk-pass-123")
    assert engine.core.risk.config.max_daily_loss_percent == 3.0
    await finish(engine, task)


async def test_every_command_is_appended_to_the_audit_log(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=520)}, replay_speed=10.0)
    task = start(engine)
    await engine.submit(Halt(source="console"))
    await engine.submit(ResumeBreaker(source="telegram:5", breaker="nonsense"))
    await engine.wait_idle()
    await finish(engine, task)

    async with await Store.open(engine.database_path) as store:
        entries = await AuditLog(store).entries()
    actions = [(e.actor, e.action) for e in entries]
    assert ("console", "command.Halt") in actions
    assert ("telegram:5", "command.ResumeBreaker") in actions


async def test_twenty_symbols_are_all_traded_in_one_engine(tmp_path: Path) -> None:
    base = btc_window(length=560)
    series = {f"S{i:02d}/USDT": renamed(base, f"S{i:02d}/USDT") for i in range(20)}
    engine = paper_engine(tmp_path, series, stop_when_replay_done=True)
    await asyncio.wait_for(engine.run(), 120)

    assert engine.candles_processed == 20 * 60
    snapshot = engine.snapshot()
    assert snapshot is not None
    assert {view.symbol for view in snapshot.symbols} == set(series)
    assert all(view.last_bar_ms == int(base.open_time_ms[-1]) for view in snapshot.symbols)


async def test_a_stalled_symbol_does_not_delay_the_others(tmp_path: Path) -> None:
    base = btc_window(length=540)
    series = {s: renamed(base, s) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")}
    engine = paper_engine(tmp_path, series)
    task = start(engine)
    await engine.started.wait()
    assert engine.execution is not None
    real_on_bar = engine.execution.on_bar
    release = asyncio.Event()

    async def stalls_on_eth(prepared, index):  # type: ignore[no-untyped-def]
        if prepared.symbol == "ETH/USDT":
            await release.wait()  # e.g. an exchange call hanging for this symbol only
        await real_on_bar(prepared, index)

    engine.execution.on_bar = stalls_on_eth  # type: ignore[method-assign]
    await engine.replay_done.wait()
    for symbol in ("BTC/USDT", "SOL/USDT"):
        await asyncio.wait_for(engine._queues[symbol].join(), 30)
    assert engine.views["BTC/USDT"].last_bar_ms == int(base.open_time_ms[-1])
    assert engine.views["SOL/USDT"].last_bar_ms == int(base.open_time_ms[-1])
    assert engine.views["ETH/USDT"].last_bar_ms != int(base.open_time_ms[-1])
    release.set()
    await engine.wait_idle()
    await finish(engine, task)


def test_live_trading_needs_the_live_flag(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ["BTC/USDT"], exchange={"mode": "live", "feed": "live", "api_key": "k",
                                                               "api_secret": "s"})
    with pytest.raises(ConfigException, match="--live"):
        build_engine(settings)


def test_live_flag_without_live_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigException, match="paper"):
        build_engine(make_settings(tmp_path, ["BTC/USDT"]), live=True)


def test_live_mode_without_keys_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="api_key"):
        ExchangeConfig(mode="live", feed="live")
