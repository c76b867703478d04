"""Specification of the encrypted secrets file and the sealed envelope under it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.domain.errors import SecurityException
from engine.security.crypto import KdfParams, SealedFormatError, WrongPassphraseError, seal, unseal
from engine.security.secrets_file import RISK_PASSPHRASE_HASH_NAME, SecretsFile, default_secrets_path

FAST_KDF = KdfParams(n=2**4, r=8, p=1)
DUMMY_KEY = "dummy-exchange-key-4b1d9f"
DUMMY_SECRET = "dummy-exchange-secret-a77c02"


@pytest.fixture
def secrets_file(tmp_path: Path) -> SecretsFile:
    return SecretsFile(tmp_path / "secrets.enc", kdf=FAST_KDF)


def test_sealed_bytes_open_with_the_same_passphrase() -> None:
    blob = seal(b"payload", "correct horse", purpose="secrets", params=FAST_KDF)
    assert unseal(blob, "correct horse", purpose="secrets") == b"payload"


def test_sealed_bytes_do_not_contain_the_plaintext() -> None:
    blob = seal(DUMMY_SECRET.encode(), "pw-123456", purpose="secrets", params=FAST_KDF)
    assert DUMMY_SECRET.encode() not in blob


def test_wrong_passphrase_raises_a_clear_security_error() -> None:
    blob = seal(b"payload", "right-one", purpose="secrets", params=FAST_KDF)
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        unseal(blob, "wrong-one", purpose="secrets")


def test_each_seal_uses_a_fresh_salt() -> None:
    first = seal(b"x", "pw-123456", purpose="secrets", params=FAST_KDF)
    second = seal(b"x", "pw-123456", purpose="secrets", params=FAST_KDF)
    assert first.split(b"\n")[0] != second.split(b"\n")[0]


def test_changed_salt_in_the_header_fails_like_a_wrong_passphrase() -> None:
    blob = seal(b"x", "pw-123456", purpose="secrets", params=FAST_KDF)
    header, token = blob.split(b"\n", 1)
    other_header = seal(b"y", "pw-123456", purpose="secrets", params=FAST_KDF).split(b"\n")[0]
    assert other_header != header
    with pytest.raises(WrongPassphraseError):
        unseal(other_header + b"\n" + token, "pw-123456", purpose="secrets")


def test_a_backup_file_is_not_accepted_as_a_secrets_file() -> None:
    blob = seal(b"x", "pw-123456", purpose="backup", params=FAST_KDF)
    with pytest.raises(SealedFormatError, match="expected a 'secrets' file"):
        unseal(blob, "pw-123456", purpose="secrets")


def test_garbage_is_reported_as_not_an_encrypted_file() -> None:
    with pytest.raises(SealedFormatError, match="not a tradebot encrypted file"):
        unseal(b"hello world", "pw", purpose="secrets")


def test_header_with_huge_scrypt_cost_is_refused_before_deriving() -> None:
    blob = seal(b"x", "pw-123456", purpose="secrets", params=FAST_KDF)
    forged = blob.replace(b'"n":16', b'"n":1073741824', 1)
    with pytest.raises(SealedFormatError, match="beyond the accepted limits"):
        unseal(forged, "pw-123456", purpose="secrets")


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(SecurityException, match="empty passphrase"):
        seal(b"x", "", purpose="secrets", params=FAST_KDF)


def test_production_kdf_is_scrypt_n_2_15_r_8_p_1() -> None:
    assert KdfParams() == KdfParams(n=2**15, r=8, p=1)


def test_set_then_read_returns_the_secret(secrets_file: SecretsFile) -> None:
    secrets_file.set("exchange.api_key", DUMMY_KEY, "pw-123456")
    secrets = secrets_file.read("pw-123456")
    assert secrets["exchange.api_key"].get_secret_value() == DUMMY_KEY


def test_secrets_are_returned_as_secret_str_that_hide_the_value_in_repr(secrets_file: SecretsFile) -> None:
    secrets_file.set("exchange.api_key", DUMMY_KEY, "pw-123456")
    assert DUMMY_KEY not in repr(secrets_file.read("pw-123456"))


def test_file_is_created_with_mode_0600(secrets_file: SecretsFile) -> None:
    old_umask = os.umask(0)
    try:
        secrets_file.set("exchange.api_key", DUMMY_KEY, "pw-123456")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(secrets_file.path.stat().st_mode) == 0o600


def test_file_bytes_never_contain_a_secret_value(secrets_file: SecretsFile) -> None:
    secrets_file.set("exchange.api_key", DUMMY_KEY, "pw-123456")
    secrets_file.set("exchange.api_secret", DUMMY_SECRET, "pw-123456")
    raw = secrets_file.path.read_bytes()
    assert DUMMY_KEY.encode() not in raw
    assert DUMMY_SECRET.encode() not in raw


def test_rewrite_leaves_no_temporary_files(secrets_file: SecretsFile) -> None:
    secrets_file.set("exchange.api_key", DUMMY_KEY, "pw-123456")
    secrets_file.set("exchange.api_secret", DUMMY_SECRET, "pw-123456")
    assert sorted(p.name for p in secrets_file.path.parent.iterdir()) == ["secrets.enc"]


def test_second_set_keeps_the_first_secret(secrets_file: SecretsFile) -> None:
    secrets_file.set("exchange.api_key", DUMMY_KEY, "pw-123456")
    secrets_file.set("telegram.token", "123456:dummy-token", "pw-123456")
    assert secrets_file.names("pw-123456") == ["exchange.api_key", "telegram.token"]


def test_set_with_wrong_passphrase_leaves_the_file_unchanged(secrets_file: SecretsFile) -> None:
    secrets_file.set("exchange.api_key", DUMMY_KEY, "pw-123456")
    before = secrets_file.path.read_bytes()
    with pytest.raises(WrongPassphraseError):
        secrets_file.set("exchange.api_secret", DUMMY_SECRET, "not-the-passphrase")
    assert secrets_file.path.read_bytes() == before


def test_unknown_secret_name_is_refused_listing_the_known_ones(secrets_file: SecretsFile) -> None:
    with pytest.raises(SecurityException, match="exchange.api_key, exchange.api_secret, telegram.token"):
        secrets_file.set("exchange.apikey", DUMMY_KEY, "pw-123456")


def test_empty_value_is_refused(secrets_file: SecretsFile) -> None:
    with pytest.raises(SecurityException, match="empty value"):
        secrets_file.set("exchange.api_key", "", "pw-123456")


def test_risk_passphrase_hash_can_be_stored(secrets_file: SecretsFile) -> None:
    secrets_file.set(RISK_PASSPHRASE_HASH_NAME, "scrypt$16$8$1$AA==$AA==", "pw-123456")
    assert secrets_file.names("pw-123456") == [RISK_PASSPHRASE_HASH_NAME]


def test_remove_deletes_one_secret(secrets_file: SecretsFile) -> None:
    secrets_file.set("exchange.api_key", DUMMY_KEY, "pw-123456")
    assert secrets_file.remove("exchange.api_key", "pw-123456") is True
    assert secrets_file.names("pw-123456") == []


def test_absent_file_reads_as_empty(secrets_file: SecretsFile) -> None:
    assert secrets_file.read("anything") == {}


def test_default_path_is_beside_the_config_file(tmp_path: Path) -> None:
    assert default_secrets_path(tmp_path / "conf" / "config.toml", environ={}) == tmp_path / "conf" / "secrets.enc"


def test_default_path_follows_tradebot_secrets_file(tmp_path: Path) -> None:
    chosen = tmp_path / "elsewhere.enc"
    assert default_secrets_path(None, environ={"TRADEBOT_SECRETS_FILE": str(chosen)}) == chosen
