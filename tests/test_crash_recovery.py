"""Specification of crash recovery: `tradebot run --headless --live` killed with SIGKILL against the fake Binance.

The engine runs in a real subprocess with the real ccxt client; the fake exchange runs in the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.analysis.strategy import Strategy, StrategyParams
from engine.config import Settings
from engine.data.sample import load_sample
from engine.domain.models import Candles
from tests.fakes.fake_binance import FakeBinance, Fault, FaultKind

REPO = Path(__file__).resolve().parents[1]
HOUR_MS = 3_600_000
HISTORY = 500
WAIT_S = 40.0
UNKNOWN_WINDOW_S = 3.0


def _shifted_candles() -> Candles:
    """Real BTC 1h candles moved so that every one of them closed in the past (the engine runs on wall time)."""
    candles = load_sample("BTC/USDT", "1h").slice(0, 2000)
    now_hour = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    offset = now_hour - 2 * HOUR_MS - int(candles.open_time_ms[-1])
    return Candles("BTC/USDT", "1h", candles.open_time_ms + offset, candles.open, candles.high, candles.low,
                   candles.close, candles.volume)


def _first_entry_bar(candles: Candles) -> int:
    """Index of a bar on which the engine (holding the 500 bars before it) decides to buy."""
    settings = Settings()
    strategy = Strategy(StrategyParams.from_settings(settings), settings.risk, settings.breaker)
    for index in range(HISTORY, len(candles)):
        if strategy.prepare(candles.slice(index - HISTORY, index + 1)).entry_direction[-1] == 1:
            return index
    raise AssertionError("no entry in the sample")


def _rows(candles: Candles, stop: int) -> list[tuple[int, str, str, str, str, str]]:
    return [(int(candles.open_time_ms[i]), str(candles.open[i]), str(candles.high[i]), str(candles.low[i]),
             str(candles.close[i]), str(candles.volume[i])) for i in range(stop)]


class Rig:
    def __init__(self, fake: FakeBinance, tmp_path: Path) -> None:
        self.fake = fake
        self.db = tmp_path / "tradebot.sqlite3"
        self.log_path = tmp_path / "engine.out"
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            "[exchange]\n"
            'mode = "live"\nfeed = "live"\nsymbols = ["BTC/USDT"]\nbase_timeframe = "1h"\n'
            f'base_url = "{fake.base_url}"\nrequest_timeout_s = 1.0\nmax_retries = 2\n'
            "retry_base_delay_s = 0.05\nretry_max_delay_s = 0.2\n"
            f"unknown_order_window_s = {UNKNOWN_WINDOW_S}\n"
            "[breaker]\napi_error_threshold = 5\nlatching = [\"system\"]\n"
            f'[storage]\ndatabase_path = "{self.db}"\nlog_dir = "{tmp_path / "logs"}"\n'
        )
        self.config.chmod(0o600)  # live mode refuses a config file other users can read
        self.env = {**os.environ, "TRADEBOT_CONFIG": str(self.config), "PYTHONPATH": str(REPO),
                    "TRADEBOT_EXCHANGE__API_KEY": fake.api_key,
                    "TRADEBOT_EXCHANGE__API_SECRET": fake.api_secret or ""}
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tradebot_tui.cli", "run", "--headless", "--live",
            env=self.env, cwd=str(REPO), stdout=out, stderr=out,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def wait_exit(self) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), WAIT_S)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"engine exited ({self.process.returncode}) waiting for {what}:\n"
                                     + self.log_path.read_text()[-3000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n" + self.log_path.read_text()[-3000:])
            await asyncio.sleep(0.02)

    def query(self, sql: str) -> list[Any]:
        if not self.db.exists():
            return []
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
            try:
                return conn.execute(sql).fetchall()
            except sqlite3.OperationalError:
                return []

    def orders(self, side: str, kind: str) -> list[Any]:
        return [o for o in self.fake.exchange.orders if o.side == side and o.type == kind]

    def klines_requests(self) -> int:
        return len(self.fake.requests("GET", "/api/v3/klines"))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with FakeBinance() as fake:
        fake.add_market("BTC", "USDT")
        fake.set_balance("USDT", "10000")
        rig = Rig(fake, tmp_path)
        yield rig
        if rig.process is not None and rig.process.returncode is None:
            rig.kill()
            await rig.process.wait()


async def test_kill_between_intent_and_ack_then_restart_neither_duplicates_nor_loses_the_order(rig: Rig) -> None:
    candles = _shifted_candles()
    entry_bar = _first_entry_bar(candles)
    fake = rig.fake
    fake.exchange.load_candles("BTCUSDT", "1h", _rows(candles, entry_bar))
    fake.set_price("BTC/USDT", f"{candles.close[entry_bar]:.2f}")
    await rig.start()
    await rig.until(lambda: rig.klines_requests() >= 2, "the engine polling the feed")

    # The next order reaches the exchange and is booked, but its reply never arrives; we kill the engine then.
    fake.inject("POST", "/api/v3/order", Fault(FaultKind.TIMEOUT_AFTER_PROCESSING, hang_s=20))
    fake.exchange.load_candles("BTCUSDT", "1h", _rows(candles, entry_bar + 1))
    await rig.until(lambda: len(rig.orders("BUY", "MARKET")) == 1, "the entry order at the exchange")
    rig.kill()
    await rig.wait_exit()
    intents = rig.query("SELECT client_order_id, status FROM orders WHERE kind = 'entry'")
    assert [status for _, status in intents] == ["intent"], "the intent is written before the order is sent"

    await rig.start()
    await rig.until(lambda: len(rig.orders("SELL", "STOP_LOSS")) == 1, "the protective stop after restart")
    await rig.until(lambda: rig.query("SELECT status FROM orders WHERE kind = 'stop' AND status = 'open'")
                    != [], "the stop persisted")
    buys = rig.orders("BUY", "MARKET")
    assert len(buys) == 1 and buys[0].client_order_id == intents[0][0]
    positions = rig.query("SELECT symbol, quantity FROM positions")
    held = fake.exchange.free("BTC") + fake.exchange.locked("BTC")
    assert positions == [("BTC/USDT", pytest.approx(float(held)))]
    assert rig.query("SELECT status FROM orders WHERE kind = 'entry'") == [("filled",)]

    # A second crash in the steady state changes nothing at the exchange.
    rig.kill()
    await rig.wait_exit()
    await rig.start()
    await rig.until(lambda: rig.klines_requests() >= 6, "the restarted engine polling")
    await asyncio.sleep(0.5)
    assert len(rig.orders("BUY", "MARKET")) == 1
    assert len([o for o in rig.orders("SELL", "STOP_LOSS") if o.is_open]) == 1
    assert rig.query("SELECT symbol, quantity FROM positions") == positions


@pytest.mark.parametrize("fault", [
    pytest.param(Fault(FaultKind.UNKNOWN_AFTER_BOOKING), id="503-1007-after-booking"),
    pytest.param(Fault(FaultKind.LATE_VISIBILITY, visible_after_s=1.5), id="visible-only-later"),
])
async def test_kill_while_an_entrys_outcome_is_unknown_then_restart_books_it_once_net_and_protects_it(
    rig: Rig, fault: Fault
) -> None:
    candles = _shifted_candles()
    entry_bar = _first_entry_bar(candles)
    fake = rig.fake
    fake.exchange.load_candles("BTCUSDT", "1h", _rows(candles, entry_bar))
    fake.set_price("BTC/USDT", f"{candles.close[entry_bar]:.2f}")
    await rig.start()
    await rig.until(lambda: rig.klines_requests() >= 2, "the engine polling the feed")

    fake.inject("POST", "/api/v3/order", fault)
    fake.exchange.load_candles("BTCUSDT", "1h", _rows(candles, entry_bar + 1))
    await rig.until(lambda: len(fake.order_posts("BTC/USDT")) >= 1, "the entry order sent")
    rig.kill()  # while the engine is still finding out what became of it
    await rig.wait_exit()

    await rig.start()
    await rig.until(lambda: len([o for o in rig.orders("SELL", "STOP_LOSS") if o.is_open]) == 1,
                    "the protective stop after restart")
    await rig.until(lambda: rig.query("SELECT quantity FROM positions") != [], "the position persisted")
    assert len(rig.orders("BUY", "MARKET")) == 1, "bought once"
    assert fake.duplicate_client_ids() == []
    held = fake.exchange.free("BTC") + fake.exchange.locked("BTC")
    [(quantity,)] = rig.query("SELECT quantity FROM positions")
    assert quantity == pytest.approx(float(held), abs=1e-12), "booked net of the fee Binance kept in BTC"


async def test_system_breaker_trips_under_faults_and_keeps_its_state_across_a_crash(rig: Rig) -> None:
    candles = _shifted_candles()
    rig.fake.exchange.load_candles("BTCUSDT", "1h", _rows(candles, HISTORY + 10))
    rig.fake.set_price("BTC/USDT", f"{candles.close[HISTORY + 9]:.2f}")
    await rig.start()
    await rig.until(lambda: rig.klines_requests() >= 2, "the engine polling the feed")

    rig.fake.inject("GET", "/api/v3/klines", FaultKind.SERVER_ERROR, times=1000)
    tripped = "SELECT state_json FROM breaker_state WHERE name = 'system'"
    await rig.until(lambda: any('"open"' in row[0] for row in rig.query(tripped)), "the system breaker tripping")
    assert rig.process is not None and rig.process.returncode is None, "the engine keeps running under faults"
    rig.kill()
    await rig.wait_exit()

    rig.fake._faults.clear()
    await rig.start()
    requests_before = rig.klines_requests()
    await rig.until(lambda: rig.klines_requests() > requests_before, "the restarted engine polling")
    assert rig.process is not None
    rig.process.send_signal(signal.SIGTERM)
    assert await rig.wait_exit() == 0, "SIGTERM stops the engine cleanly"

    status = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebot_tui.cli", "status", "--json", env=rig.env, cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await status.communicate()
    summary = json.loads(output)
    assert summary["breakers"]["system"]["state"] == "open", "a latched breaker survives the crash"
