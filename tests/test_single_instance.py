"""Specification of one engine per database: a second `tradebot run --headless` is refused; a console attaches.

The engines run as real subprocesses (`python -m tradebot_tui.cli`) on the bundled paper replay, slowed down
so the first keeps running while the second is tried. Every wait polls a condition against a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from engine.config import Settings
from engine.runtime.instance_lock import LOCK_STATE_KEY, EngineLock, probe, read_holder
from tradebot_tui.app import create_app

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 60.0


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "tradebot.sqlite3"
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            '[exchange]\nsymbols = ["BTC/USDT", "ETH/USDT"]\nreplay_speed = 4.0\n'
            f'[storage]\ndatabase_path = "{self.db}"\nlog_dir = "{tmp_path / "logs"}"\n'
        )
        self.config.chmod(0o600)
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("TRADEBOT_")}
        self.env.update(PYTHONPATH=str(REPO), TRADEBOT_CONFIG=str(self.config),
                        TRADEBOT_SECRETS_FILE=str(tmp_path / "none.enc"))
        self.first_out = tmp_path / "first.out"
        self.first: subprocess.Popen[bytes] | None = None

    def start_first(self) -> subprocess.Popen[bytes]:
        with self.first_out.open("wb") as out:
            self.first = subprocess.Popen(
                [sys.executable, "-m", "tradebot_tui.cli", "run", "--headless"],
                env=self.env, cwd=str(self.tmp_path), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )
        return self.first

    def run_second(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another tradebot on the same config, to completion (bounded); stdin is not a terminal."""
        return subprocess.run(
            [sys.executable, "-m", "tradebot_tui.cli", *args], env=self.env, cwd=str(self.tmp_path),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=WAIT_S,
        )

    def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            if self.first is not None and self.first.poll() is not None:
                raise AssertionError(f"the first engine exited ({self.first.returncode}) waiting for {what}:\n"
                                     + self.first_out.read_text()[-3000:])
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n" + self.first_out.read_text()[-3000:])
            time.sleep(0.02)

    def query(self, sql: str) -> list[Any]:
        if not self.db.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
                return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []

    def equity_rows(self) -> int:
        rows = self.query("SELECT COUNT(*) FROM equity")
        return int(rows[0][0]) if rows else 0

    def stored_holder(self) -> Any:
        rows = self.query(f"SELECT value_json FROM kv_state WHERE key = '{LOCK_STATE_KEY}'")
        return json.loads(rows[0][0]) if rows else None


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    if rig.first is not None and rig.first.poll() is None:
        rig.first.kill()
        rig.first.wait()


def assert_refused(result: subprocess.CompletedProcess[str], pid: int, database: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"another tradebot engine (pid {pid}, paper, started "), lines[0]
    assert lines[0].endswith(f" UTC) holds {database}; stop it first (it keeps trading)"), lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_a_second_headless_engine_is_refused_while_the_first_keeps_trading_and_answers_status(rig: Rig) -> None:
    first = rig.start_first()
    rig.until(lambda: (holder := read_holder(rig.db)) is not None and holder.pid == first.pid,
              "the first engine holding the lock")
    rig.until(lambda: rig.equity_rows() > 0, "the first engine recording equity")
    assert rig.stored_holder()["pid"] == first.pid

    second = rig.run_second("run", "--headless")
    assert_refused(second, first.pid, rig.db)
    assert second.stdout == "", "refused before logging anything"

    status = rig.run_second("service", "status", "--json")  # what a console attaches to instead
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["pid"] == first.pid

    assert first.poll() is None, "the first engine still runs"
    assert rig.stored_holder()["pid"] == first.pid, "the refused ones wrote nothing to the store"
    seen = rig.equity_rows()
    rig.until(lambda: rig.equity_rows() > seen + 2, "the first engine still processing candles")

    first.send_signal(signal.SIGTERM)
    assert first.wait(WAIT_S) == 0, rig.first_out.read_text()[-3000:]
    probe(rig.db)  # free again once it stopped


async def test_a_console_that_loses_the_race_exits_2_with_the_refusal_and_stores_nothing(tmp_path: Path) -> None:
    """The console's probe passed, then another engine took the lock: the app exits instead of crashing."""
    database = tmp_path / "tradebot.sqlite3"
    settings = Settings(exchange={"symbols": ["BTC/USDT"], "replay_speed": 8.0},
                        storage={"database_path": database, "log_dir": tmp_path / "logs"})
    app = create_app(settings)
    with EngineLock(database, mode="paper") as other:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: not app.is_running)
        assert other.held
    assert app.return_code == 2
    assert app.engine_refusal is not None and app.engine_refusal.pid == os.getpid()
    assert str(app.engine_refusal).startswith(f"another tradebot engine (pid {os.getpid()}, paper, started ")
    assert not database.exists(), "the refused engine never opened the store"


async def wait_until(pilot: Pilot[int], condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)
