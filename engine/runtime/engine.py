"""Provides TradingEngine, the async orchestrator, and build_engine, the factory the console and CLI use.

Candles flow down, snapshots flow up, commands flow in::

    feed (replay | ccxt) --closed candle--> per-symbol queue --> worker: history -> prepared (incremental)
        -> execution.on_bar (paper: SimulatedAccount; live: OrderManager -> Broker) -> store
    engine --EngineSnapshot (throttled) / Event (every one)--> Bus --> console, Telegram
    console, Telegram --Command--> engine.submit --> one at a time --> CommandHandler

Each symbol has its own queue and worker task, so a slow symbol never delays another. Publishing
never waits on a subscriber. Time comes from the injected clock: a replay runs on simulated time
that follows the candles; live runs on the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from engine.analysis.strategy import Strategy, StrategyParams
from engine.config import Settings
from engine.core.decision import Decision, DecisionCore
from engine.core.portfolio import Portfolio
from engine.data.live_feed import ClosedCandle
from engine.data.replay_feed import DEFAULT_WARMUP_BARS
from engine.domain.bus import Bus
from engine.domain.clock import Clock, SimulatedClock, WallClock
from engine.domain.commands import Command
from engine.domain.errors import ConfigException, EngineAlreadyRunningException, EngineFailedException
from engine.domain.events import CommandFailed, Event, Severity
from engine.domain.models import Candles, EngineState, EquityPoint
from engine.domain.snapshot import EngineSnapshot, FeedStatus, SymbolView
from engine.execution.broker import Broker
from engine.runtime.command_handler import CommandHandler
from engine.runtime.drift_watch import DriftWatch
from engine.runtime.health import DEFAULT_HEALTH_INTERVAL_S, SystemHealthMonitor
from engine.runtime.instance_lock import EngineLock
from engine.runtime.persistence import EngineRecorder
from engine.runtime.remote_control import build_risk_gate, start_notifier
from engine.runtime.snapshot_builder import build_engine_snapshot
from engine.runtime.symbol_state import DEFAULT_HISTORY_BARS, SymbolHistory, symbol_view
from engine.runtime.worker_guard import WorkerGuard, settings_secrets, wait_for_failure, wait_for_notifier

log = logging.getLogger(__name__)

RECENT_EVENTS = 50
EQUITY_HISTORY_POINTS = 240
LATENCY_SAMPLES = 100_000


class Execution(Protocol):
    """Where the decision path's orders go: PaperExecution or the live OrderManager."""

    mode: str

    async def start(self, now_ms: int) -> list[str]: ...

    async def on_bar(self, prepared: Any, index: int) -> None: ...

    async def execute(self, decisions: tuple[Decision, ...]) -> None: ...

    async def cancel_open_orders(self) -> int: ...

    @property
    def busy(self) -> bool: ...

    async def close(self) -> None: ...


class CandleSource(Protocol):
    async def run(self, emit: Any) -> None: ...


