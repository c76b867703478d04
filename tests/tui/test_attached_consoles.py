"""Specification: consoles attach to the engine service; leaving, killing or losing one changes nothing there.

The service is the real ``tradebot run --headless`` in a subprocess (paper replay of the bundled candles,
slowed down so it is still trading while the consoles come and go). Consoles are the real Textual app over
the real API client (``RemoteEngine``), driven by Pilot in this process, or the real ``tradebot attach`` in
a subprocess where a console process is killed. Every wait polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from engine.config import Settings
from engine.domain.models import TradingState
from engine.runtime.api.client import EngineClient, EngineUnreachable, RemoteEngine
from engine.runtime.service import api_socket_path
from tradebot_tui.app import TradebotApp, create_app
from tradebot_tui.attach import engine_holds, locate_engine
from tradebot_tui.widgets.events import EventLog
from tradebot_tui.widgets.status import StatusBar

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
SIZE = (120, 40)


class Service:
    """``tradebot run --headless`` on a private config, started and stopped by the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.database = tmp_path / "data" / "tradebot.sqlite3"
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            '[exchange]\nsymbols = ["BTC/USDT", "ETH/USDT"]\nreplay_speed = 3.0\n'
            f'[storage]\ndatabase_path = "{self.database}"\nlog_dir = "{tmp_path / "logs"}"\n'
        )
        self.config.chmod(0o600)
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("TRADEBOT_")}
        self.env.update(PYTHONPATH=str(REPO), TRADEBOT_CONFIG=str(self.config),
                        TRADEBOT_SECRETS_FILE=str(tmp_path / "none.enc"))
        self.socket = api_socket_path(self.database)
        self.process: subprocess.Popen[bytes] | None = None
        self.settings = Settings(exchange={"symbols": ["BTC/USDT", "ETH/USDT"]},
                                 storage={"database_path": self.database, "log_dir": tmp_path / "logs"})

    def start(self) -> subprocess.Popen[bytes]:
        with (self.tmp_path / "service.out").open("ab") as out:
            self.process = subprocess.Popen(self.tradebot("run", "--headless"), env=self.env, cwd=str(self.tmp_path),
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        return self.process

    def tradebot(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tradebot_tui.cli", *args]

    async def info(self) -> dict[str, Any] | None:
        try:
            async with EngineClient(self.socket, timeout_s=2.0) as client:
                return await client.engine_info()
        except EngineUnreachable:
            return None

    async def until_answering(self) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while (info := await self.info()) is None:
            assert self.process is None or self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, "the service never answered:\n" + self.output()
            await asyncio.sleep(0.05)
        return info

    def output(self) -> str:
        path = self.tmp_path / "service.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    rig = Service(tmp_path)
    rig.start()
    await rig.until_answering()
    yield rig
    rig.stop()


async def until(condition: Callable[[], bool], what: str, pilot: Pilot[int] | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if pilot is not None:
            await pilot.pause(0.05)
        else:
            await asyncio.sleep(0.05)


def console(service: Service) -> TradebotApp:
    return create_app(service.settings, RemoteEngine(service.socket))


def shows(app: TradebotApp, text: str) -> bool:
    return text in str(app.query_one(StatusBar).status_text())


async def test_a_halt_from_one_console_shows_in_the_other_and_a_third_sees_the_same_state(service: Service) -> None:
    first, second = console(service), console(service)
    async with first.run_test(size=SIZE) as one, second.run_test(size=SIZE) as two:
        await until(lambda: first.snapshot is not None and second.snapshot is not None, "both consoles attached")
        assert shows(first, f"pid {service.process.pid}"), "the header names the engine it is attached to"
        await one.press("h")
        await until(lambda: second.snapshot is not None and second.snapshot.trading_state is TradingState.HALTED,
                    "the halt reaching the other console", two)
        await one.press("q")
        await one.press("d")  # detach
        await until(lambda: not first.is_running, "the first console leaving", two)
        left_at = second.snapshot.time_ms
        await until(lambda: second.snapshot.time_ms > left_at, "the engine trading on after a console left", two)
    assert service.process.poll() is None, "leaving consoles never stop the engine"

    third = console(service)
    async with third.run_test(size=SIZE) as three:
        await until(lambda: third.snapshot is not None, "the third console attached", three)
        async with EngineClient(service.socket) as client:
            engine_view = await client.snapshot()
        assert third.snapshot.trading_state is TradingState.HALTED
        assert {p.symbol for p in third.snapshot.positions} == {p.symbol for p in engine_view.positions}
        log_text = " ".join(str(line) for line in third.query_one(EventLog).lines)
        assert "Halt from console" in log_text, "re-attaching shows the recent events too"


async def test_losing_the_service_turns_the_header_red_and_the_console_reattaches(service: Service) -> None:
    app = console(service)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.snapshot is not None, "attached", pilot)
        service.stop()
        await until(lambda: shows(app, "DISCONNECTED"), "the header showing the lost connection", pilot)
        restarted = service.start()
        await service.until_answering()
        await until(lambda: shows(app, f"pid {restarted.pid}"), "re-attached to the new service", pilot)
        assert not shows(app, "DISCONNECTED")


async def test_a_console_quitting_with_stop_stops_the_engine(service: Service) -> None:
    app = console(service)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.snapshot is not None, "attached", pilot)
        await pilot.press("q")
        await pilot.press("s")
        await until(lambda: not app.is_running, "the console leaving", pilot)
    assert service.process.wait(WAIT_S) == 0, service.output()
    assert not engine_holds(service.database)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP])
async def test_killing_a_console_process_leaves_the_service_trading(service: Service, signum: int) -> None:
    with (service.tmp_path / "console.out").open("wb") as out:
        attached = subprocess.Popen(service.tradebot("attach"), env=service.env, cwd=str(service.tmp_path),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    try:
        await until_clients(service, 1, "the console process attached")
        async with EngineClient(service.socket) as client:
            before = (await client.snapshot()).time_ms
            attached.send_signal(signum)
            attached.wait(WAIT_S)
            await until_clients(service, 0, "the service noticing the console is gone")
            deadline = time.monotonic() + WAIT_S
            while (await client.snapshot()).time_ms <= before:
                assert time.monotonic() < deadline, "the service stopped trading"
                await asyncio.sleep(0.05)
    finally:
        if attached.poll() is None:
            attached.kill()
            attached.wait()
    assert service.process.poll() is None


async def clients_attached(service: Service) -> int:
    info = await service.info()
    return int(info["clients"]) if info is not None else -1


async def until_clients(service: Service, count: int, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while await clients_attached(service) != count:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_tradebot_with_a_service_running_attaches_instead_of_starting_an_engine(tmp_path: Path) -> None:
    rig = Service(tmp_path)
    started = locate_engine(rig.database, config=str(rig.config), live=False, start=True, log_dir=tmp_path / "logs")
    try:
        assert started.started_here
        pid = started.info["pid"]
        assert os.getsid(pid) != os.getsid(0), "the service runs in its own session: a lost terminal never reaches it"
        again = locate_engine(rig.database, config=str(rig.config), live=False, start=True, log_dir=tmp_path / "logs")
        assert not again.started_here and again.info["pid"] == pid
    finally:
        if engine_holds(rig.database):
            os.kill(started.info["pid"], signal.SIGTERM)
            deadline = time.monotonic() + WAIT_S
            while engine_holds(rig.database):
                assert time.monotonic() < deadline, "the started service did not stop"
                time.sleep(0.05)
