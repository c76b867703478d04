"""Provides the runtime's start-up: open the store, restore state, load history, build feed and execution.

Kept apart from :mod:`engine.runtime` so the orchestrator reads as the candle/command loop only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.data.live_feed import CcxtCandleFeed, ClosedCandle
from engine.data.replay_feed import ReplayFeed, load_replay_series
from engine.errors import ExchangeCallException
from engine.execution.paper_broker import PaperExecution
from engine.execution.retry import RetryPolicy, call_with_retry
from engine.fills import FillModel
from engine.models import Candles
from engine.persistence import ENGINE_INFO_KEY, EngineRecorder
from engine.recovery import restore_engine_state
from engine.store import Store
from engine.timeframes import parse_timeframe

if TYPE_CHECKING:
    from engine.runtime import TradingEngine

log = logging.getLogger(__name__)


def retry_policy(engine: TradingEngine) -> RetryPolicy:
    exchange = engine.settings.exchange
    return RetryPolicy.from_settings(
        exchange.request_timeout_s, exchange.max_retries, exchange.retry_base_delay_s, exchange.retry_max_delay_s
    )


class LiveFeedRunner:
    """Runs a :class:`CcxtCandleFeed` poll loop and reports its health to the engine."""

    def __init__(self, engine: TradingEngine, feed: CcxtCandleFeed, client: Any, min_poll_s: float) -> None:
        self._engine = engine
        self._feed = feed
        self._client = client
        self._min_poll_s = min_poll_s

    async def run(self, emit: Callable[[ClosedCandle], Awaitable[None]]) -> None:
        try:
            while True:
                for candle in await self._feed.poll_once():
                    await emit(candle)
                self._engine.feed_healthy = not getattr(self._feed, "_behind", set())
                await asyncio.sleep(max(self._min_poll_s, self._feed.seconds_until_next_poll()))
        finally:
            await self._client.close()


def _api_callbacks(engine: TradingEngine) -> tuple[Callable[[ExchangeCallException], None], Callable[[], None]]:
    """Every failed exchange call counts toward the system breaker; successes let it recover."""
    core = engine.core

    def on_error(exc: ExchangeCallException) -> None:
        engine.emit_all(core.breaker.record_api_error(engine.clock.now_ms()).events)

    def on_success() -> None:
        update = core.breaker.record_api_success(engine.clock.now_ms())
        if update.events:
            engine.emit_all(update.events)

    return on_error, on_success


async def _fetch_history(engine: TradingEngine, client: Any, symbol: str) -> Candles:
    tf_ms = parse_timeframe(engine.timeframe)
    now = engine.clock.now_ms()
    rows: list[list[Any]] = await call_with_retry(
        f"fetch_ohlcv {symbol} {engine.timeframe} (history)",
        lambda: client.fetch_ohlcv(symbol, engine.timeframe, None, min(engine.warmup_bars, 1000)),
        policy=retry_policy(engine),
    )
    rows = sorted((r for r in rows if int(r[0]) + tf_ms <= now), key=lambda r: int(r[0]))
    table = np.array(rows, dtype=np.float64).reshape(-1, 6)  # ms times < 2**53 are exact in float64
    return Candles(symbol, engine.timeframe, table[:, 0].astype(np.int64), *(table[:, k] for k in range(1, 6)))


async def _build_live_feed(engine: TradingEngine) -> LiveFeedRunner:
    from engine.execution.ccxt_client import create_binance_client

    exchange = engine.settings.exchange
    client = create_binance_client(
        timeout_s=exchange.request_timeout_s,
        base_url=exchange.base_url or None,
        enable_rate_limit=not exchange.base_url,
    )
    tf_ms = parse_timeframe(engine.timeframe)
    start: dict[str, int] = {}
    for symbol in engine.symbols:
        history = engine.histories[symbol]
        if len(history) == 0:
            history.extend(await _fetch_history(engine, client, symbol))
        last = history.last_open_ms
        if last is not None:
            start[symbol] = last + tf_ms
    on_error, on_success = _api_callbacks(engine)
    feed = CcxtCandleFeed(
        client, engine.symbols, engine.timeframe, engine.clock, policy=retry_policy(engine),
        start_ms=start or None, on_error=on_error, on_success=on_success, close_grace_ms=0,
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
                      now_ms=engine.clock.now_ms)


async def open_resources(engine: TradingEngine) -> None:
    """Everything :meth:`TradingEngine.run` needs before the first candle (see the module docstring)."""
    engine.database_path.parent.mkdir(parents=True, exist_ok=True)
    engine.store = await Store.open(engine.database_path)
    engine.recorder = EngineRecorder(engine.store, engine.core)
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
        from engine.order_manager import OrderManager

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