class TradingEngine:
    """The running bot; implements :class:`engine.domain.bus.EngineHandle`.

    Build it with :func:`build_engine`; run it with ``await engine.run()`` (returns after :meth:`stop`;
    raises EngineFailedException after an engine task failed; a failing symbol is isolated,
    engine.runtime.worker_guard).

    Attributes:
        bus: subscribe here for events (all delivered) and snapshots (newest only).
        core: the DecisionCore (read-only for callers; change it through commands).
        latencies_ms: closed candle received -> decision taken, per processed candle (milliseconds).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        live: bool = False,
        clock: Clock | None = None,
        series: Mapping[str, Candles] | None = None,
        broker: Broker | None = None,
        database_path: Path | None = None,
        warmup_bars: int = DEFAULT_WARMUP_BARS,
        history_bars: int = DEFAULT_HISTORY_BARS,
        replay_speed: float | None = None,
        snapshot_rate_hz: float | None = None,
        restore: bool | None = None,
        stop_when_replay_done: bool = False,
        poll_interval_s: float = 0.5,
        risk_passphrase_hash: Any = None,
        notifier_tuning: Any = None,
        health_interval_s: float = DEFAULT_HEALTH_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.live = live
        self.mode = "live" if live else "paper"
        self.replay = settings.exchange.feed == "replay"
        self.clock: Clock = clock or (SimulatedClock() if self.replay else WallClock())
        self.bus = Bus()
        self.strategy = Strategy(StrategyParams.from_settings(settings), settings.risk, settings.breaker)
        self.portfolio = Portfolio(cash=settings.exchange.starting_balance)
        params = self.strategy.params
        self.core = DecisionCore(settings.risk, settings.breaker, self.portfolio,
                                 take_profit_atr_multiple=params.take_profit_atr_multiple)
        self.symbols = list(dict.fromkeys(settings.exchange.symbols if series is None else series))
        self.timeframe = settings.exchange.base_timeframe
        self._series = dict(series) if series is not None else None
        self._broker = broker
        self.database_path = Path(database_path or settings.storage.database_path)
        self.warmup_bars = warmup_bars
        self.history_bars = history_bars
        self.replay_speed = replay_speed if replay_speed is not None else settings.exchange.replay_speed
        rate = snapshot_rate_hz if snapshot_rate_hz is not None else settings.ui.max_redraws_per_second
        self._snapshot_interval_s = 1.0 / rate
        # A replay is a fresh demo session on old candles; live (and paper on the live feed) continue.
        self.restore_state = (not self.replay) if restore is None else restore
        self.stop_when_replay_done = stop_when_replay_done
        self.poll_interval_s = poll_interval_s  # live feed: shortest pause between polls
        # Remote control (engine.runtime.remote_control): risk changes need a grant from risk_gate; Telegram is
        # optional.
        self.risk_passphrase_hash = risk_passphrase_hash  # engine.security.auth.PassphraseHash | None
        self.notifier_tuning = notifier_tuning  # engine.notify.NotifierTuning | None (tests: fast timings)
        self.risk_gate: Any = None
        self.notifier: Any = None
        self.health_interval_s = health_interval_s  # breaker clock and exchange probe (engine.runtime.health)

        self.histories = {s: SymbolHistory(s, self.timeframe, history_bars) for s in self.symbols}
        self.views: dict[str, SymbolView] = {s: SymbolView(s) for s in self.symbols}
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.guard = WorkerGuard(self.emit, self.clock.now_ms, settings_secrets(settings))  # failing tasks
        self.candles_processed = 0
        self.engine_state = EngineState.STARTING
        self.feed_healthy = True
        self.feed_status: tuple[FeedStatus, ...] = ()  # per symbol, set by the live feed (engine.runtime.startup)
        self.replay_done = asyncio.Event()
        self.started = asyncio.Event()
        self.repairs: list[str] = []
        self.execution: Execution | None = None
        self.recorder: EngineRecorder | None = None
        self.store: Any = None
        self.feed: Any = None
        self.instance_lock: EngineLock | None = None  # one engine per database (engine.runtime.startup takes it)
        self._commands: asyncio.Queue[Command] = asyncio.Queue()
        self._queues: dict[str, asyncio.Queue[tuple[ClosedCandle, int]]] = {s: asyncio.Queue() for s in self.symbols}
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self.recent_events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self.equity_history: deque[float] = deque(maxlen=EQUITY_HISTORY_POINTS)
        self._last_equity_ms = -1
        self.max_drawdown_pct = 0.0
        self.snapshot_day_key: int | None = None
        self.realized_at_day_start = 0.0
        self._handler: CommandHandler | None = None
        self._snapshot: EngineSnapshot | None = None
        self._command_idle = asyncio.Event()
        self._command_idle.set()
        self._candles_allowed = asyncio.Event()
        self._candles_allowed.set()
        self.drift = DriftWatch(self)  # the live window backtested again in the background (engine.runtime.drift_watch)

    # ------------------------------------------------------------------------------- EngineHandle
    async def submit(self, command: Command) -> None:
        """Queue a command; its outcome arrives as ``CommandAccepted``/``CommandRejected`` events."""
        self._command_idle.clear()
        await self._commands.put(command)

    def snapshot(self) -> EngineSnapshot | None:
        return self._snapshot

    def pause_candles(self) -> None:
        """Hold every symbol worker before its next candle (commands still run); e.g. a paused replay."""
        self._candles_allowed.clear()

    def resume_candles(self) -> None:
        self._candles_allowed.set()

    def stop(self) -> None:
        """Ask :meth:`run` to finish (idempotent, callable from a signal handler)."""
        self._stop.set()

    # ------------------------------------------------------------------------------------ events
    def emit(self, event: Event) -> None:
        """Publish one event: recent list, store (breakers, state), bus. Never blocks."""
        self.recent_events.append(event)
        if self.recorder is not None:
            self.recorder.on_event(event)
        level = logging.INFO if event.severity is Severity.INFO else logging.WARNING
        log.log(level, "%s: %s", event.kind, event.message)
        self.bus.publish_event(event)
        self._dirty.set()

    def emit_all(self, events: tuple[Event, ...] | list[Event]) -> None:
        for event in events:
            self.emit(event)

    # ------------------------------------------------------------------------------------- run
    async def run(self) -> None:
        """Start, trade until :meth:`stop` (or the replay ends when asked to), then shut down cleanly."""
        from engine.runtime.startup import open_resources

        tasks: list[asyncio.Task[Any]] = []
        failure: EngineFailedException | None = None
        try:
            await open_resources(self)
            assert self.recorder is not None and self.execution is not None
            for history in self.histories.values():  # one vectorised pass now; each closed candle is O(1)
                if len(history):
                    history.prepared(self.strategy)
            self.drift.start()
            audit = self._audit_log()
            self.risk_gate = build_risk_gate(self, audit)
            self._handler = CommandHandler(self.core, self.execution, self.emit, audit, self.risk_gate,
                                           request_stop=self.stop)
            self.notifier = await start_notifier(self)  # before the first publish; never raises
            self.engine_state = EngineState.RUNNING
            self.started.set()
            self.publish_snapshot()
            tasks = [
                asyncio.create_task(self.recorder.run(), name="store writer"),
                asyncio.create_task(self._snapshot_loop(), name="snapshots"),
                asyncio.create_task(self._command_loop(), name="commands"),
                asyncio.create_task(self._health_monitor().run(), name="system health"),
                asyncio.create_task(self.drift.run(), name="drift watch"),
                *(asyncio.create_task(self._symbol_worker(s), name=f"worker {s}") for s in self.symbols),
            ]
            feed_task = asyncio.create_task(self._run_feed(), name="feed")
            tasks.append(feed_task)
            failed = await wait_for_failure(self._stop, tasks[:-1], feed_task)
            if failed is not None:  # a critical alert, a clean shutdown, then EngineFailedException
                failure, self.engine_state = self.guard.engine_failed(failed), EngineState.ERROR
                self.pause_candles()  # no new decisions while the alert goes out
                await wait_for_notifier(self.notifier)
        except EngineAlreadyRunningException as exc:  # refused at start-up: one line, no traceback
            self.engine_state = EngineState.ERROR
            log.error("%s", exc)
            raise
        except Exception:
            self.engine_state = EngineState.ERROR
            log.exception("engine failed to start")
            raise
        finally:
            await self._shutdown(tasks)
        if failure is not None:
            raise failure

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Stop every task, save the final state, close everything (see
        :func:`engine.runtime.shutdown.shutdown_engine`)."""
        from engine.runtime.shutdown import shutdown_engine

        await shutdown_engine(self, tasks)

    def _health_monitor(self) -> SystemHealthMonitor:
        """The system breaker ages its errors on the clock and, live, the exchange is probed between candles."""
        probe = getattr(self.execution, "probe", None)
        return SystemHealthMonitor(self.core.breaker, self.clock, self.emit_all, probe, self.health_interval_s)

    def _audit_log(self) -> Any:
        try:
            from engine.security.audit import AuditLog
        except ImportError:  # pragma: no cover - the security package is optional
            return None
        return AuditLog(self.store)

    async def _run_feed(self) -> None:
        try:
            await self.feed.run(self._enqueue)
        finally:
            self.replay_done.set()
        if self.stop_when_replay_done:
            await self.wait_idle()
            self.stop()

    async def _enqueue(self, candle: ClosedCandle) -> None:
        queue = self._queues.get(candle.symbol)
        if queue is not None:
            queue.put_nowait((candle, time.perf_counter_ns()))

    # ----------------------------------------------------------------------------------- candles
    async def _symbol_worker(self, symbol: str) -> None:
        """A candle that raises isolates this symbol only (see :mod:`engine.runtime.worker_guard`)."""
        await self.guard.run_worker(symbol, self._queues[symbol], self._candles_allowed, self.process_candle)

    async def process_candle(self, candle: ClosedCandle, received_ns: int | None = None) -> bool:
        """Run one closed candle through the decision path; False if it was not newer than the history."""
        received_ns = time.perf_counter_ns() if received_ns is None else received_ns
        history = self.histories[candle.symbol]
        if not history.append(candle):
            return False
        if isinstance(self.clock, SimulatedClock):
            self.clock.advance_to(candle.close_time_ms)
        prepared = history.prepared(self.strategy)  # incremental after the first call
        index = len(prepared) - 1
        assert self.execution is not None
        await self.execution.on_bar(prepared, index)
        self.latencies_ms.append((time.perf_counter_ns() - received_ns) / 1e6)
        self.candles_processed += 1
        self.views[candle.symbol] = symbol_view(prepared, index)
        await self._after_bar(candle.close_time_ms)
        self.drift.on_bar(candle)
        return True

    async def _after_bar(self, now_ms: int) -> None:
        assert self.recorder is not None and self.execution is not None
        take_records = getattr(self.execution, "take_records", None)
        if take_records is not None:
            fills, orders, trades = take_records()
            self.recorder.record_paper_fills(fills, orders, trades, self.portfolio)
        await self._advance_emergency_exit(now_ms)
        if now_ms > self._last_equity_ms:
            self._last_equity_ms = now_ms
            equity = self.portfolio.equity()
            self.equity_history.append(equity)
            self.recorder.record_equity(EquityPoint(now_ms, equity, self.portfolio.cash,
                                                    self.portfolio.unrealized_pnl()))
        self._dirty.set()

    async def _advance_emergency_exit(self, now_ms: int) -> None:
        """Finish an emergency exit: close what is left (also after a restart), then mark it complete."""
        if self.core.breaker.emergency_phase != "in_progress":
            return
        assert self.execution is not None
        leftovers: list[Decision] = []
        for symbol in sorted(self.portfolio.positions):
            leftovers.extend(self.core.close_position(symbol, now_ms, "emergency exit: closing").decisions)
        if leftovers:
            await self.execution.execute(tuple(leftovers))
        elif not self.portfolio.positions and not self.core.pending and not self.execution.busy:
            self.emit_all(self.core.breaker.complete_emergency_exit(now_ms))

    # ---------------------------------------------------------------------------------- commands
    async def _command_loop(self) -> None:
        assert self._handler is not None
        if self._handler.state_store is None:  # accepted risk changes are saved in this engine's store
            self._handler.state_store = self.store
        while True:
            command = await self._commands.get()
            try:
                assert self._handler is not None
                now_ms = self.clock.now_ms()
                await self._handler.handle(command, now_ms)
                await self._advance_emergency_exit(now_ms)
                self.publish_snapshot()
            except Exception:
                log.exception("command %s failed", type(command).__name__)
                name = type(command).__name__
                self.emit(CommandFailed(time_ms=self.clock.now_ms(), message=f"{name} failed; see log", command=name,
                                        source=command.source))
            finally:
                self._commands.task_done()
                if self._commands.empty():
                    self._command_idle.set()

    # ----------------------------------------------------------------------------------- waiting
    async def wait_idle(self) -> None:
        """Until every queued candle and command is processed and every store write applied."""
        while True:
            for queue in self._queues.values():
                await queue.join()
            await self._command_idle.wait()
            if self.recorder is not None:
                await self.recorder.flush()
            if all(q.empty() for q in self._queues.values()) and self._commands.empty():
                return

    # --------------------------------------------------------------------------------- snapshots
    async def _snapshot_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self.publish_snapshot()
            await asyncio.sleep(self._snapshot_interval_s)

    def publish_snapshot(self) -> None:
        self._snapshot = self.build_snapshot()
        self.bus.publish_snapshot(self._snapshot)

    def build_snapshot(self) -> EngineSnapshot:
        """An immutable view of the engine now (see :class:`engine.domain.snapshot.EngineSnapshot`)."""
        return build_engine_snapshot(self)

def build_engine(settings: Settings, *, live: bool = False, **options: Any) -> TradingEngine:
    """The engine the console, ``tradebot run --headless`` and the tests run.

    Args:
        settings: loaded settings; ``exchange.mode``/``feed`` choose paper or live, replay or live candles.
        live: the ``--live`` flag. Live trading needs it *and* ``exchange.mode = "live"`` with keys.
        options: forwarded to :class:`TradingEngine` (clock, series, broker, database_path, warmup_bars,
            history_bars, replay_speed, snapshot_rate_hz, restore, stop_when_replay_done, poll_interval_s,
            health_interval_s).

    Raises:
        ConfigException: live trading asked for without keys, flag or live feed, or the other way round.
    """
    exchange = settings.exchange
    if live and exchange.mode != "live":
        raise ConfigException(["--live given but exchange.mode is 'paper'; set exchange.mode = \"live\" "
                               "and the API keys to trade for real"])
    if exchange.mode == "live" and not live:
        raise ConfigException(["exchange.mode is 'live': refusing to trade real money without the --live flag"])
    if live and exchange.feed != "live":
        raise ConfigException(["live trading needs exchange.feed = \"live\" (orders on replayed prices make no sense)"])
    return TradingEngine(settings, live=live, **options)
