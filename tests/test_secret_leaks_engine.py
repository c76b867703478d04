"""Specification: known dummy secrets never appear anywhere a real engine run leaves text (issue 9).

Three real runs with the same dummy secrets (exchange key and secret in the encrypted secrets file, the
Telegram token in the environment, the risk-change passphrase hash in the secrets file), Telegram
pointed at the loopback fake Bot API:

* ``tradebot run --headless --until-replay-ends`` in a subprocess (its stdout/stderr and log file);
* the engine in-process, started through the CLI's own settings path, with Telegram ``/set`` +
  confirmation, a wrong and a right risk passphrase, and a second run whose token Telegram rejects;
* the console (Pilot) over the real engine, with the risk-change dialog typed into, screenshots taken.

Then every log file, the SQLite file (+ WAL/SHM), the secrets file, exception texts, captured
output, console screenshots and the alert texts Telegram received are scanned: no secret may appear.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Select

from engine.domain.commands import SetRiskLimit
from engine.runtime.engine import TradingEngine, build_engine
from engine.security.auth import AuthenticationFailed, hash_passphrase
from engine.security.redaction import uninstall_secret_redaction
from engine.security.secrets_file import RISK_PASSPHRASE_HASH_NAME, SecretsFile
from engine.store import Store
from tests.engine.notify.conftest import FAST_TUNING
from tests.engine.runtime_helpers import btc_window, wait_for_event
from tests.fakes.fake_bot_api import FakeBotApi
from tradebot_tui.app import create_app
from tradebot_tui.cli import build_parser, load_command_settings
from tradebot_tui.screens.risk import RiskChangeScreen

REPO = Path(__file__).resolve().parents[1]
API_KEY = "EngineLeakApiKey0123456789abcdefLEAK"
API_SECRET = "EngineLeakApiSecret9876543210fedcbaLEAK"
TELEGRAM_TOKEN = "987654321:EngineLeakTelegramTokenAAAAAAAAAAAAAAA"
REJECTED_TOKEN = "123456789:EngineLeakRejectedTokenBBBBBBBBBBBBBBBB"
SECRETS_PASSPHRASE = "engine-leak-secrets-passphrase"
RISK_PASSPHRASE = "engine-leak-risk-passphrase"
ALL_SECRETS = (API_KEY, API_SECRET, TELEGRAM_TOKEN, REJECTED_TOKEN, SECRETS_PASSPHRASE, RISK_PASSPHRASE)
CHAT = 4242
WAIT_S = 30.0


def leaks(data: bytes | str) -> list[str]:
    blob = data if isinstance(data, bytes) else data.encode("utf-8", "replace")
    return [secret[:6] + "…" for secret in ALL_SECRETS if secret.encode() in blob]


async def until(condition: Callable[[], bool], what: str) -> None:
    async def reached() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(reached(), WAIT_S)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Rig:
    """A config, secrets file, candle store and environment shared by the three runs."""

    def __init__(self, tmp_path: Path, api: FakeBotApi, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path = tmp_path
        self.api = api
        self.database = tmp_path / "db" / "tradebot.sqlite3"
        self.log_dir = tmp_path / "logs"
        self.config = tmp_path / "config.toml"
        self.config.write_text(f'[storage]\ndatabase_path = "{self.database}"\nlog_dir = "{self.log_dir}"\n')
        self.config.chmod(0o600)
        self.secrets = SecretsFile(tmp_path / "secrets.enc")
        self.secrets.set("exchange.api_key", API_KEY, SECRETS_PASSPHRASE)
        self.secrets.set("exchange.api_secret", API_SECRET, SECRETS_PASSPHRASE)
        self.secrets.set(RISK_PASSPHRASE_HASH_NAME, hash_passphrase(RISK_PASSPHRASE).encode(), SECRETS_PASSPHRASE)
        self.env = {
            "TRADEBOT_CONFIG": str(self.config),
            "TRADEBOT_SECRETS_FILE": str(self.secrets.path),
            "TRADEBOT_SECRETS_PASSPHRASE": SECRETS_PASSPHRASE,
            "TRADEBOT_EXCHANGE__SYMBOLS": '["BTC/USDT"]',
            "TRADEBOT_EXCHANGE__REPLAY_SPEED": "80",
            "TRADEBOT_TELEGRAM__TOKEN": TELEGRAM_TOKEN,
            "TRADEBOT_TELEGRAM__BASE_URL": api.base_url,
            "TRADEBOT_TELEGRAM__ALLOWED_CHAT_IDS": f"[{CHAT}]",
            "TRADEBOT_TELEGRAM__REQUEST_TIMEOUT_S": "2",
        }
        for name in list(os.environ):
            if name.startswith("TRADEBOT_"):
                monkeypatch.delenv(name)
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        self.errors: list[str] = []
        self.screens: list[str] = []
        self.outputs: list[bytes] = []

    async def seed_candles(self) -> None:
        self.database.parent.mkdir(exist_ok=True)
        async with Store.open(self.database) as store:
            await store.upsert_candles(btc_window(length=700))  # 500 warm-up bars + 200 replayed

    def cli_settings(self) -> tuple[Any, Any]:
        """Settings and the risk passphrase hash exactly as `tradebot run --headless` loads them."""
        args = build_parser().parse_args(["run", "--headless"])
        settings = load_command_settings(args)
        return settings, args.risk_passphrase_hash


async def headless_run(rig: Rig) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env.update(rig.env, PYTHONPATH=str(REPO))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tradebot_tui.cli", "run", "--headless", "--until-replay-ends",
        env=env, cwd=str(rig.tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    rig.api.queue_text(CHAT, "/status")
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    rig.outputs += [stdout, stderr]
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert any("Position opened" in m.text for m in rig.api.sent), "the headless run sent alerts"


async def engine_run(rig: Rig) -> None:
    settings, risk_hash = rig.cli_settings()
    assert risk_hash is not None
    engine: TradingEngine = build_engine(settings, risk_passphrase_hash=risk_hash, notifier_tuning=FAST_TUNING)
    events = engine.bus.subscribe("leak-check")
    task = asyncio.create_task(engine.run())
    await asyncio.wait_for(engine.started.wait(), WAIT_S)
    assert engine.notifier is not None
    await asyncio.wait_for(engine.notifier.connected.wait(), WAIT_S)

    before = len(rig.api.texts_to(CHAT))
    rig.api.queue_text(CHAT, "/set risk.max_daily_loss_percent 3")
    await until(lambda: any("/confirm" in t for t in rig.api.texts_to(CHAT)[before:]), "the /set prompt")
    prompt = next(t for t in rig.api.texts_to(CHAT)[before:] if "/confirm" in t)
    code = re.search(r"/confirm (\d{4})", prompt)
    assert code is not None
    rig.api.queue_text(CHAT, f"/confirm {code.group(1)}")
    await wait_for_event(events, "RiskLimitChanged")

    change = SetRiskLimit(source="console", key="risk.max_daily_loss_percent", value=2.0)
    for wrong in (SECRETS_PASSPHRASE, API_SECRET):
        try:
            await engine.risk_gate.authorize_with_passphrase(change, wrong)
        except AuthenticationFailed as error:
            rig.errors.append(str(error))
    await engine.submit(await engine.risk_gate.authorize_with_passphrase(change, RISK_PASSPHRASE))
    await wait_for_event(events, "RiskLimitChanged")
    await asyncio.wait_for(engine.replay_done.wait(), WAIT_S)
    engine.stop()
    await asyncio.wait_for(task, WAIT_S)

    rejected = build_engine(settings.model_copy(update={"telegram": settings.telegram.model_copy(
        update={"token": type(settings.telegram.token)(REJECTED_TOKEN)})}), notifier_tuning=FAST_TUNING,
        stop_when_replay_done=True)
    await asyncio.wait_for(rejected.run(), 60)


async def console_run(rig: Rig) -> None:
    settings, risk_hash = rig.cli_settings()
    app = create_app(settings, risk_passphrase_hash=risk_hash)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.snapshot is not None and app.snapshot.engine_state == "running", "the console")
        for passphrase in (SECRETS_PASSPHRASE, RISK_PASSPHRASE):
            await pilot.press("l")
            screen = app.screen
            assert isinstance(screen, RiskChangeScreen)
            screen.query_one("#risk-key", Select).value = "risk.max_drawdown_percent"
            screen.query_one("#risk-value", Input).focus()
            await pilot.press("9", "enter", *passphrase)
            rig.screens.append(app.export_screenshot())  # the typed passphrase is on screen only as dots
            await pilot.press("enter")
            await pilot.pause(0.3)
            rig.screens.append(app.export_screenshot())
            if isinstance(app.screen, RiskChangeScreen):
                await pilot.press("escape")
        await until(lambda: app.snapshot is not None and app.snapshot.max_drawdown_limit_pct == 9.0,
                    "the console's risk change")
        await pilot.press("?")
        rig.screens.append(app.export_screenshot())
        await app.shutdown()


async def test_a_real_engine_run_leaks_no_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    test_log = tmp_path / "test-run.log"
    handler = logging.FileHandler(test_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    for noisy in ("httpx", "httpcore", "telegram"):  # the notifier must quiet these itself
        logging.getLogger(noisy).setLevel(logging.DEBUG)
    try:
        async with FakeBotApi(TELEGRAM_TOKEN) as api:
            rig = Rig(tmp_path, api, monkeypatch)
            await rig.seed_candles()
            await headless_run(rig)
            await engine_run(rig)
            await console_run(rig)
            sent = "\n".join(message.text for message in api.sent)
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)
        uninstall_secret_redaction()

    out = capsys.readouterr()
    assert "Risk setting changed" in sent and len(rig.errors) == 2 and len(rig.screens) == 5
    assert any("CHANGE A RISK LIMIT" in s.replace("&#160;", " ") for s in rig.screens)  # real screens scanned
    found: dict[str, list[str]] = {}
    scanned: list[tuple[str, bytes | str]] = [
        ("test log", test_log.read_bytes()), ("captured log", caplog.text), ("stdout", out.out),
        ("stderr", out.err), ("alerts sent to Telegram", sent), ("secrets file", rig.secrets.path.read_bytes()),
        *((f"headless output {i}", o) for i, o in enumerate(rig.outputs)),
        *((f"exception text {i}", e) for i, e in enumerate(rig.errors)),
        *((f"console screenshot {i}", s) for i, s in enumerate(rig.screens)),
        *((f"log file {p.name}", p.read_bytes()) for p in sorted(rig.log_dir.iterdir())),
        *((f"database file {p.name}", p.read_bytes()) for p in sorted(rig.database.parent.iterdir()) if p.is_file()),
    ]
    assert any(name.startswith("log file") for name, _ in scanned)
    assert any("wal" in name or name.endswith("sqlite3") for name, _ in scanned)
    for where, data in scanned:
        if found_here := leaks(data):
            found[where] = found_here
    assert found == {}, f"dummy secrets leaked: {found}"
    assert "Telegram rejected the bot token" in test_log.read_text()
