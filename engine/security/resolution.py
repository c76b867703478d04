"""Provides start-up secret resolution: env (and ``.env``) > encrypted secrets file > OS keyring.

Plain-text secrets in ``config.toml`` are refused in live mode and tolerated with a warning in paper
mode, where they rank below every other source. The OS keyring is optional: the ``keyring`` package
is imported lazily and a missing package or backend simply means "no keyring".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr
from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

from engine.config import CONFIG_PATH_ENV, SECRET_FIELDS, Settings, load_settings, read_toml, resolve_config_path
from engine.domain.errors import SecurityException
from engine.security.passphrase import SECRETS_PASSPHRASE_ENV, passphrase_from_env_or_prompt, require_passphrase
from engine.security.secrets_file import SecretsFile, default_secrets_path

logger = logging.getLogger(__name__)

SecretSource = Literal["env", "secrets_file", "keyring", "config"]
KeyringLookup = Callable[[str], str | None]
PassphraseProvider = Callable[[], str | None]

KEYRING_SERVICE = "tradebot"


@dataclass(frozen=True)
class ResolvedSecrets:
    """Settings with every available secret filled in, and where each one came from.

    Attributes:
        settings: the settings to run with.
        sources: secret name (``exchange.api_key``...) -> the source that provided it.
        warnings: problems tolerated in paper mode (already logged).
    """

    settings: Settings
    sources: dict[str, SecretSource] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def secret_values(self) -> list[str]:
        """Every non-empty secret value in ``settings``, for log redaction."""
        return [value for name in SECRET_FIELDS if (value := secret_of(self.settings, name))]


def secret_of(settings: Settings, name: str) -> str | None:
    """The plain value of the secret at dotted path ``name`` in ``settings`` (None when unset or blank)."""
    section, key = name.split(".", 1)
    secret = getattr(getattr(settings, section), key)
    if secret is None:
        return None
    value = secret.get_secret_value()
    return value if value.strip() else None


def default_keyring_lookup() -> KeyringLookup | None:
    """A lookup into the OS keyring, or None when ``keyring`` is not installed or has no usable backend."""
    try:
        import keyring  # type: ignore[import-not-found,unused-ignore]
        from keyring.errors import KeyringError  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # noqa: BLE001 - any backend failure means "no keyring"
        return None
    # keyring's fail/null backends report priority <= 0.
    if getattr(backend, "priority", 0) <= 0:
        return None

    def lookup(name: str) -> str | None:
        try:
            value = keyring.get_password(KEYRING_SERVICE, name)
        except KeyringError:
            return None
        return value if isinstance(value, str) else None

    return lookup


def resolve_secrets(
    settings: Settings,
    *,
    config_path: str | os.PathLike[str] | None = None,
    secrets_file: SecretsFile | None = None,
    passphrase_provider: PassphraseProvider | None = None,
    keyring_lookup: KeyringLookup | None | Literal["default"] = "default",
) -> ResolvedSecrets:
    """Fills the secrets of already-loaded ``settings`` from env, the secrets file and the keyring.

    Args:
        settings: settings from :func:`engine.config.load_settings` for the same ``config_path``.
        config_path: the config file the settings came from (to detect plain-text secrets in it).
        secrets_file: the encrypted file (default: :func:`default_secrets_path`).
        passphrase_provider: returns the secrets-file passphrase (default: env var, else prompt).
        keyring_lookup: name -> value from the OS keyring; "default" probes ``keyring``; None disables it.

    Raises:
        SecurityException: live mode with a plain-text secret in the config file, or a secrets file
            that exists but cannot be opened.
    """
    live = settings.exchange.mode == "live"
    plan = _plan(config_path, secrets_file, passphrase_provider, keyring_lookup, live=live, settings=settings)
    return ResolvedSecrets(_with_secrets(settings, plan.values), plan.sources, plan.warnings)


def load_settings_with_secrets(
    config_path: str | os.PathLike[str] | None = None,
    *,
    secrets_file: SecretsFile | None = None,
    passphrase_provider: PassphraseProvider | None = None,
    keyring_lookup: KeyringLookup | None | Literal["default"] = "default",
    **overrides: Any,
) -> ResolvedSecrets:
    """Loads settings with the secrets from every source already in place.

    Unlike :func:`resolve_secrets` after :func:`load_settings`, this lets live mode's "keys required"
    validation see keys that live only in the secrets file or keyring.

    Raises:
        ConfigException: the settings are invalid (one line per problem).
        SecurityException: as for :func:`resolve_secrets`.
    """
    document = _config_document(config_path)
    env_mode = _nested(_env_document(), "exchange.mode")
    mode = overrides.get("exchange", {}).get("mode") or env_mode or _nested(document, "exchange.mode")
    plan = _plan(config_path, secrets_file, passphrase_provider, keyring_lookup, live=mode == "live")
    injected: dict[str, dict[str, Any]] = {}
    for name, value in plan.values.items():
        section, key = name.split(".", 1)
        injected.setdefault(section, {})[key] = value
    for section, values in injected.items():
        overrides[section] = {**values, **overrides.get(section, {})}
    settings = load_settings(config_path, **overrides)
    if settings.exchange.mode == "live":
        _refuse_plain_text(_plain_text_names(document))
    return ResolvedSecrets(settings, plan.sources, plan.warnings)


@dataclass
class _Plan:
    values: dict[str, SecretStr] = field(default_factory=dict)
    sources: dict[str, SecretSource] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _plan(
    config_path: str | os.PathLike[str] | None,
    secrets_file: SecretsFile | None,
    passphrase_provider: PassphraseProvider | None,
    keyring_lookup: KeyringLookup | None | Literal["default"],
    *,
    live: bool,
    settings: Settings | None = None,
) -> _Plan:
    """Decides, per secret name, which source provides it; values are only those to inject."""
    document = _config_document(config_path)
    plain_text = _plain_text_names(document)
    if live:
        _refuse_plain_text(plain_text)
    env_document = _env_document()
    plan = _Plan()
    missing = []
    for name in sorted(SECRET_FIELDS):
        if not _wanted(name, document, env_document):
            continue
        env_value = _nested(env_document, name)
        if isinstance(env_value, str) and env_value.strip():
            plan.sources[name] = "env"
        elif settings is not None and name not in plain_text and secret_of(settings, name):
            plan.sources[name] = "env"  # given to load_settings directly; counts as the highest source
        else:
            missing.append(name)
    if missing:
        stored = _read_secrets_file(config_path, secrets_file, passphrase_provider)
        lookup = default_keyring_lookup() if keyring_lookup == "default" else keyring_lookup
        for name in missing:
            if name in stored:
                plan.values[name], plan.sources[name] = stored[name], "secrets_file"
            elif lookup is not None and (from_keyring := lookup(name)):
                plan.values[name], plan.sources[name] = SecretStr(from_keyring), "keyring"
            elif name in plain_text:
                plan.sources[name] = "config"
    warnings = []
    for name in sorted(plain_text):
        message = (
            f"{name} is stored in plain text in {resolve_config_path(config_path)}; move it to "
            f"TRADEBOT_{name.upper().replace('.', '__')} or `tradebot secrets set {name}` (refused in live mode)"
        )
        logger.warning("%s", message)
        warnings.append(message)
    plan.warnings = tuple(warnings)
    return plan


def _wanted(name: str, document: Mapping[str, Any], env_document: Mapping[str, Any]) -> bool:
    """The API token is looked for only when the TCP listener that needs it is configured (asking for the
    secrets-file passphrase just for it would be a prompt nobody needs)."""
    if name != "api.token":
        return True
    return _nested(document, "api.tcp_port") is not None or _nested(env_document, "api.tcp_port") is not None


def _refuse_plain_text(plain_text: set[str]) -> None:
    if plain_text:
        names = ", ".join(sorted(plain_text))
        raise SecurityException(
            f"refusing to trade live with plain-text secrets in the config file ({names}); "
            "use environment variables or `tradebot secrets set NAME` and remove them from the file"
        )


def _read_secrets_file(
    config_path: str | os.PathLike[str] | None,
    secrets_file: SecretsFile | None,
    passphrase_provider: PassphraseProvider | None,
) -> dict[str, SecretStr]:
    file = secrets_file if secrets_file is not None else SecretsFile(default_secrets_path(config_path))
    if not file.exists():
        return {}
    if passphrase_provider is None:
        passphrase = passphrase_from_env_or_prompt((SECRETS_PASSPHRASE_ENV,), "Secrets file passphrase: ")
    else:
        passphrase = passphrase_provider()
    return file.read(require_passphrase(passphrase, (SECRETS_PASSPHRASE_ENV,)))


def _config_document(config_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    explicit = config_path is not None or bool(os.environ.get(CONFIG_PATH_ENV))
    return read_toml(Path(resolve_config_path(config_path)), required=explicit)


def _plain_text_names(document: Mapping[str, Any]) -> set[str]:
    return {name for name in SECRET_FIELDS if isinstance(value := _nested(document, name), str) and value.strip()}


def _env_document() -> dict[str, Any]:
    """What ``.env`` and ``TRADEBOT_*`` variables provide, parsed exactly as Settings parses them."""
    merged: dict[str, Any] = {}
    for source in (DotEnvSettingsSource(Settings), EnvSettingsSource(Settings)):
        for key, value in source().items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def _nested(document: Mapping[str, Any], dotted: str) -> Any:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _with_secrets(settings: Settings, values: Mapping[str, SecretStr]) -> Settings:
    sections: dict[str, dict[str, SecretStr]] = {}
    for name, value in values.items():
        section, key = name.split(".", 1)
        sections.setdefault(section, {})[key] = value
    update = {section: getattr(settings, section).model_copy(update=keys) for section, keys in sections.items()}
    return settings.model_copy(update=update)


def secure_startup(
    config_path: str | os.PathLike[str] | None = None,
    *,
    live: bool | None = None,
    secrets_file: SecretsFile | None = None,
    passphrase_provider: PassphraseProvider | None = None,
    keyring_lookup: KeyringLookup | None | Literal["default"] = "default",
) -> ResolvedSecrets:
    """The security steps of engine start-up, in order, as one call.

    Loads settings with secrets (:func:`load_settings_with_secrets`), checks that the config and
    secrets files are private (warn in paper, refuse in live), then masks every resolved secret in
    all log records from now on.

    Args:
        live: whether this run trades real money (default: ``exchange.mode == "live"``).

    Raises:
        ConfigException: invalid settings.
        SecurityException: a plain-text secret or a too-open file in live mode, or the secrets file
            cannot be opened.
    """
    from engine.security.permissions import check_file_permissions
    from engine.security.redaction import install_secret_redaction

    file = secrets_file if secrets_file is not None else SecretsFile(default_secrets_path(config_path))
    resolved = load_settings_with_secrets(
        config_path, secrets_file=file, passphrase_provider=passphrase_provider, keyring_lookup=keyring_lookup
    )
    is_live = resolved.settings.exchange.mode == "live" if live is None else live
    if is_live and resolved.settings.exchange.mode != "live":
        _refuse_plain_text(_plain_text_names(_config_document(config_path)))
    check_file_permissions([resolve_config_path(config_path), file.path], live=is_live)
    install_secret_redaction(resolved.secret_values())
    return resolved
