"""Specification: known dummy secrets never appear in logs, console output, the SQLite file, backups or errors.

This drives the security paths around the engine (settings loading, secrets CLI, redaction, audit,
risk-change auth, backup) with dummy secrets and scans everything they leave behind. Real engine runs
(headless subprocess, in-process with Telegram, the console) are scanned in ``test_secret_leaks_engine.py``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.domain.errors import TradingBotException
from engine.domain.ports import RiskChange
from engine.security.audit import AuditAction, AuditLog
from engine.security.auth import AuthenticationFailed, RiskChangeAuthorizer, passphrase_hash_from_secrets
from engine.security.redaction import install_secret_redaction, uninstall_secret_redaction
from engine.security.resolution import load_settings_with_secrets
from engine.security.secrets_file import SecretsFile
from engine.store import Store
from tradebot_tui.cli import main

API_KEY = "LeakCheckApiKey0123456789abcdefLEAK"
API_SECRET = "LeakCheckApiSecret9876543210fedcbaLEAK"
TELEGRAM_TOKEN = "987654321:LeakCheckTelegramTokenAAAAAAAAAAAAAAAA"
SECRETS_PASSPHRASE = "leak-check-secrets-passphrase"
BACKUP_PASSPHRASE = "leak-check-backup-passphrase"
RISK_PASSPHRASE = "leak-check-risk-passphrase"
ALL_SECRETS = (API_KEY, API_SECRET, TELEGRAM_TOKEN, SECRETS_PASSPHRASE, BACKUP_PASSPHRASE, RISK_PASSPHRASE)


def assert_clean(where: str, data: bytes | str) -> None:
    blob = data if isinstance(data, bytes) else data.encode("utf-8", "replace")
    for secret in ALL_SECRETS:
        assert secret.encode() not in blob, f"a dummy secret leaked into {where}"


def test_dummy_secrets_leak_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in list(os.environ):
        if name.startswith("TRADEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text('[storage]\ndatabase_path = "db/tradebot.sqlite3"\nlog_dir = "logs"\n')
    config.chmod(0o600)
    monkeypatch.setenv("TRADEBOT_SECRETS_PASSPHRASE", SECRETS_PASSPHRASE)
    monkeypatch.setenv("TRADEBOT_TELEGRAM__TOKEN", TELEGRAM_TOKEN)

    # Secrets go in through the CLI, values on stdin.
    for name, value in (("exchange.api_key", API_KEY), ("exchange.api_secret", API_SECRET)):
        monkeypatch.setattr("sys.stdin", io.StringIO(value))
        assert main(["--config", str(config), "secrets", "set", name]) == 0
    monkeypatch.setenv("TRADEBOT_RISK_PASSPHRASE", RISK_PASSPHRASE)
    assert main(["--config", str(config), "secrets", "set-risk-passphrase"]) == 0
    assert main(["--config", str(config), "secrets", "list"]) == 0

    log_file = tmp_path / "logs" / "tradebot.log"
    log_file.parent.mkdir()
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(file_handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    try:
        resolved = load_settings_with_secrets(config, keyring_lookup=None)
        assert sorted(resolved.secret_values()) == sorted([API_KEY, API_SECRET, TELEGRAM_TOKEN])
        install_secret_redaction([*resolved.secret_values(), SECRETS_PASSPHRASE, BACKUP_PASSPHRASE])
        log = logging.getLogger("engine.leakcheck")
        log.info("settings: %r", resolved.settings)
        log.info("settings dump: %s", resolved.settings.redacted_dump())
        log.debug("careless debug line with key=%s and secret %s", API_KEY, API_SECRET)
        log.info("POST https://api.telegram.org/bot%s/sendMessage", TELEGRAM_TOKEN)
        try:
            raise RuntimeError(f"exchange said: invalid key {API_KEY}")
        except RuntimeError:
            log.exception("order placement failed")

        secrets = SecretsFile(tmp_path / "secrets.enc").read(SECRETS_PASSPHRASE)

        async def engine_like_activity() -> None:
            async with Store.open(resolved.settings.storage.database_path) as store:
                audit = AuditLog(store)
                authorizer = RiskChangeAuthorizer(audit, passphrase_hash_from_secrets(secrets))
                change = RiskChange("risk.max_daily_loss_percent", 5.0, 6.0)
                try:
                    await authorizer.authorize_with_passphrase(
                        change, actor="console", passphrase=SECRETS_PASSPHRASE, now_ms=1
                    )
                except AuthenticationFailed as error:
                    errors.append(str(error))
                await authorizer.authorize_with_passphrase(
                    change, actor="console", passphrase=RISK_PASSPHRASE, now_ms=2
                )
                await audit.append("console", AuditAction.HALT, {"reason": "leak check"}, 3)
                await store.set_state("exchange", {"name": resolved.settings.exchange.name})

        asyncio.run(engine_like_activity())

        monkeypatch.setenv("TRADEBOT_BACKUP_PASSPHRASE", BACKUP_PASSPHRASE)
        assert main(["--config", str(config), "backup", str(tmp_path / "backup.enc")]) == 0
        assert main(["--config", str(config), "audit", "show"]) == 0
        assert main(["--config", str(config), "status"]) == 0

        monkeypatch.setenv("TRADEBOT_SECRETS_PASSPHRASE", "a-wrong-passphrase")
        assert main(["--config", str(config), "secrets", "list"]) == 1
        for broken_config in (
            f'[exchange]\napi_key = ["{API_KEY}"]\n',
            f'[exchange]\nmode = "live"\napi_key = "{API_KEY}"\napi_secret = "{API_SECRET}"\n',
        ):
            bad = tmp_path / "bad.toml"
            bad.write_text(broken_config)
            try:
                load_settings_with_secrets(bad, keyring_lookup=None)
            except TradingBotException as error:
                errors.append(str(error))
            else:
                raise AssertionError("a broken config was accepted")
        bad.write_text(f'[exchange]\nmode = "paper"\napi_secret = {{ value = "{API_SECRET}" }}\n')
        try:
            load_settings(bad)
        except TradingBotException as error:
            errors.append(str(error))
    finally:
        root.removeHandler(file_handler)
        file_handler.close()
        root.setLevel(old_level)
        uninstall_secret_redaction()

    out = capsys.readouterr()
    assert "exchange.api_key" in out.out  # the scan below looks at real output
    assert_clean("the log file", log_file.read_bytes())
    assert "order placement failed" in log_file.read_text()
    assert_clean("captured log records", caplog.text)
    assert_clean("stdout", out.out)
    assert_clean("stderr", out.err)
    assert len(errors) == 4
    for text in errors:
        assert_clean("an exception message", text)
    for path in (tmp_path / "db").iterdir():
        assert_clean(f"database file {path.name}", path.read_bytes())
    assert_clean("the backup file", (tmp_path / "backup.enc").read_bytes())
    assert_clean("the secrets file", (tmp_path / "secrets.enc").read_bytes())
