"""Provides the runtime's remote-control wiring: the risk-change gate and the Telegram notifier of an engine.

:class:`engine.runtime.engine.TradingEngine` calls these so that the orchestrator stays the candle/command loop:

* :func:`build_risk_gate` once the store is open: the gate that authenticates ``SetRiskLimit`` /
  ``ResumeBreaker`` (see :mod:`engine.runtime.risk_gate`), with the risk-change passphrase hash the caller
  loaded from the encrypted secrets file (:func:`load_risk_passphrase_hash`).
* :func:`start_notifier` before the engine first publishes, :func:`stop_notifier` before the store is
  closed. Without a Telegram token nothing is started (and python-telegram-bot is never imported).
  Neither ever raises: a Telegram problem is logged and trading goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.runtime.risk_gate import RiskChangeGate
from engine.security.auth import PassphraseHash, passphrase_hash_from_secrets

if TYPE_CHECKING:
    from engine.notify import TelegramNotifier
    from engine.runtime.engine import TradingEngine

log = logging.getLogger(__name__)

PassphraseProvider = Callable[[], str | None]


class CachedPassphrase:
    """Asks a passphrase provider at most once and remembers the answer (for one start-up).

    Start-up needs the secrets-file passphrase twice (secrets, then the risk-change passphrase hash);
    the trader must be asked only once.

    Args:
        provider: where the passphrase comes from; default: ``$TRADEBOT_SECRETS_PASSPHRASE``, else a
            hidden prompt when stdin is a terminal.
    """

    def __init__(self, provider: PassphraseProvider | None = None) -> None:
        self._provider = provider
        self._asked = False
        self._value: str | None = None

    def __call__(self) -> str | None:
        if not self._asked:
            self._asked = True
            if self._provider is not None:
                self._value = self._provider()
            else:
                from engine.security.passphrase import SECRETS_PASSPHRASE_ENV, passphrase_from_env_or_prompt

                self._value = passphrase_from_env_or_prompt((SECRETS_PASSPHRASE_ENV,), "Secrets file passphrase: ")
        return self._value


def load_risk_passphrase_hash(
    config_path: str | os.PathLike[str] | None, passphrase: PassphraseProvider
) -> PassphraseHash | None:
    """The risk-change passphrase hash from the encrypted secrets file, or None (risk changes then refused).

    Never raises: no file, no passphrase available, a wrong one or a malformed hash are logged (without
    any secret) and give None, so the engine starts and every risk change is refused with a hint.
    """
    from engine.security.secrets_file import SecretsFile, default_secrets_path

    file = SecretsFile(default_secrets_path(config_path))
    if not file.exists():
        return None
    try:
        value = passphrase()
        if value is None:
            log.warning("risk changes are disabled: no passphrase for %s (set TRADEBOT_SECRETS_PASSPHRASE)",
                        file.path)
            return None
        return passphrase_hash_from_secrets(file.read(value))
    except Exception as error:  # noqa: BLE001 - start-up goes on; risk changes stay refused
        log.warning("risk changes are disabled: cannot read the risk-change passphrase hash (%s)",
                    type(error).__name__)
        return None


def build_risk_gate(engine: TradingEngine, audit: Any) -> RiskChangeGate | None:
    """The engine's risk-change gate, or None (risk changes refused) when there is no audit log."""
    if audit is None:
        return None
    passphrase_hash = getattr(engine, "risk_passphrase_hash", None)
    if passphrase_hash is None:
        log.info("no risk-change passphrase configured: console risk changes are refused "
                 "(`tradebot secrets set-risk-passphrase`)")
    return RiskChangeGate(engine.core, audit, passphrase_hash, engine.clock.now_ms)


async def start_notifier(engine: TradingEngine) -> TelegramNotifier | None:
    """Creates and starts the Telegram notifier when a token is configured; None otherwise or on failure."""
    if not engine.settings.telegram.enabled:
        return None
    try:
        from engine.notify import create_notifier

        notifier = create_notifier(
            engine.settings, engine.store, engine, engine.clock,
            tuning=getattr(engine, "notifier_tuning", None), risk_gate=engine.risk_gate,
        )
        if notifier is not None:
            await notifier.start()
        return notifier
    except Exception as error:  # noqa: BLE001 - Telegram must never keep the engine from trading
        log.error("Telegram notifier not started: %s", type(error).__name__)
        return None


async def stop_notifier(engine: TradingEngine) -> None:
    """Stops the engine's notifier (queued events reach the outbox first); call before closing the store."""
    notifier = getattr(engine, "notifier", None)
    if notifier is None:
        return
    engine.notifier = None
    try:
        await notifier.stop()
    except Exception as error:  # noqa: BLE001 - shutting down must go on
        log.warning("Telegram notifier stop failed: %s", type(error).__name__)
