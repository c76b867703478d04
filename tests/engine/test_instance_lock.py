"""Specification of EngineLock: one engine per database, refused with the holder's pid, never left stale."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.domain.errors import DataException, EngineAlreadyRunningException, TradingBotException
from engine.runtime.engine import build_engine
from engine.runtime.instance_lock import LOCK_STATE_KEY, EngineLock, LockHolder, lock_path_for, probe, read_holder
from engine.store import Store
from tests.engine.runtime_helpers import btc_window, finish, make_settings, paper_engine, start

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 20.0


def test_the_lock_file_sits_beside_the_database(tmp_path: Path) -> None:
    assert lock_path_for(tmp_path / "tradebot.sqlite3") == tmp_path / "tradebot.sqlite3.lock"


def test_a_second_acquire_in_the_same_process_is_refused_naming_the_first_holder(tmp_path: Path) -> None:
    database = tmp_path / "tradebot.sqlite3"
    first = EngineLock.take(database, mode="paper")
    try:
        with pytest.raises(EngineAlreadyRunningException) as refused:
            EngineLock.take(database, mode="live")
        message = str(refused.value)
        assert isinstance(refused.value, TradingBotException)
        assert refused.value.pid == os.getpid()
        assert "\n" not in message
        assert message.startswith(f"another tradebot engine (pid {os.getpid()}, paper, started ")
        assert message.endswith(f" UTC) holds {database}; stop it first (it keeps trading)")
        with pytest.raises(EngineAlreadyRunningException):
            probe(database)
        assert first.held
        assert read_holder(database) == first.holder  # the refused acquire did not touch the holder's record
    finally:
        first.release()


def test_release_lets_it_be_taken_again_and_is_idempotent(tmp_path: Path) -> None:
    database = tmp_path / "tradebot.sqlite3"
    first = EngineLock.take(database)
    first.release()
    first.release()
    assert not first.held
    probe(database)  # free
    second = EngineLock.take(database, mode="live")
    try:
        assert second.holder is not None and second.holder.mode == "live"
        assert read_holder(database) == second.holder
    finally:
        second.release()


def test_the_lock_file_is_private_and_names_pid_start_and_mode(tmp_path: Path) -> None:
    database = tmp_path / "tradebot.sqlite3"
    lock_path_for(database).write_text("left over by something else")
    lock_path_for(database).chmod(0o644)
    before_ms = int(time.time() * 1000)
    with EngineLock(database, mode="paper") as lock:
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        holder = read_holder(database)
        assert holder is not None and holder.pid == os.getpid() and holder.mode == "paper"
        assert holder.started_ms is not None and before_ms <= holder.started_ms <= int(time.time() * 1000)
        assert lock.as_state()["pid"] == os.getpid() and lock.as_state()["path"] == str(lock.path)
    assert not lock.held


def test_a_new_lock_file_is_created_0600(tmp_path: Path) -> None:
    database = tmp_path / "tradebot.sqlite3"
    with EngineLock(database):
        assert stat.S_IMODE(lock_path_for(database).stat().st_mode) == 0o600


def test_an_unreadable_holder_is_reported_as_pid_unknown(tmp_path: Path) -> None:
    database = tmp_path / "tradebot.sqlite3"
    with EngineLock(database):
        lock_path_for(database).write_text("")  # e.g. read while the holder was writing
        with pytest.raises(EngineAlreadyRunningException) as refused:
            EngineLock.take(database)
    assert refused.value.pid is None
    assert str(refused.value) == (
        f"another tradebot engine (pid unknown) holds {database}; stop it first (it keeps trading)"
    )


def test_holder_text_that_is_not_a_holder_parses_to_none() -> None:
    assert LockHolder.parse('{"pid": 12, "mode": "live", "started_ms": 0}') == LockHolder(12, 0, "live")
    for text in ("", "{", "[]", '{"pid": "12"}', '{"pid": true}', '{"pid": -1}'):
        assert LockHolder.parse(text) is None


def test_a_lock_held_by_a_killed_process_is_free_afterwards(tmp_path: Path) -> None:
    database = tmp_path / "tradebot.sqlite3"
    holder_code = (
        "import sys, time\n"
        "from engine.runtime.instance_lock import EngineLock\n"
        "lock = EngineLock.take(sys.argv[1], mode='paper')\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", holder_code, str(database)], cwd=str(REPO),
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        with pytest.raises(EngineAlreadyRunningException, match=rf"\(pid {process.pid}, paper, started "):
            EngineLock.take(database)
        process.send_signal(signal.SIGKILL)
        assert process.wait(WAIT_S) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with EngineLock(database) as lock:  # no stale lock: the kernel dropped it with the process
        assert lock.held


async def test_a_running_engine_holds_the_lock_records_its_holder_and_releases_it_when_stopped(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=700)}, replay_speed=5.0)
    task = start(engine)
    await asyncio.wait_for(engine.started.wait(), WAIT_S)
    with pytest.raises(EngineAlreadyRunningException, match=rf"^another tradebot engine \(pid {os.getpid()}, paper"):
        probe(engine.database_path)
    second = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=700)})
    with pytest.raises(EngineAlreadyRunningException):
        await asyncio.wait_for(second.run(), WAIT_S)
    assert second.store is None and second.instance_lock is None
    assert engine.instance_lock is not None and engine.instance_lock.held, "the refused engine left ours alone"
    await finish(engine, task)
    assert engine.engine_state == "stopped" and not engine.instance_lock.held
    probe(engine.database_path)
    async with Store.open(engine.database_path) as store:
        recorded = await store.get_state(LOCK_STATE_KEY)
    assert recorded["pid"] == os.getpid() and recorded["mode"] == "paper"
    assert recorded["path"] == str(lock_path_for(engine.database_path))


async def test_a_refused_engine_opens_no_store(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=700)})
    with EngineLock(engine.database_path) as other:
        with pytest.raises(EngineAlreadyRunningException):
            await asyncio.wait_for(engine.run(), WAIT_S)
        assert other.held
    assert engine.engine_state == "error"
    assert not engine.database_path.exists()


async def test_a_start_up_that_fails_after_locking_still_releases_the_lock(tmp_path: Path) -> None:
    engine = build_engine(make_settings(tmp_path, ["DOGE/USDT"]), replay_speed=float("inf"))  # no candles anywhere
    with pytest.raises(DataException, match="DOGE/USDT"):
        await asyncio.wait_for(engine.run(), WAIT_S)
    assert engine.instance_lock is not None and not engine.instance_lock.held
    probe(engine.database_path)
