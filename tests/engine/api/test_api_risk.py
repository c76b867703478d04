"""Specification: an attached console changes risk settings over the API only with the engine's grant.

A real paper engine with a risk-change passphrase serves the real API; the console's side is
:class:`engine.runtime.api.remote_gate.RemoteRiskGate` over the real client. The engine keeps the grants
and redeems each once; a wrong passphrase is refused with 403 and audited by the engine.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest

from engine.domain.commands import Halt, Resume, SetRiskLimit, StopEngine
from engine.domain.events import CommandAccepted, CommandRejected, RiskLimitChanged
from engine.domain.ports import RiskChangeRefused
from engine.runtime.api.client import EngineClient, RemoteEngine
from engine.runtime.api.remote_gate import RemoteRiskGate
from engine.runtime.api.server import SOCKET_NAME, ApiServer, EngineInfo
from engine.runtime.engine import TradingEngine
from engine.security.auth import AuthenticationFailed, KdfParams, hash_passphrase
from tests.engine.runtime_helpers import WAIT_S, btc_window, finish, paper_engine, start

PASSPHRASE = "correct horse battery staple"
FAST_KDF = KdfParams(n=2**4, r=8, p=1)
LIMIT = "risk.max_daily_loss_percent"


class Served:
    def __init__(self, engine: TradingEngine, socket: Path) -> None:
        self.engine, self.socket = engine, socket

    def events(self, kind: type) -> list[Any]:
        return [e for e in self.engine.recent_events if isinstance(e, kind)]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=700)}, replay_speed=20.0,
                          risk_passphrase_hash=hash_passphrase(PASSPHRASE, FAST_KDF))
    task = start(engine)
    await asyncio.wait_for(engine.started.wait(), WAIT_S)
    server = ApiServer(engine, tmp_path / "run" / SOCKET_NAME,
                       EngineInfo(os.getpid(), engine.mode, 0, str(engine.database_path), "test"))
    await server.start()
    try:
        yield Served(engine, server.socket_path)
    finally:
        await server.stop()
        await finish(engine, task)


async def until(condition: Any) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), WAIT_S)


async def test_the_gate_view_reports_the_values_in_force_and_matches_the_schema(served: Served) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(served.socket))) as session:
        async with session.get("http://engine/v1/openapi.json") as response:
            document = await response.json()
        async with session.get("http://engine/v1/risk") as response:
            view = await response.json()
    jsonschema.validate(view, document["paths"]["/v1/risk"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"] | {"components": document["components"]})
    assert view["passphrase_configured"] is True
    assert view["values"][LIMIT] == served.engine.core.risk.config.max_daily_loss_percent
    assert view["resume"] is None, "nothing is latched: a plain resume needs no grant"


async def test_a_granted_change_is_applied_once_and_a_replayed_grant_is_refused(served: Served) -> None:
    async with EngineClient(served.socket) as client:
        gate = RemoteRiskGate(client)
        await gate.refresh()
        command = SetRiskLimit(source="console", key=LIMIT, value=3.5)
        assert gate.needs_grant(command) and gate.describe(command).new_value == 3.5
        granted = await gate.authorize_with_passphrase(command, PASSPHRASE)
        assert granted.grant
        await client.submit(granted)
        await until(lambda: served.events(RiskLimitChanged))
        await client.submit(granted)  # the same grant again
        await until(lambda: served.events(CommandRejected))
        await gate.refresh()
        assert gate.current_value(LIMIT) == 3.5
    assert served.engine.core.risk.config.max_daily_loss_percent == 3.5
    assert "not authenticated" in served.events(CommandRejected)[-1].outcome


async def test_a_wrong_passphrase_is_refused_and_nothing_changes(served: Served) -> None:
    before = served.engine.core.risk.config.max_daily_loss_percent
    async with EngineClient(served.socket) as client:
        with pytest.raises(AuthenticationFailed):
            await RemoteRiskGate(client).authorize_with_passphrase(
                SetRiskLimit(source="console", key=LIMIT, value=9.0), "wrong")
        with pytest.raises(RiskChangeRefused, match="unknown setting"):
            await RemoteRiskGate(client).authorize_with_passphrase(
                SetRiskLimit(source="console", key="risk.nope", value=1.0), PASSPHRASE)
        await client.submit(SetRiskLimit(source="console", key=LIMIT, value=9.0))  # no grant at all
        await until(lambda: served.events(CommandRejected))
    assert served.engine.core.risk.config.max_daily_loss_percent == before


async def test_authorising_a_command_that_needs_no_grant_is_a_400(served: Served) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(served.socket))) as session:
        async with session.post("http://engine/v1/risk/authorize",
                                json={"command": {"kind": "Halt"}, "passphrase": PASSPHRASE}) as response:
            assert response.status == 400 and "needs no risk-change authentication" in (await response.json())["error"]
        async with session.post("http://engine/v1/risk/authorize", json={"command": {"kind": "Resume"}}) as response:
            assert response.status == 400 and (await response.json())["error"].startswith("passphrase:")


async def test_an_attached_engine_handle_offers_the_remote_gate(served: Served) -> None:
    remote = RemoteEngine(served.socket)
    follower = asyncio.create_task(remote.run())
    try:
        await asyncio.wait_for(remote.wait_attached(), WAIT_S)
        assert remote.risk_gate.passphrase_configured
        assert not remote.risk_gate.needs_grant(Resume(source="console"))
        await remote.submit(Halt(source="console"))
        await until(lambda: served.events(CommandAccepted))
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def test_stop_engine_stops_the_engine_through_the_api(served: Served) -> None:
    async with EngineClient(served.socket) as client:
        await client.submit(StopEngine(source="cli", reason="test"))
    await until(lambda: served.engine._stop.is_set())
    accepted = [e for e in served.events(CommandAccepted) if e.command == "StopEngine"]
    assert accepted and "engine stopping" in accepted[0].outcome
