"""Provides the runtime's start-up: open the store, restore state, load history, build feed and execution.

Kept apart from :mod:`engine.runtime.engine` so the orchestrator reads as the candle/command loop only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.analysis.warmup import WarmupPlan, derive_warmup
from engine.data.live_feed import CcxtCandleFeed, ClosedCandle
from engine.data.live_history import load_live_history
from engine.data.live_validation import CandleValidator, FeedHealth
from engine.data.replay_feed import ReplayFeed, load_replay_series
from engine.domain.errors import ExchangeCallException, ExchangeUnavailableException
from engine.domain.events import CandleQuarantined, FeedRecovered, FeedStale, Severity, StoreDegraded
from engine.domain.models import Candles
from engine.domain.snapshot import FEED_OK, FEED_STALE
from engine.domain.timeframes import parse_timeframe
from engine.execution.order_resolution import ResolutionPolicy
from engine.execution.paper_broker import PaperExecution
from engine.execution.retry import RetryPolicy
from engine.runtime.instance_lock import LOCK_STATE_KEY, EngineLock
from engine.runtime.persistence import ENGINE_INFO_KEY, EngineRecorder
from engine.runtime.recovery import restore_engine_state
from engine.runtime.symbol_state import SymbolHistory
from engine.simulation.fills import FillModel
from engine.store import Store

if TYPE_CHECKING:
    from engine.runtime.engine import TradingEngine

log = logging.getLogger(__name__)


def retry_policy(engine: TradingEngine) -> RetryPolicy:
    exchange = engine.settings.exchange
    return RetryPolicy.from_settings(
        exchange.request_timeout_s, exchange.max_retries, exchange.retry_base_delay_s, exchange.retry_max_delay_s
    )


class LiveFeedRunner:
    """Runs a :class:`CcxtCandleFeed` poll loop, stores its candles and reports its health to the engine.

    Every ``min_poll_s`` it polls (the feed asks the exchange only for a candle that has closed), hands each
    good closed candle to the engine, queues it for the store, marks STALE the symbols without a new
    candle for ``data.stale_after_bars`` bars, and publishes every status change as an event:
    ``CandleQuarantined`` (critical, the candle was not traded on), ``FeedStale`` (critical, once per
    episode: no candle, so no entry, on that symbol until one arrives; open positions keep their exchange
    stops) and ``FeedRecovered`` (info). ``engine.feed_healthy`` is True while every symbol is OK and no
    fetch is behind; ``engine.feed_status`` holds each symbol's status for the snapshot.
    """

    def __init__(self, engine: TradingEngine, feed: CcxtCandleFeed, client: Any, min_poll_s: float) -> None:
        self._engine = engine
        self._feed = feed
        self._client = client
        self._min_poll_s = min_poll_s

    async def run(self, emit: Callable[[ClosedCandle], Awaitable[None]]) -> None:
        try:
            self._report()
            while True:
                candles = await self._feed.poll_once()
                for candle in candles:
                    await emit(candle)
                self._store(candles)
                self._report()
                # Cheap when nothing is due (no request); after a failed fetch, the feed's slower retry pace.
                behind = bool(self._feed.behind)
                await asyncio.sleep(max(self._min_poll_s, self._feed.seconds_until_next_poll()) if behind
                                    else self._min_poll_s)
        finally:
            await self._client.close()

    def _store(self, candles: list[ClosedCandle]) -> None:
        engine = self._engine
        if not candles or engine.recorder is None or engine.store is None:
            return
        for symbol in dict.fromkeys(c.symbol for c in candles):
            mine = [c for c in candles if c.symbol == symbol]
            columns = (np.array([getattr(c, k) for c in mine]) for k in ("open", "high", "low", "close", "volume"))
            batch = Candles(symbol, mine[0].timeframe, np.array([c.open_time_ms for c in mine], dtype=np.int64),
                            *columns)
            engine.recorder.enqueue(partial(engine.store.upsert_candles, batch), f"{len(mine)} live {symbol} candles")

    def _report(self) -> None:
        engine, health = self._engine, self._feed.health
        now_ms = engine.clock.now_ms()
        health.check_stale(now_ms)
        for before, after, quarantine in health.take_changes():
            if quarantine is not None:
                engine.emit(CandleQuarantined(
                    time_ms=now_ms, message=quarantine.message, symbol=quarantine.symbol,
                    timeframe=quarantine.timeframe, open_time_ms=quarantine.open_time_ms, rule=quarantine.rule,
                    detail=quarantine.detail,
                ))
            elif after.state == FEED_STALE:
                engine.emit(FeedStale(time_ms=now_ms, message=f"{after.symbol} feed STALE: {after.reason}; no "
                                      "entries on it until a new candle arrives", symbol=after.symbol,
                                      reason=after.reason))
            elif after.state == FEED_OK:
                engine.emit(FeedRecovered(time_ms=now_ms, message=f"{after.symbol} feed OK again (was {before.state})",
                                          symbol=after.symbol, was=before.state))
        engine.feed_status = health.statuses()
        engine.feed_healthy = health.all_ok and not self._feed.behind


def _api_callbacks(engine: TradingEngine) -> tuple[Callable[[ExchangeCallException], None], Callable[[], None]]:
    """Outages count toward the system breaker; successes let it recover.

    Only an outage is counted (network errors, timeouts, 5xx, 429/418, garbled replies: all surface as
    ExchangeUnavailableException). A business refusal (insufficient balance, a stop that would trigger,
    min notional) means the exchange is up and said no: the order manager handles and reports it.
    """
    core = engine.core

    def on_error(exc: ExchangeCallException) -> None:
        if isinstance(exc, ExchangeUnavailableException):
            engine.emit_all(core.breaker.record_api_error(engine.clock.now_ms()).events)

    def on_success() -> None:
        update = core.breaker.record_api_success(engine.clock.now_ms())
        if update.events:
            engine.emit_all(update.events)

    return on_error, on_success


def _store_degraded_callback(engine: TradingEngine) -> Callable[[int, str], None]:
    """Repeated failed store writes (``EngineRecorder``) are loud: a critical event and the system breaker trips."""

    def on_degraded(failures: int, error: str) -> None:
        now_ms = engine.clock.now_ms()
        engine.emit(StoreDegraded(
            time_ms=now_ms, message=f"{failures} store writes in a row failed; state is not being saved: {error}",
            failures=failures, error=error,
        ))
        update = engine.core.breaker.trip_system(f"store writes failing ({failures} in a row)", now_ms)
        engine.emit_all(update.events)

    return on_degraded


async def _fetch_history(engine: TradingEngine, client: Any, symbol: str, plan: WarmupPlan,
                         validator: CandleValidator) -> Candles:
    """The warm-up of ``symbol``: the store's candles, then only the missing ones from the exchange (stored too).

    How many bars is derived from the strategy (:func:`engine.analysis.warmup.derive_warmup`), not ``warmup_bars``
    (which sizes a replay's warm-up only). Fetched candles the checks refuse are left out with a warning.
    """
    load = await load_live_history(engine.store, client, symbol, engine.timeframe, bars=plan.bars,
                                   align_ms=plan.align_ms, now_ms=engine.clock.now_ms(),
                                   policy=retry_policy(engine), validator=validator)
    for quarantine in load.quarantined:
        engine.emit(CandleQuarantined(
            time_ms=engine.clock.now_ms(), message=quarantine.message + " (warm-up)", severity=Severity.WARNING,
            symbol=symbol, timeframe=quarantine.timeframe, open_time_ms=quarantine.open_time_ms,
            rule=quarantine.rule, detail=quarantine.detail))
    return load.candles


async def _build_live_feed(engine: TradingEngine) -> LiveFeedRunner:
    from engine.execution.ccxt_client import create_binance_client

    exchange = engine.settings.exchange
    client = create_binance_client(
        timeout_s=exchange.request_timeout_s,
        base_url=exchange.base_url or None,
        enable_rate_limit=not exchange.base_url,
    )
    tf_ms = parse_timeframe(engine.timeframe)
    plan = derive_warmup(engine.strategy, engine.timeframe)
    held_bars = plan.bars + plan.align_ms // tf_ms  # the window starts up to one aligned bucket earlier
    data = engine.settings.data
    start: dict[str, int] = {}
    validators: dict[str, CandleValidator] = {}
    try:
        for symbol in engine.symbols:
            history = engine.histories[symbol]
            validator = validators[symbol] = CandleValidator(tf_ms, data.outlier_atr_multiple)
            if len(history) == 0:
                if history.max_bars < held_bars:  # the first prepare must see the whole warm-up
                    history = engine.histories[symbol] = SymbolHistory(symbol, engine.timeframe, held_bars)
                history.extend(await _fetch_history(engine, client, symbol, plan, validator))
            else:
                validator.prime(history.candles())
            last = history.last_open_ms
            if last is not None:
                start[symbol] = last + tf_ms
    except BaseException:
        await client.close()
        raise
    on_error, on_success = _api_callbacks(engine)
    feed = CcxtCandleFeed(
        client, engine.symbols, engine.timeframe, engine.clock, policy=retry_policy(engine),
        start_ms=start or None, on_error=on_error, on_success=on_success, close_grace_ms=0,
        validators=validators, health=FeedHealth(engine.symbols, engine.timeframe, tf_ms, data.stale_after_bars),
    )
    return LiveFeedRunner(engine, feed, client, engine.poll_interval_s)


def _build_broker(engine: TradingEngine) -> Any:
    from engine.execution.ccxt_broker import CcxtBroker
    from engine.execution.ccxt_client import create_binance_client

    exchange = engine.settings.exchange
    assert exchange.api_key is not None and exchange.api_secret is not None
    client = create_binance_client(
        exchange.api_key.get_secret_value(),
        exchange.api_secret.get_secret_value(),
        timeout_s=exchange.request_timeout_s,
        base_url=exchange.base_url or None,
        enable_rate_limit=not exchange.base_url,
    )
    on_error, on_success = _api_callbacks(engine)
    return CcxtBroker(client, policy=retry_policy(engine), on_error=on_error, on_success=on_success,
                      now_ms=engine.clock.now_ms,
                      resolution=ResolutionPolicy(window_s=exchange.unknown_order_window_s,
                                                  first_delay_s=min(0.25, exchange.unknown_order_window_s / 4)))


async def open_resources(engine: TradingEngine) -> None:
    """Everything :meth:`TradingEngine.run` needs before the first candle (see the module docstring)."""
    engine.database_path.parent.mkdir(parents=True, exist_ok=True)
    # One engine per database: locked before the store opens or the exchange is reached (raises
    # EngineAlreadyRunningException naming the holder); TradingEngine._shutdown releases it.
    if engine.instance_lock is None or not engine.instance_lock.held:
        engine.instance_lock = EngineLock.take(engine.database_path, mode=engine.mode)
    engine.store = await Store.open(engine.database_path)
    await engine.store.set_state(LOCK_STATE_KEY, engine.instance_lock.as_state())
    engine.recorder = EngineRecorder(engine.store, engine.core, on_degraded=_store_degraded_callback(engine))
    if engine.restore_state:
        engine.repairs.extend(await restore_engine_state(engine.store, engine.core, engine.portfolio))

    if engine.replay:
        series = engine._series or await load_replay_series(engine.symbols, engine.timeframe, engine.store)
        feed = ReplayFeed(series, speed=engine.replay_speed, warmup_bars=engine.warmup_bars)
        for symbol in engine.symbols:
            engine.histories[symbol].extend(feed.history(symbol))
        engine.feed = feed
    else:
        engine.feed = await _build_live_feed(engine)

    if engine.live:
        from engine.execution.order_manager import OrderManager

        broker = engine._broker or _build_broker(engine)
        engine.execution = OrderManager(engine, broker)
    else:
        from engine.backtest.markets import limits_for_symbols

        # The backtester's default lot/tick rules, so paper sizes exactly as a backtest of the same bars.
        reference = {s: float(h.candles().close[0]) for s, h in engine.histories.items() if len(h)}
        engine.core.market_limits.update(limits_for_symbols(engine.symbols, reference, engine.core.market_limits))
        engine.execution = PaperExecution(engine.core, FillModel.from_config(engine.settings.backtest), engine.emit)
    engine.repairs.extend(await engine.execution.start(engine.clock.now_ms()))
    for repair in engine.repairs:
        log.warning("recovery: %s", repair)
    await engine.store.set_state(ENGINE_INFO_KEY, {
        "mode": engine.mode, "feed": engine.settings.exchange.feed, "symbols": engine.symbols,
        "timeframe": engine.timeframe, "started_ms": engine.clock.now_ms(), "repairs": engine.repairs[-50:],
    })
    engine.recorder.save_core_state(engine.clock.now_ms())
