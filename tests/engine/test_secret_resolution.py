"""Specification of start-up secret resolution: env > secrets file > keyring, plain text refused live."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.domain.errors import SecurityException
from engine.security.crypto import KdfParams, WrongPassphraseError
from engine.security.redaction import uninstall_secret_redaction
from engine.security.resolution import load_settings_with_secrets, resolve_secrets, secure_startup
from engine.security.secrets_file import SecretsFile

FAST_KDF = KdfParams(n=2**4, r=8, p=1)
PASSPHRASE = "resolution-test-pass"
FILE_KEY = "key-from-secrets-file-11aa"
FILE_SECRET = "secret-from-secrets-file-22bb"
ENV_KEY = "key-from-environment-33cc"
KEYRING_TOKEN = "123456789:token-from-keyring-xxxxxxxxxxxxxxxxxxx"
TOML_KEY = "key-in-plain-config-44dd"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("TRADEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def secrets_file(tmp_path: Path) -> SecretsFile:
    file = SecretsFile(tmp_path / "secrets.enc", kdf=FAST_KDF)
    file.set("exchange.api_key", FILE_KEY, PASSPHRASE)
    file.set("exchange.api_secret", FILE_SECRET, PASSPHRASE)
    return file


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def no_keyring(_name: str) -> str | None:
    return None


def test_secrets_file_fills_secrets_missing_from_env(tmp_path: Path, secrets_file: SecretsFile) -> None:
    config = write_config(tmp_path, "")
    resolved = resolve_secrets(
        load_settings(config),
        config_path=config,
        secrets_file=secrets_file,
        passphrase_provider=lambda: PASSPHRASE,
        keyring_lookup=no_keyring,
    )
    assert resolved.settings.exchange.api_key is not None
    assert resolved.settings.exchange.api_key.get_secret_value() == FILE_KEY
    assert resolved.sources["exchange.api_key"] == "secrets_file"


def test_env_beats_the_secrets_file(tmp_path: Path, secrets_file: SecretsFile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_KEY", ENV_KEY)
    config = write_config(tmp_path, "")
    resolved = resolve_secrets(
        load_settings(config),
        config_path=config,
        secrets_file=secrets_file,
        passphrase_provider=lambda: PASSPHRASE,
        keyring_lookup=no_keyring,
    )
    assert resolved.settings.exchange.api_key.get_secret_value() == ENV_KEY  # type: ignore[union-attr]
    assert resolved.sources["exchange.api_key"] == "env"
    assert resolved.settings.exchange.api_secret.get_secret_value() == FILE_SECRET  # type: ignore[union-attr]


def test_dotenv_file_counts_as_env(tmp_path: Path, secrets_file: SecretsFile) -> None:
    (tmp_path / ".env").write_text(f"TRADEBOT_EXCHANGE__API_KEY={ENV_KEY}\n")
    config = write_config(tmp_path, "")
    resolved = resolve_secrets(
        load_settings(config),
        config_path=config,
        secrets_file=secrets_file,
        passphrase_provider=lambda: PASSPHRASE,
        keyring_lookup=no_keyring,
    )
    assert resolved.sources["exchange.api_key"] == "env"
    assert resolved.settings.exchange.api_key.get_secret_value() == ENV_KEY  # type: ignore[union-attr]


def test_secrets_file_beats_the_keyring(tmp_path: Path, secrets_file: SecretsFile) -> None:
    config = write_config(tmp_path, "")
    keyring = {"exchange.api_key": "key-from-keyring", "telegram.token": KEYRING_TOKEN}
    resolved = resolve_secrets(
        load_settings(config),
        config_path=config,
        secrets_file=secrets_file,
        passphrase_provider=lambda: PASSPHRASE,
        keyring_lookup=keyring.get,
    )
    assert resolved.sources == {
        "exchange.api_key": "secrets_file",
        "exchange.api_secret": "secrets_file",
        "telegram.token": "keyring",
    }
    assert resolved.settings.telegram.token.get_secret_value() == KEYRING_TOKEN  # type: ignore[union-attr]


def test_without_the_keyring_package_the_keyring_is_simply_absent(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    resolved = resolve_secrets(
        load_settings(config), config_path=config, secrets_file=SecretsFile(tmp_path / "none.enc")
    )
    assert resolved.sources == {}
    assert resolved.settings.exchange.api_key is None


def test_the_passphrase_is_not_asked_when_env_provides_every_secret(
    tmp_path: Path, secrets_file: SecretsFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_KEY", ENV_KEY)
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_SECRET", "env-secret-value")
    monkeypatch.setenv("TRADEBOT_TELEGRAM__TOKEN", "1234567:env-token")
    config = write_config(tmp_path, "")

    def must_not_ask() -> str:
        raise AssertionError("passphrase requested")

    resolved = resolve_secrets(
        load_settings(config), config_path=config, secrets_file=secrets_file, passphrase_provider=must_not_ask
    )
    assert set(resolved.sources.values()) == {"env"}


def test_wrong_secrets_passphrase_is_a_security_error_naming_the_file(
    tmp_path: Path, secrets_file: SecretsFile
) -> None:
    config = write_config(tmp_path, "")
    with pytest.raises(WrongPassphraseError, match="secrets.enc: wrong passphrase"):
        resolve_secrets(
            load_settings(config),
            config_path=config,
            secrets_file=secrets_file,
            passphrase_provider=lambda: "not-it",
            keyring_lookup=no_keyring,
        )


def test_missing_passphrase_names_the_environment_variable(tmp_path: Path, secrets_file: SecretsFile) -> None:
    config = write_config(tmp_path, "")
    with pytest.raises(SecurityException, match="TRADEBOT_SECRETS_PASSPHRASE"):
        resolve_secrets(
            load_settings(config),
            config_path=config,
            secrets_file=secrets_file,
            passphrase_provider=lambda: None,
            keyring_lookup=no_keyring,
        )


def test_plain_text_secret_in_config_is_refused_in_live_mode(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f'[exchange]\nmode = "live"\napi_key = "{TOML_KEY}"\napi_secret = "plain-secret-55ee"\n'
    )
    with pytest.raises(SecurityException, match="plain-text secrets in the config file") as info:
        load_settings_with_secrets(config, secrets_file=SecretsFile(tmp_path / "none.enc"), keyring_lookup=None)
    assert TOML_KEY not in str(info.value)


def test_plain_text_secret_is_refused_live_even_when_env_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_KEY", ENV_KEY)
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_SECRET", "env-secret-value")
    config = write_config(tmp_path, f'[exchange]\nmode = "live"\napi_key = "{TOML_KEY}"\n')
    with pytest.raises(SecurityException, match=r"\(exchange.api_key\)"):
        load_settings_with_secrets(config, secrets_file=SecretsFile(tmp_path / "none.enc"), keyring_lookup=None)


def test_plain_text_secret_in_config_only_warns_in_paper_mode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = write_config(tmp_path, f'[exchange]\napi_key = "{TOML_KEY}"\n')
    resolved = resolve_secrets(
        load_settings(config), config_path=config, secrets_file=SecretsFile(tmp_path / "none.enc")
    )
    assert resolved.sources["exchange.api_key"] == "config"
    assert "exchange.api_key is stored in plain text" in caplog.text
    assert TOML_KEY not in caplog.text
    assert resolved.warnings


def test_secrets_file_beats_a_plain_text_config_secret_in_paper_mode(tmp_path: Path, secrets_file: SecretsFile) -> None:
    config = write_config(tmp_path, f'[exchange]\napi_key = "{TOML_KEY}"\n')
    resolved = resolve_secrets(
        load_settings(config),
        config_path=config,
        secrets_file=secrets_file,
        passphrase_provider=lambda: PASSPHRASE,
        keyring_lookup=no_keyring,
    )
    assert resolved.settings.exchange.api_key.get_secret_value() == FILE_KEY  # type: ignore[union-attr]


def test_live_mode_starts_with_keys_held_only_in_the_secrets_file(tmp_path: Path, secrets_file: SecretsFile) -> None:
    config = write_config(tmp_path, '[exchange]\nmode = "live"\n')
    resolved = load_settings_with_secrets(
        config, secrets_file=secrets_file, passphrase_provider=lambda: PASSPHRASE, keyring_lookup=no_keyring
    )
    assert resolved.settings.exchange.mode == "live"
    assert resolved.settings.exchange.api_secret.get_secret_value() == FILE_SECRET  # type: ignore[union-attr]


def test_load_with_secrets_keeps_env_above_the_file(
    tmp_path: Path, secrets_file: SecretsFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_KEY", ENV_KEY)
    config = write_config(tmp_path, '[exchange]\nsymbols = ["ETH/USDT"]\n')
    resolved = load_settings_with_secrets(
        config, secrets_file=secrets_file, passphrase_provider=lambda: PASSPHRASE, keyring_lookup=no_keyring
    )
    assert resolved.settings.exchange.api_key.get_secret_value() == ENV_KEY  # type: ignore[union-attr]
    assert resolved.settings.exchange.symbols == ["ETH/USDT"]


def test_secret_values_lists_every_resolved_secret(tmp_path: Path, secrets_file: SecretsFile) -> None:
    config = write_config(tmp_path, "")
    resolved = resolve_secrets(
        load_settings(config),
        config_path=config,
        secrets_file=secrets_file,
        passphrase_provider=lambda: PASSPHRASE,
        keyring_lookup=no_keyring,
    )
    assert sorted(resolved.secret_values()) == sorted([FILE_KEY, FILE_SECRET])


def test_secure_startup_refuses_live_with_a_config_readable_by_others(
    tmp_path: Path, secrets_file: SecretsFile
) -> None:
    config = write_config(tmp_path, '[exchange]\nmode = "live"\n')
    config.chmod(0o644)
    secrets_file.path.chmod(0o600)
    with pytest.raises(SecurityException, match="config.toml is accessible by group and other users"):
        secure_startup(
            config, secrets_file=secrets_file, passphrase_provider=lambda: PASSPHRASE, keyring_lookup=no_keyring
        )


def test_secure_startup_in_paper_mode_warns_and_installs_redaction(
    tmp_path: Path, secrets_file: SecretsFile, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, "")
    config.chmod(0o644)
    try:
        resolved = secure_startup(
            config, secrets_file=secrets_file, passphrase_provider=lambda: PASSPHRASE, keyring_lookup=no_keyring
        )
        logging.getLogger("engine.start").warning("loaded key %s", FILE_KEY)
    finally:
        uninstall_secret_redaction()
    assert resolved.sources["exchange.api_key"] == "secrets_file"
    assert "insecure file permissions" in caplog.text
    assert FILE_KEY not in caplog.text


def test_secure_startup_with_the_live_flag_refuses_plain_text_even_in_paper_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, f'[exchange]\napi_key = "{TOML_KEY}"\n')
    config.chmod(0o600)
    with pytest.raises(SecurityException, match="plain-text secrets"):
        secure_startup(config, live=True, secrets_file=SecretsFile(tmp_path / "none.enc"), keyring_lookup=None)
