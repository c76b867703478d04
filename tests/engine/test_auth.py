"""Specification of authenticated runtime risk changes: passphrase or authorised chat, every attempt audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.domain.errors import SecurityException
from engine.security.audit import AuditAction, AuditLog
from engine.security.auth import (
    AuthenticationFailed,
    PassphraseHash,
    RiskChange,
    RiskChangeAuthorizer,
    hash_passphrase,
    passphrase_hash_from_secrets,
    verify_passphrase,
)
from engine.security.crypto import KdfParams
from engine.security.secrets_file import RISK_PASSPHRASE_HASH_NAME, SecretsFile
from engine.store import Store

FAST_KDF = KdfParams(n=2**4, r=8, p=1)
RISK_PASSPHRASE = "risk-change-passphrase-9q"
T0 = 1_700_000_000_000
CHANGE = RiskChange("risk.max_daily_loss_percent", 5.0, 8.0)


@pytest.fixture
async def audit(tmp_path: Path) -> AsyncIterator[AuditLog]:
    async with Store.open(tmp_path / "auth.sqlite") as store:
        yield AuditLog(store)


@pytest.fixture
def stored_hash() -> PassphraseHash:
    return hash_passphrase(RISK_PASSPHRASE, FAST_KDF)


def test_right_passphrase_matches_its_hash(stored_hash: PassphraseHash) -> None:
    assert verify_passphrase(RISK_PASSPHRASE, stored_hash)


def test_wrong_passphrase_does_not_match(stored_hash: PassphraseHash) -> None:
    assert not verify_passphrase(RISK_PASSPHRASE + "x", stored_hash)


def test_hash_round_trips_through_its_string_form(stored_hash: PassphraseHash) -> None:
    encoded = stored_hash.encode()
    assert encoded.startswith("scrypt$16$8$1$")
    assert RISK_PASSPHRASE not in encoded
    assert PassphraseHash.parse(encoded) == stored_hash


def test_malformed_hash_string_is_a_security_error() -> None:
    with pytest.raises(SecurityException, match="malformed"):
        PassphraseHash.parse("md5$abc")


def test_same_passphrase_hashes_differently_each_time() -> None:
    assert hash_passphrase("p-123456", FAST_KDF) != hash_passphrase("p-123456", FAST_KDF)


def test_hash_is_read_from_the_secrets_file(tmp_path: Path, stored_hash: PassphraseHash) -> None:
    file = SecretsFile(tmp_path / "s.enc", kdf=FAST_KDF)
    file.set(RISK_PASSPHRASE_HASH_NAME, stored_hash.encode(), "file-pass")
    assert passphrase_hash_from_secrets(file.read("file-pass")) == stored_hash


def test_no_hash_in_the_secrets_file_means_none() -> None:
    assert passphrase_hash_from_secrets({}) is None


async def test_right_passphrase_allows_and_audits_old_and_new_value(
    audit: AuditLog, stored_hash: PassphraseHash
) -> None:
    authorizer = RiskChangeAuthorizer(audit, stored_hash)
    await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase=RISK_PASSPHRASE, now_ms=T0)
    [entry] = await audit.entries()
    assert entry.action == AuditAction.PARAMETER_CHANGE
    assert entry.actor == "console"
    assert entry.detail == {
        "parameter": "risk.max_daily_loss_percent",
        "old": 5.0,
        "new": 8.0,
        "method": "passphrase",
    }


async def test_wrong_passphrase_is_refused_and_audited_as_login_failure(
    audit: AuditLog, stored_hash: PassphraseHash
) -> None:
    authorizer = RiskChangeAuthorizer(audit, stored_hash)
    with pytest.raises(AuthenticationFailed, match="wrong passphrase"):
        await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase="guess", now_ms=T0)
    [entry] = await audit.entries()
    assert entry.action == AuditAction.LOGIN_FAILURE
    assert entry.detail["old"] == 5.0 and entry.detail["new"] == 8.0


async def test_audit_rows_never_contain_the_attempted_passphrase(audit: AuditLog, stored_hash: PassphraseHash) -> None:
    authorizer = RiskChangeAuthorizer(audit, stored_hash)
    with pytest.raises(AuthenticationFailed):
        await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase="guess-xyz-123", now_ms=T0)
    await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase=RISK_PASSPHRASE, now_ms=T0 + 1)
    text = repr(await audit.entries())
    assert "guess-xyz-123" not in text
    assert RISK_PASSPHRASE not in text


async def test_repeated_failures_lock_out_even_the_right_passphrase(
    audit: AuditLog, stored_hash: PassphraseHash
) -> None:
    authorizer = RiskChangeAuthorizer(audit, stored_hash, max_failures=3, lockout_ms=60_000)
    for i in range(3):
        with pytest.raises(AuthenticationFailed):
            await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase="no", now_ms=T0 + i)
    with pytest.raises(AuthenticationFailed, match="locked out"):
        await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase=RISK_PASSPHRASE, now_ms=T0 + 10)
    assert (await audit.entries())[-1].action == AuditAction.PARAMETER_CHANGE_DENIED


async def test_lockout_ends_after_its_duration(audit: AuditLog, stored_hash: PassphraseHash) -> None:
    authorizer = RiskChangeAuthorizer(audit, stored_hash, max_failures=1, lockout_ms=60_000)
    with pytest.raises(AuthenticationFailed):
        await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase="no", now_ms=T0)
    assert authorizer.locked_until_ms() == T0 + 60_000
    await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase=RISK_PASSPHRASE, now_ms=T0 + 60_000)


async def test_success_resets_the_failure_count(audit: AuditLog, stored_hash: PassphraseHash) -> None:
    authorizer = RiskChangeAuthorizer(audit, stored_hash, max_failures=2)
    with pytest.raises(AuthenticationFailed):
        await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase="no", now_ms=T0)
    await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase=RISK_PASSPHRASE, now_ms=T0 + 1)
    with pytest.raises(AuthenticationFailed, match="wrong passphrase"):
        await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase="no", now_ms=T0 + 2)
    await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase=RISK_PASSPHRASE, now_ms=T0 + 3)


async def test_without_a_stored_hash_every_passphrase_change_is_refused(audit: AuditLog) -> None:
    authorizer = RiskChangeAuthorizer(audit, None)
    with pytest.raises(AuthenticationFailed, match="no risk-change passphrase is set"):
        await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase="anything", now_ms=T0)
    assert (await audit.entries())[0].action == AuditAction.PARAMETER_CHANGE_DENIED


async def test_authorised_chat_with_confirmation_is_allowed_and_audited(audit: AuditLog) -> None:
    authorizer = RiskChangeAuthorizer(audit, None)
    await authorizer.authorize_from_chat(CHANGE, chat_id=42, allowed_chat_ids=[42], confirmed=True, now_ms=T0)
    [entry] = await audit.entries()
    assert (entry.actor, entry.action, entry.detail["method"]) == ("telegram:42", "parameter_change", "telegram_chat")


async def test_unknown_chat_is_refused_as_login_failure(audit: AuditLog) -> None:
    authorizer = RiskChangeAuthorizer(audit, None)
    with pytest.raises(AuthenticationFailed, match="not authorised"):
        await authorizer.authorize_from_chat(CHANGE, chat_id=7, allowed_chat_ids=[42], confirmed=True, now_ms=T0)
    assert (await audit.entries())[0].action == AuditAction.LOGIN_FAILURE


async def test_unconfirmed_chat_change_is_refused_and_audited(audit: AuditLog) -> None:
    authorizer = RiskChangeAuthorizer(audit, None)
    with pytest.raises(AuthenticationFailed, match="not confirmed"):
        await authorizer.authorize_from_chat(CHANGE, chat_id=42, allowed_chat_ids=[42], confirmed=False, now_ms=T0)
    [entry] = await audit.entries()
    assert entry.action == AuditAction.PARAMETER_CHANGE_DENIED
    assert entry.detail["reason"] == "not confirmed"


async def test_every_attempt_keeps_the_audit_chain_intact(audit: AuditLog, stored_hash: PassphraseHash) -> None:
    authorizer = RiskChangeAuthorizer(audit, stored_hash)
    with pytest.raises(AuthenticationFailed):
        await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase="no", now_ms=T0)
    await authorizer.authorize_with_passphrase(CHANGE, actor="console", passphrase=RISK_PASSPHRASE, now_ms=T0 + 1)
    assert (await audit.verify()).ok
