"""Fixtures for the Telegram notifier: a loopback fake Bot API, a real store, a recording engine double."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import time as dt_time
from pathlib import Path

import pytest
from pydantic import SecretStr

from engine.config import TelegramConfig
from engine.domain.bus import Bus
from engine.domain.commands import Command
from engine.domain.events import Event
from engine.domain.models import BreakerStatus, CircuitState, Position, PositionSide, TradingState
from engine.domain.snapshot import EngineSnapshot
from engine.notify import NotifierTuning, RetryPolicy, TelegramNotifier
from engine.security.redaction import uninstall_secret_redaction
from engine.store import Store
from tests.fakes.fake_bot_api import FakeBotApi

TOKEN = "7000001:AAHk3v2-fakeTokenForTests_abcdefghijklmn"
PRIVATE_CHAT = 111
GROUP_CHAT = -222
STRANGER_CHAT = 999

FAST_TUNING = NotifierTuning(
    poll_timeout_s=1.0,
    retry=RetryPolicy(base_delay_s=0.05, max_delay_s=0.2, max_attempts=4, jitter_ratio=0.2),
    connect_retry=RetryPolicy(base_delay_s=0.05, max_delay_s=0.2, max_attempts=0, jitter_ratio=0.2),
    private_chat_interval_s=0.0,
    group_chat_interval_s=0.0,
    coalesce_window_s=0.05,
    idle_poll_s=0.05,
    report_check_interval_s=0.02,
    confirm_window_s=60.0,
    submit_timeout_s=1.0,
)


class FakeClock:
    """The engine clock, moved by hand (UTC ms)."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


class RecordingEngine:
    """An EngineHandle double: records submitted commands, publishes what the test tells it to."""

    def __init__(self) -> None:
        self.bus = Bus()
        self.submitted: list[Command] = []
        self._submitted_changed = asyncio.Event()

    async def submit(self, command: Command) -> None:
        self.submitted.append(command)
        self._submitted_changed.set()

    def snapshot(self) -> EngineSnapshot | None:
        return self.bus.latest_snapshot

    def publish(self, event: Event) -> None:
        self.bus.publish_event(event)

    async def wait_for_submitted(self, count: int = 1, timeout: float = 5.0) -> list[Command]:
        async def reached() -> None:
            while len(self.submitted) < count:
                self._submitted_changed.clear()
                await self._submitted_changed.wait()

        await asyncio.wait_for(reached(), timeout)
        return self.submitted


def make_snapshot(**overrides: object) -> EngineSnapshot:
    values: dict[str, object] = dict(
        time_ms=1_704_225_600_000,  # 2024-01-02 20:00 UTC
        mode="paper",
        exchange="binance",
        trading_state=TradingState.ACTIVE,
        feed_healthy=True,
        equity=10_250.5,
        cash=8_000.0,
        realized_pnl_today=180.25,
        unrealized_pnl=70.25,
        peak_equity=10_400.0,
        drawdown_pct=1.44,
        max_drawdown_pct=3.1,
        daily_loss_pct=0.0,
        max_drawdown_limit_pct=10.0,
        daily_loss_limit_pct=5.0,
        positions=(
            Position(
                "BTC/USDT",
                PositionSide.LONG,
                0.05,
                42_000.0,
                1_704_200_000_000,
                stop_price=41_000.0,
                last_price=43_405.0,
            ),
        ),
        breakers=(
            BreakerStatus("volatility", CircuitState.CLOSED, 1.2, 3.0),
            BreakerStatus("loss", CircuitState.OPEN, 5.0, 5.0, reason="5 losses in a row", latching=True),
        ),
    )
    values.update(overrides)
    return EngineSnapshot(**values)  # type: ignore[arg-type]


def telegram_config(api: FakeBotApi, token: str = TOKEN, **overrides: object) -> TelegramConfig:
    values: dict[str, object] = dict(
        token=SecretStr(token),
        allowed_chat_ids=[PRIVATE_CHAT, GROUP_CHAT],
        base_url=api.base_url,
        daily_report_utc=dt_time(20, 0),
        request_timeout_s=2.0,
    )
    values.update(overrides)
    return TelegramConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as server:
        yield server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "tradebot.sqlite3") as opened:
        yield opened


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_704_225_000_000)  # 2024-01-02 19:50 UTC


NotifierFactory = Callable[..., Awaitable[TelegramNotifier]]


@pytest.fixture
async def start_notifier(
    api: FakeBotApi, store: Store, engine: RecordingEngine, clock: FakeClock
) -> AsyncIterator[NotifierFactory]:
    """Builds and starts notifiers (config/tuning overridable); stops them all at teardown."""
    started: list[TelegramNotifier] = []

    async def factory(
        *,
        config: TelegramConfig | None = None,
        tuning: NotifierTuning = FAST_TUNING,
        on_store: Store | None = None,
        wait_connected: bool = True,
    ) -> TelegramNotifier:
        notifier = TelegramNotifier(config or telegram_config(api), on_store or store, engine, clock, tuning=tuning)
        started.append(notifier)
        await notifier.start()
        if wait_connected:
            await asyncio.wait_for(notifier.connected.wait(), 5.0)
        return notifier

    yield factory
    for notifier in started:
        await notifier.stop()
    uninstall_secret_redaction()  # the notifier installs it process-wide; other tests expect raw logs
