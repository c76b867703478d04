"""Provides authentication of runtime risk changes: a Scrypt passphrase hash, lockout, and an audit row per attempt.

The console asks for the passphrase; Telegram may instead rely on an authorised chat plus an explicit
confirmation. Either way the outcome, with the parameter's old and new value, goes to the audit log.
The passphrase hash lives in the encrypted secrets file (authenticated, so it cannot be swapped for a
hash of a known passphrase without the secrets passphrase).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from engine.domain.errors import SecurityException
from engine.domain.ports import RiskChange
from engine.security.audit import AuditAction, AuditLog
from engine.security.crypto import PRODUCTION_KDF, SALT_BYTES, KdfParams, derive_key
from engine.security.secrets_file import RISK_PASSPHRASE_HASH_NAME

HASH_SCHEME = "scrypt"
DEFAULT_MAX_FAILURES = 5
DEFAULT_LOCKOUT_MS = 5 * 60 * 1000


class AuthenticationFailed(SecurityException):
    """A risk change was refused: wrong passphrase, locked out, unauthorised chat or not confirmed."""


@dataclass(frozen=True)
class PassphraseHash:
    """A salted Scrypt hash of a passphrase, storable as one string."""

    params: KdfParams
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        """``scrypt$n$r$p$<salt b64>$<digest b64>``."""
        salt = base64.b64encode(self.salt).decode("ascii")
        digest = base64.b64encode(self.digest).decode("ascii")
        return f"{HASH_SCHEME}${self.params.n}${self.params.r}${self.params.p}${salt}${digest}"

    @classmethod
    def parse(cls, text: str) -> PassphraseHash:
        """The inverse of :meth:`encode`.

        Raises:
            SecurityException: ``text`` is not an encoded passphrase hash.
        """
        parts = text.split("$")
        try:
            if len(parts) != 6 or parts[0] != HASH_SCHEME:
                raise ValueError
            params = KdfParams(n=int(parts[1]), r=int(parts[2]), p=int(parts[3]))
            salt = base64.b64decode(parts[4], validate=True)
            digest = base64.b64decode(parts[5], validate=True)
        except (ValueError, binascii.Error):
            raise SecurityException("the stored risk-change passphrase hash is malformed") from None
        return cls(params, salt, digest)


def hash_passphrase(passphrase: str, params: KdfParams = PRODUCTION_KDF) -> PassphraseHash:
    """A fresh salted hash of ``passphrase`` (slow on purpose: about 0.1 s with production params)."""
    if not passphrase:
        raise SecurityException("an empty passphrase is not allowed")
    salt = os.urandom(SALT_BYTES)
    return PassphraseHash(params, salt, derive_key(passphrase, salt, params))


def verify_passphrase(passphrase: str, stored: PassphraseHash) -> bool:
    """Whether ``passphrase`` matches ``stored``, compared in constant time."""
    candidate = derive_key(passphrase, stored.salt, stored.params)
    return hmac.compare_digest(candidate, stored.digest)


def passphrase_hash_from_secrets(secrets: Mapping[str, SecretStr]) -> PassphraseHash | None:
    """The risk-change passphrase hash kept in the secrets file, or None when none was set."""
    stored = secrets.get(RISK_PASSPHRASE_HASH_NAME)
    return None if stored is None else PassphraseHash.parse(stored.get_secret_value())


class RiskChangeAuthorizer:
    """Decides whether a runtime risk change may be applied, and audits every attempt.

    After ``max_failures`` wrong passphrases in a row, every attempt is refused for ``lockout_ms``
    (even with the right passphrase), so the passphrase cannot be guessed quickly from a console
    left open or a compromised chat.

    Args:
        audit: where attempts are recorded.
        passphrase_hash: the stored hash; None refuses every passphrase-authenticated change.
        max_failures: consecutive failures that start a lockout.
        lockout_ms: lockout length, ms.
    """

    def __init__(
        self,
        audit: AuditLog,
        passphrase_hash: PassphraseHash | None,
        *,
        max_failures: int = DEFAULT_MAX_FAILURES,
        lockout_ms: int = DEFAULT_LOCKOUT_MS,
    ) -> None:
        self._audit = audit
        self._hash = passphrase_hash
        self._max_failures = max_failures
        self._lockout_ms = lockout_ms
        self._failures = 0
        self._locked_until_ms = 0
        self._lock = asyncio.Lock()

    def locked_until_ms(self) -> int:
        """UTC ms until which attempts are refused (0 or in the past when not locked)."""
        return self._locked_until_ms

    async def authorize_with_passphrase(self, change: RiskChange, *, actor: str, passphrase: str, now_ms: int) -> None:
        """Allows ``change`` when ``passphrase`` is right; audits the outcome with old and new value.

        Raises:
            AuthenticationFailed: no passphrase is configured, the caller is locked out, or the
                passphrase is wrong.
        """
        # One attempt at a time, so parallel guesses cannot slip past the failure counter.
        async with self._lock:
            if self._hash is None:
                await self._deny(change, actor, now_ms, "passphrase", "no risk-change passphrase is set")
            if now_ms < self._locked_until_ms:
                await self._deny(change, actor, now_ms, "passphrase", "locked out after repeated wrong passphrases")
            matches = await asyncio.to_thread(verify_passphrase, passphrase, self._hash)  # type: ignore[arg-type]
            if not matches:
                self._failures += 1
                detail = _detail(change, "passphrase", failures=self._failures)
                if self._failures >= self._max_failures:
                    self._locked_until_ms = now_ms + self._lockout_ms
                    detail["locked_until_ms"] = self._locked_until_ms
                await self._audit.append(actor, AuditAction.LOGIN_FAILURE, detail, now_ms)
                raise AuthenticationFailed("wrong passphrase; the change was not applied")
            self._failures = 0
            await self._audit.append(actor, AuditAction.PARAMETER_CHANGE, _detail(change, "passphrase"), now_ms)

    async def authorize_from_chat(
        self,
        change: RiskChange,
        *,
        chat_id: int,
        allowed_chat_ids: Collection[int],
        confirmed: bool,
        now_ms: int,
    ) -> None:
        """Allows ``change`` from an authorised Telegram chat that confirmed it; audits the outcome.

        Raises:
            AuthenticationFailed: the chat is not authorised (audited as a login failure) or the
                change was not confirmed.
        """
        actor = f"telegram:{chat_id}"
        async with self._lock:
            if chat_id not in allowed_chat_ids:
                detail = _detail(change, "telegram_chat")
                await self._audit.append(actor, AuditAction.LOGIN_FAILURE, detail, now_ms)
                raise AuthenticationFailed("this chat is not authorised to change risk settings")
            if not confirmed:
                await self._deny(change, actor, now_ms, "telegram_chat", "not confirmed")
            await self._audit.append(actor, AuditAction.PARAMETER_CHANGE, _detail(change, "telegram_chat"), now_ms)

    async def _deny(self, change: RiskChange, actor: str, now_ms: int, method: str, reason: str) -> None:
        detail = _detail(change, method)
        detail["reason"] = reason
        await self._audit.append(actor, AuditAction.PARAMETER_CHANGE_DENIED, detail, now_ms)
        raise AuthenticationFailed(f"{reason}; the change was not applied")


def _detail(change: RiskChange, method: str, **extra: Any) -> dict[str, Any]:
    return {
        "parameter": change.parameter,
        "old": change.old_value,
        "new": change.new_value,
        "method": method,
        **extra,
    }
