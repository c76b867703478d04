"""Specification: nothing the engine runs dies silently (issue 13).

* A bug in one symbol's candle processing isolates that symbol: it stops trading, its position and exchange
  stop are left alone, it shows as failed in the snapshot, a critical ``SystemError`` reaches Telegram, and
  the other symbols keep trading. A live engine on the real ccxt client against the loopback fake Binance,
  three symbols, the real python-telegram-bot client against the loopback fake Bot API.
* A failing engine task (here the snapshot publisher) stops the engine: a critical ``EngineFailed`` alert
  is delivered to Telegram before ``run()`` raises :class:`engine.domain.errors.EngineFailedException`, and
  ``tradebot run --headless`` prints one line to stderr and exits 1. A paper replay engine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from engine.config import TelegramConfig
from engine.domain.errors import EngineFailedException
from engine.domain.models import Candles
from engine.runtime.engine import TradingEngine, build_engine
from engine.security.redaction import uninstall_secret_redaction
from engine.store import Store
from tests.engine.live_rig import (
    HISTORY_BARS,
    LiveRig,
    closed_candle,
    first_entry_bar,
    live_settings,
    serve,
    shifted_sample,
    start_live,
)
from tests.engine.notify.conftest import FAST_TUNING, PRIVATE_CHAT, TOKEN
from tests.engine.runtime_helpers import btc_window, make_settings, renamed, start
from tests.event_samples import happened
from tests.fakes.fake_binance import FakeBinance
from tests.fakes.fake_bot_api import FakeBotApi, SentMessage

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 20.0
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
BROKEN = "ETH/USDT"
HEALTHY = ["BTC/USDT", "SOL/USDT"]
BARS_AFTER_FAILURE = 4


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def telegram(api: FakeBotApi) -> TelegramConfig:
    return TelegramConfig(token=SecretStr(TOKEN), allowed_chat_ids=[PRIVATE_CHAT], base_url=api.base_url,
                          request_timeout_s=2.0)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as server:
        yield server
    uninstall_secret_redaction()  # the notifier installs it process-wide; other tests expect raw logs


# ------------------------------------------------------------------------------------ one symbol fails
@pytest.fixture
async def rig(tmp_path: Path, api: FakeBotApi) -> AsyncIterator[LiveRig]:
    entry = first_entry_bar()
    async with FakeBinance() as fake:
        fake.set_balance("USDT", "10000")
        sample = shifted_sample(entry)
        for symbol in SYMBOLS:  # the same real candles under three names: each buys on the entry bar
            base, quote = symbol.split("/")
            fake.add_market(base, quote)
            serve(fake, renamed(sample.slice(entry - HISTORY_BARS, entry), symbol))
        settings = live_settings(tmp_path, fake, SYMBOLS)
        # Three symbols buy on the same bar: each may use at most 30 % of the account, so all three can pay.
        risk = settings.risk.model_copy(update={"max_notional_percent": 30.0})
        settings = settings.model_copy(update={"telegram": telegram(api), "risk": risk})
        rig = await start_live(settings, fake, health_interval_s=60.0, poll_interval_s=3600.0,
                               notifier_tuning=FAST_TUNING)
        rig.sample, rig.entry_index = sample, entry  # type: ignore[attr-defined]
        try:
            yield rig
        finally:
            await rig.stop()


async def deliver(engine: TradingEngine, fake: FakeBinance, bars: dict[str, tuple[Candles, int]]) -> None:
    """One closed candle per symbol through the feed's path (queue -> worker), then until all is processed."""
    for symbol, (candles, index) in bars.items():
        fake.set_price(symbol, f"{candles.close[index]:.2f}")
        await engine._enqueue(closed_candle(candles, index))  # what the live feed calls per closed candle
    await asyncio.wait_for(engine.wait_idle(), WAIT_S)


def order_traffic(fake: FakeBinance, symbol: str) -> list[Any]:
    """Every order placed or cancelled for ``symbol`` (POST/DELETE /api/v3/order)."""
    market = symbol.replace("/", "")
    return [r for r in fake.requests(path="/api/v3/order")
            if r.method in ("POST", "DELETE") and r.params.get("symbol") == market]


