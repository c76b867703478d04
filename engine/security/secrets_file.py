"""Provides the encrypted secrets file: named secrets sealed with a passphrase, kept at mode 0600.

The file holds a JSON object ``{"secrets": {name: value}}`` sealed by :mod:`engine.security.crypto`
(Fernet, Scrypt-derived key, salt in the header). Names are the dotted setting paths of the secrets
(``exchange.api_key``, ``exchange.api_secret``, ``telegram.token``) plus the stored hash of the
passphrase that authorises runtime risk changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from engine.config import SECRET_FIELDS, resolve_config_path
from engine.domain.errors import SecurityException
from engine.security.crypto import PRODUCTION_KDF, KdfParams, SealedFormatError, WrongPassphraseError, seal, unseal
from engine.security.permissions import write_private_file

SECRETS_FILE_ENV = "TRADEBOT_SECRETS_FILE"
DEFAULT_SECRETS_FILE_NAME = "secrets.enc"
SECRETS_PURPOSE = "secrets"
RISK_PASSPHRASE_HASH_NAME = "auth.risk_passphrase_hash"
SETTABLE_SECRET_NAMES = frozenset(SECRET_FIELDS)
KNOWN_SECRET_NAMES = SETTABLE_SECRET_NAMES | {RISK_PASSPHRASE_HASH_NAME}


def default_secrets_path(
    config_path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """``$TRADEBOT_SECRETS_FILE`` if set, else ``secrets.enc`` beside the config file."""
    env = os.environ if environ is None else environ
    from_env = env.get(SECRETS_FILE_ENV)
    if from_env:
        return Path(from_env)
    return resolve_config_path(config_path).parent / DEFAULT_SECRETS_FILE_NAME


class SecretsFile:
    """An encrypted file of named secrets.

    Args:
        path: where the file lives.
        kdf: Scrypt parameters for newly written files (reading uses those stored in the file).
    """

    def __init__(self, path: str | os.PathLike[str], *, kdf: KdfParams = PRODUCTION_KDF) -> None:
        self._path = Path(path)
        self._kdf = kdf

    @property
    def path(self) -> Path:
        return self._path

    def exists(self) -> bool:
        return self._path.is_file()

    def read(self, passphrase: str) -> dict[str, SecretStr]:
        """All secrets in the file (an absent file has none).

        Raises:
            WrongPassphraseError: the passphrase does not open the file.
            SecurityException: the file is unreadable or not a secrets file.
        """
        try:
            blob = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise SecurityException(f"{self._path}: cannot read secrets file: {error.strerror}") from None
        try:
            document = json.loads(unseal(blob, passphrase, purpose=SECRETS_PURPOSE))
            secrets = document["secrets"]
            if not isinstance(secrets, dict):
                raise TypeError
        except WrongPassphraseError as error:
            raise WrongPassphraseError(f"{self._path}: {error}") from None
        except SealedFormatError as error:
            raise SecurityException(f"{self._path}: {error}") from None
        except (ValueError, KeyError, TypeError):
            raise SecurityException(f"{self._path}: decrypted content is not a secrets document") from None
        return {str(name): SecretStr(str(value)) for name, value in secrets.items()}

    def names(self, passphrase: str) -> list[str]:
        """The sorted names of the stored secrets (never their values)."""
        return sorted(self.read(passphrase))

    def set(self, name: str, value: str, passphrase: str) -> None:
        """Adds or replaces one secret, creating the file if needed.

        Raises:
            SecurityException: unknown name, empty value, or the passphrase does not open the file.
        """
        if name not in KNOWN_SECRET_NAMES:
            allowed = ", ".join(sorted(SETTABLE_SECRET_NAMES))
            raise SecurityException(f"unknown secret name {name!r}; expected one of: {allowed}")
        if not value:
            raise SecurityException(f"refusing to store an empty value for {name}")
        secrets = self.read(passphrase)
        secrets[name] = SecretStr(value)
        self.write(secrets, passphrase)

    def remove(self, name: str, passphrase: str) -> bool:
        """Deletes one secret; returns whether it was there."""
        secrets = self.read(passphrase)
        if name not in secrets:
            return False
        del secrets[name]
        self.write(secrets, passphrase)
        return True

    def write(self, secrets: Mapping[str, SecretStr], passphrase: str) -> None:
        """Replaces the whole file atomically with ``secrets`` (mode 0600, fresh salt)."""
        plain = {name: secret.get_secret_value() for name, secret in secrets.items()}
        payload = json.dumps({"secrets": plain}, sort_keys=True).encode("utf-8")
        write_private_file(self._path, seal(payload, passphrase, purpose=SECRETS_PURPOSE, params=self._kdf))
