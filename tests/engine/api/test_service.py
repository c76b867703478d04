"""Specification of the engine service: where its socket lives, and that the API lives exactly as long as the
engine that holds the database (real paper engine, real server, real client)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from engine.domain.commands import StopEngine
from engine.domain.errors import EngineAlreadyRunningException
from engine.runtime.api.client import EngineClient, EngineUnreachable
from engine.runtime.instance_lock import EngineLock
from engine.runtime.service import MAX_SOCKET_PATH_BYTES, api_socket_path, serve
from tests.engine.runtime_helpers import WAIT_S, btc_window, paper_engine


def test_the_socket_lives_in_a_run_folder_beside_the_database(tmp_path: Path) -> None:
    database = tmp_path / "data" / "tradebot.sqlite3"
    assert api_socket_path(database) == tmp_path / "data" / "run" / "tradebot.sqlite3.sock"


def test_two_databases_in_one_folder_get_two_sockets(tmp_path: Path) -> None:
    assert api_socket_path(tmp_path / "a.sqlite3") != api_socket_path(tmp_path / "b.sqlite3")


def test_a_database_too_deep_for_a_unix_socket_gets_a_short_private_path(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="xdg-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    deep = tmp_path / ("d" * 120) / "tradebot.sqlite3"
    path = api_socket_path(deep)
    runtime.rmdir()
    assert len(os.fsencode(path)) <= MAX_SOCKET_PATH_BYTES
    assert path.parent == runtime / f"tradebot-{os.getuid()}"
    assert path == api_socket_path(deep), "clients find the same socket"
    assert path != api_socket_path(tmp_path / ("d" * 120) / "other.sqlite3")


async def test_the_api_answers_while_the_engine_runs_and_is_gone_after_it_stops(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=700)}, replay_speed=20.0)
    listening: list[Path] = []
    service = asyncio.create_task(serve(engine, on_listening=listening.append))

    async def until_listening() -> None:
        while not listening:
            assert not service.done(), service
            await asyncio.sleep(0.01)
    await asyncio.wait_for(until_listening(), WAIT_S)
    socket = listening[0]
    assert socket == api_socket_path(engine.database_path)
    async with EngineClient(socket) as client:
        info = await client.engine_info()
        assert info["pid"] == os.getpid() and info["mode"] == "paper"
        await client.submit(StopEngine(source="test"))
    await asyncio.wait_for(service, WAIT_S)
    assert not socket.exists()
    async with EngineClient(socket) as client:
        with pytest.raises(EngineUnreachable):
            await client.engine_info()


async def test_a_refused_engine_never_opens_a_socket(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=700)})
    with EngineLock(engine.database_path, mode="paper"):
        with pytest.raises(EngineAlreadyRunningException):
            await asyncio.wait_for(serve(engine), WAIT_S)
    assert not api_socket_path(engine.database_path).exists()
