"""Specification: a running engine serves its state, events and commands on a private Unix socket.

A real paper engine (replay of real BTC candles) runs in the test's loop with the real aiohttp server; clients
are the real aiohttp client over the socket (engine.runtime.api.client) and, for the schema, jsonschema.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest

from engine.domain.commands import Halt, Resume
from engine.domain.events import TradingStateChanged
from engine.domain.models import TradingState
from engine.domain.snapshot import EngineSnapshot
from engine.runtime.api import wire
from engine.runtime.api.client import ApiRefused, EngineClient, EngineUnreachable, RemoteEngine
from engine.runtime.api.feed import NumberedEvent
from engine.runtime.api.server import SOCKET_NAME, ApiServer, EngineInfo
from engine.runtime.engine import TradingEngine
from tests.engine.runtime_helpers import WAIT_S, btc_window, finish, paper_engine, start


class Served:
    def __init__(self, engine: TradingEngine, server: ApiServer) -> None:
        self.engine, self.server = engine, server
        self.socket = server.socket_path


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=700)}, replay_speed=20.0)
    task = start(engine)
    await asyncio.wait_for(engine.started.wait(), WAIT_S)
    info = EngineInfo(pid=os.getpid(), mode=engine.mode, started_ms=0, database=str(engine.database_path),
                      version="test")
    server = ApiServer(engine, tmp_path / "run" / SOCKET_NAME, info)
    await server.start()
    try:
        yield Served(engine, server)
    finally:
        await server.stop()
        await finish(engine, task)


async def next_matching(stream: AsyncIterator[Any], predicate: Any) -> Any:
    async def scan() -> Any:
        async for item in stream:
            if predicate(item):
                return item
    return await asyncio.wait_for(scan(), WAIT_S)


async def test_the_socket_is_private_to_the_owner(served: Served) -> None:
    assert stat.S_IMODE(served.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(served.socket.parent.stat().st_mode) == 0o700


async def test_the_engine_says_who_it_is(served: Served) -> None:
    async with EngineClient(served.socket) as client:
        info = await client.engine_info()
    assert info["pid"] == os.getpid() and info["mode"] == "paper" and info["version"] == wire.WIRE_VERSION


async def test_the_snapshot_is_the_engines_own(served: Served) -> None:
    await asyncio.wait_for(_until(lambda: served.engine.snapshot() is not None), WAIT_S)
    async with EngineClient(served.socket) as client:
        snapshot = await client.snapshot()
    assert isinstance(snapshot, EngineSnapshot)
    assert snapshot.mode == "paper" and snapshot.exchange == served.engine.snapshot().exchange  # type: ignore[union-attr]


async def test_a_halt_posted_to_the_api_halts_the_engine_and_streams_back_as_an_event(served: Served) -> None:
    async with EngineClient(served.socket) as client:
        stream = client.stream(since=0)
        await client.submit(Halt(source="cli", reason="api test"))
        changed = await next_matching(stream, lambda item: isinstance(item, NumberedEvent)
                                      and isinstance(item.event, TradingStateChanged))
        assert changed.event.state is TradingState.HALTED
        halted = await next_matching(stream, lambda item: isinstance(item, EngineSnapshot)
                                     and item.trading_state is TradingState.HALTED)
        assert halted.trading_state is TradingState.HALTED
        await stream.aclose()  # type: ignore[attr-defined]
    assert served.engine.core.trading_state is TradingState.HALTED


async def test_events_after_an_id_are_replayed_without_a_gap(served: Served) -> None:
    async with EngineClient(served.socket) as client:
        await client.submit(Halt(source="cli"))
        await client.submit(Resume(source="cli"))
        await asyncio.wait_for(_until(lambda: _kinds(served).count("TradingStateChanged") >= 2), WAIT_S)
        everything = await client.events(since=0)
        later = await client.events(since=everything[0].id)
    ids = [item.id for item in everything]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert [item.id for item in later] == ids[1:]


async def test_a_second_console_sees_a_halt_sent_by_the_first(served: Served) -> None:
    async with RemoteEngine(served.socket) as first, RemoteEngine(served.socket) as second:
        runs = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
        events = second.bus.subscribe("second console")
        await asyncio.wait_for(asyncio.gather(first.wait_attached(), second.wait_attached()), WAIT_S)
        await first.submit(Halt(source="console"))
        seen = await asyncio.wait_for(_first_state_change(events), WAIT_S)
        assert seen.state is TradingState.HALTED
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)


async def test_a_bad_command_is_refused_with_the_field_named(served: Served) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(served.socket))) as session:
        async with session.post("http://engine/v1/commands", json={"kind": "Halt", "reasn": "x"}) as response:
            body = await response.json()
            assert response.status == 400 and body["error"] == "command.reasn: no such field"
        async with session.post("http://engine/v1/commands", data=b"{not json") as response:
            assert response.status == 400 and "not JSON" in (await response.json())["error"]
        async with session.get("http://engine/v1/events", params={"since": "-1"}) as response:
            assert response.status == 400 and (await response.json())["error"].startswith("since:")


async def test_every_answer_matches_the_published_schema(served: Served) -> None:
    await asyncio.wait_for(_until(lambda: served.engine.snapshot() is not None), WAIT_S)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(served.socket))) as session:
        async with session.get("http://engine/v1/openapi.json") as response:
            document = await response.json()
        async with session.post("http://engine/v1/commands", json={"kind": "Halt", "source": "cli"}) as response:
            assert response.status == 202
        await asyncio.wait_for(_until(lambda: "TradingStateChanged" in _kinds(served)), WAIT_S)
        async with session.get("http://engine/v1/snapshot") as response:
            snapshot = (await response.json())["snapshot"]
        async with session.get("http://engine/v1/events", params={"since": "0"}) as response:
            events = (await response.json())["events"]
    resolver = {"components": document["components"]}

    def check(data: Any, name: str) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", **resolver}
        jsonschema.validate(data, schema)

    check(snapshot, "EngineSnapshot")
    assert events
    for item in events:
        check(item, "NumberedEvent")
    check({"kind": "SetRiskLimit", "key": "risk.max_daily_loss_percent", "value": 3.0}, "Command")
    with pytest.raises(jsonschema.ValidationError):
        check({"kind": "Halt", "reasn": "typo"}, "Command")


async def test_a_client_with_no_engine_gets_one_line(tmp_path: Path) -> None:
    async with EngineClient(tmp_path / "nothing.sock") as client:
        with pytest.raises(EngineUnreachable, match="no engine answers on .*nothing.sock"):
            await client.engine_info()


async def test_a_stale_socket_from_a_dead_engine_is_replaced(served: Served, tmp_path: Path) -> None:
    await served.server.stop()
    dead = tmp_path / "run" / SOCKET_NAME
    import socket as socket_module

    leftover = socket_module.socket(socket_module.AF_UNIX)
    leftover.bind(str(dead))  # what a SIGKILLed engine leaves behind
    leftover.close()
    await served.server.start()
    async with EngineClient(dead) as client:
        assert (await client.engine_info())["mode"] == "paper"


async def test_the_api_refuses_a_client_of_another_version(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.runtime.api.client.WIRE_VERSION", 99)
    async with EngineClient(served.socket) as client:
        with pytest.raises(ApiRefused, match="API version 1, this client 99"):
            await client.engine_info()


def _kinds(served: Served) -> list[str]:
    return [item.event.kind for item in served.server.journal.since(0)]


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def _first_state_change(subscription: Any) -> TradingStateChanged:
    while True:
        event = await subscription.next_event()
        if isinstance(event, TradingStateChanged):
            return event