async def test_a_failing_symbol_is_isolated_and_the_other_symbols_keep_trading(
    rig: LiveRig, api: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    engine, fake = rig.engine, rig.fake
    sample, entry = rig.sample, rig.entry_index  # type: ignore[attr-defined]
    series = {symbol: renamed(sample, symbol) for symbol in SYMBOLS}
    assert engine.notifier is not None
    await asyncio.wait_for(engine.notifier.connected.wait(), WAIT_S)

    # Before its bug shows, the broken symbol holds a position whose stop rests on the exchange.
    await deliver(engine, fake, {BROKEN: (series[BROKEN], entry)})
    assert BROKEN in engine.portfolio.positions
    assert len(rig.open_stops("ETHUSDT")) == 1
    traffic_before = order_traffic(fake, BROKEN)

    def bug(strategy: Any) -> Any:
        raise RuntimeError(f"simulated bug; api_key={fake.api_key} secret {fake.api_key}")

    engine.histories[BROKEN].prepared = bug  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="engine.runtime.worker_guard")
    for step in range(BARS_AFTER_FAILURE):
        bars = {symbol: (series[symbol], entry + step) for symbol in HEALTHY}
        bars[BROKEN] = (series[BROKEN], entry + 1 + step)
        await deliver(engine, fake, bars)

    # The broken symbol: marked failed, later candles taken off its queue but not decided on, its position
    # and its exchange stop untouched (no order placed or cancelled for it).
    failure = await rig.wait_event("SystemError", lambda e: e.data.get("symbol") == BROKEN)
    assert failure.severity == "critical" and failure.data["task"] == f"worker {BROKEN}"
    assert failure.data["error"].startswith("RuntimeError: simulated bug")
    assert fake.api_key not in failure.data["error"] and fake.api_key not in failure.message
    assert engine.guard.failed_symbols == (BROKEN,)
    assert engine.guard.skipped[BROKEN] == BARS_AFTER_FAILURE - 1
    assert engine.views[BROKEN].last_bar_ms == int(sample.open_time_ms[entry])
    assert order_traffic(fake, BROKEN) == traffic_before
    assert BROKEN in engine.portfolio.positions and len(rig.open_stops("ETHUSDT")) == 1
    await until(lambda: (s := engine.snapshot()) is not None and s.failed_symbols == (BROKEN,),
                "a snapshot with the failed symbol")

    # The other two: every candle processed, and their decision path traded (each bought on the entry bar).
    last_bar_ms = int(sample.open_time_ms[entry + BARS_AFTER_FAILURE - 1])
    for symbol in HEALTHY:
        assert engine.views[symbol].last_bar_ms == last_bar_ms
        market = symbol.replace("/", "")
        assert [o.status for o in rig.orders(market, "BUY", "MARKET")] == ["FILLED"]
        assert len(rig.open_stops(market)) == 1

    # The alert reaches the phone, without the key; the exception is logged once with its traceback.
    def alert(message: SentMessage) -> bool:
        return message.chat_id == PRIVATE_CHAT and f"{BROKEN} stopped trading" in message.text

    sent = await api.wait_for_sent(alert, timeout=WAIT_S)
    assert all(fake.api_key not in m.text for m in sent)
    logged = [r for r in caplog.records if r.name == "engine.runtime.worker_guard" and r.levelno == logging.ERROR]
    assert len(logged) == 1
    assert "Traceback" in (logged[0].exc_text or "") or logged[0].exc_info is not None
    assert not rig.task.done(), "the engine keeps running"


# ------------------------------------------------------------------------------- an engine task fails
def telegram_paper_engine(tmp_path: Path, api: FakeBotApi) -> TradingEngine:
    settings = make_settings(tmp_path, ["BTC/USDT"]).model_copy(update={"telegram": telegram(api)})
    return build_engine(settings, series={"BTC/USDT": btc_window(length=700)}, replay_speed=float("inf"),
                        warmup_bars=500, snapshot_rate_hz=50.0, notifier_tuning=FAST_TUNING)


def break_snapshots_once(engine: TradingEngine) -> Callable[[], None]:
    """Makes the snapshot publisher's next snapshot raise (once); returns the trigger."""
    armed = False
    build = engine.build_snapshot

    def flaky() -> Any:
        nonlocal armed
        if armed:
            armed = False
            raise RuntimeError("simulated bug in the snapshot publisher")
        return build()

    def trigger() -> None:
        nonlocal armed
        armed = True
        engine.emit(happened(engine.clock.now_ms(), "wake the snapshot publisher"))

    engine.build_snapshot = flaky  # type: ignore[method-assign]
    return trigger


@pytest.mark.parametrize("telegram_slow", [False, True], ids=["telegram-connected", "telegram-still-connecting"])
async def test_a_failing_engine_task_stops_the_engine_with_an_alert_and_an_error(
    tmp_path: Path, api: FakeBotApi, telegram_slow: bool
) -> None:
    engine = telegram_paper_engine(tmp_path, api)
    events = engine.bus.subscribe("test")
    trigger = break_snapshots_once(engine)
    engine.pause_candles()
    if telegram_slow:
        api.hang_next("getMe", 0.3)  # the failure comes before the notifier is connected
    task = start(engine)
    await asyncio.wait_for(engine.started.wait(), WAIT_S)
    assert engine.notifier is not None
    if not telegram_slow:
        await asyncio.wait_for(engine.notifier.connected.wait(), WAIT_S)
    trigger()

    with pytest.raises(EngineFailedException) as raised:
        await asyncio.wait_for(task, WAIT_S)
    assert raised.value.task == "snapshots"
    assert raised.value.error == "RuntimeError: simulated bug in the snapshot publisher"
    assert str(raised.value) == "engine stopped: its snapshots task failed: " + raised.value.error
    assert engine.engine_state == "error"
    failed = [e for e in events.drain_events() if e.kind == "EngineFailed"]
    assert [(e.severity, e.data["task"]) for e in failed] == [("critical", "snapshots")]
    # Delivered before run() returned: the notifier's stop flushed the outbox.
    texts = api.texts_to(PRIVATE_CHAT)
    assert any("EngineFailed" in text and "snapshots task failed" in text for text in texts), texts
    async with Store.open(engine.database_path) as store:
        assert not [m for m in await store.outbox_messages("pending") if m.kind == "EngineFailed"]


HEADLESS_SCRIPT = """
import asyncio, sys
from engine.runtime.engine import TradingEngine

async def broken_snapshot_loop(self):
    await asyncio.sleep(0.2)
    raise RuntimeError("simulated bug in the snapshot publisher")

TradingEngine._snapshot_loop = broken_snapshot_loop
from tradebot_tui.cli import main
sys.exit(main(["run", "--headless"]))
"""


async def test_headless_run_exits_1_with_one_line_on_stderr_when_an_engine_task_fails(tmp_path: Path) -> None:
    database = tmp_path / "db" / "tradebot.sqlite3"
    database.parent.mkdir()
    async with Store.open(database) as store:
        await store.upsert_candles(btc_window(length=700))
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\ndatabase_path = "{database}"\nlog_dir = "{tmp_path / "logs"}"\n')
    config.chmod(0o600)
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRADEBOT_")}
    env.update({"PYTHONPATH": str(REPO), "TRADEBOT_CONFIG": str(config),
                "TRADEBOT_SECRETS_FILE": str(tmp_path / "none.enc"), "TRADEBOT_EXCHANGE__SYMBOLS": '["BTC/USDT"]'})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HEADLESS_SCRIPT, env=env, cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out, err = stdout.decode(), stderr.decode()
    assert process.returncode == 1, out[-3000:] + err
    assert err.splitlines() == [
        "error: engine stopped: its snapshots task failed: RuntimeError: simulated bug in the snapshot publisher"
    ], err
    assert "EngineFailed" in out and out.count("Traceback") == 1, out[-3000:]
