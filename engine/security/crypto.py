"""Provides passphrase-based sealing of bytes: Fernet with a key derived by Scrypt, salt kept beside the token.

A sealed blob is one ASCII header line (JSON: format version, purpose, Scrypt parameters and salt) followed
by a newline and the Fernet token. The header needs no protection of its own: a changed salt or changed
parameters derive a different key, and the token then fails authentication like a wrong passphrase does.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from engine.domain.errors import SecurityException

ENVELOPE_VERSION = 1
SALT_BYTES = 16
KEY_BYTES = 32
# Upper bounds on Scrypt parameters read from a file, so a crafted header cannot make us allocate gigabytes.
MAX_SCRYPT_LOG2_N = 20
MAX_SCRYPT_R = 16
MAX_SCRYPT_P = 4


class WrongPassphraseError(SecurityException):
    """The passphrase does not open the sealed data (or the data was altered)."""


class SealedFormatError(SecurityException):
    """The bytes are not a sealed blob this code can read."""


@dataclass(frozen=True)
class KdfParams:
    """Scrypt cost parameters.

    Attributes:
        n: CPU/memory cost, a power of two (memory used is about 128 * n * r bytes).
        r: block size.
        p: parallelisation.
    """

    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError(f"scrypt n must be a power of two >= 2, got {self.n}")
        if self.r < 1 or self.p < 1:
            raise ValueError("scrypt r and p must be >= 1")


PRODUCTION_KDF = KdfParams(n=2**15, r=8, p=1)


def derive_key(passphrase: str, salt: bytes, params: KdfParams = PRODUCTION_KDF) -> bytes:
    """The raw 32-byte key Scrypt derives from ``passphrase`` and ``salt``."""
    kdf = Scrypt(salt=salt, length=KEY_BYTES, n=params.n, r=params.r, p=params.p)
    return kdf.derive(passphrase.encode("utf-8"))


def seal(plaintext: bytes, passphrase: str, *, purpose: str, params: KdfParams = PRODUCTION_KDF) -> bytes:
    """Encrypts and authenticates ``plaintext`` under a key derived from ``passphrase``.

    Args:
        plaintext: the bytes to protect.
        passphrase: a non-empty passphrase.
        purpose: a short label stored in the header (``secrets``, ``backup``) and checked by :func:`unseal`.
        params: Scrypt parameters; production code keeps the default.
    """
    if not passphrase:
        raise SecurityException("an empty passphrase is not allowed")
    salt = os.urandom(SALT_BYTES)
    fernet = Fernet(base64.urlsafe_b64encode(derive_key(passphrase, salt, params)))
    header = {
        "v": ENVELOPE_VERSION,
        "purpose": purpose,
        "kdf": "scrypt",
        "n": params.n,
        "r": params.r,
        "p": params.p,
        "salt": base64.b64encode(salt).decode("ascii"),
    }
    header_line = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")
    return header_line + b"\n" + fernet.encrypt(plaintext)


def unseal(blob: bytes, passphrase: str, *, purpose: str) -> bytes:
    """Decrypts a blob made by :func:`seal`.

    Raises:
        WrongPassphraseError: the passphrase is wrong or the token was altered.
        SealedFormatError: the blob is not a sealed blob for ``purpose``.
    """
    header, token = _split(blob, purpose)
    try:
        salt = base64.b64decode(header["salt"], validate=True)
        params = KdfParams(n=int(header["n"]), r=int(header["r"]), p=int(header["p"]))
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        raise SealedFormatError(f"malformed header ({type(error).__name__})") from None
    if params.n > 2**MAX_SCRYPT_LOG2_N or params.r > MAX_SCRYPT_R or params.p > MAX_SCRYPT_P:
        raise SealedFormatError("scrypt parameters in the header are beyond the accepted limits")
    fernet = Fernet(base64.urlsafe_b64encode(derive_key(passphrase, salt, params)))
    try:
        return fernet.decrypt(token)
    except InvalidToken:
        raise WrongPassphraseError("wrong passphrase, or the file was altered") from None


def _split(blob: bytes, purpose: str) -> tuple[dict[str, Any], bytes]:
    header_line, sep, token = blob.partition(b"\n")
    try:
        header = json.loads(header_line) if sep else None
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("kdf") != "scrypt":
        raise SealedFormatError("not a tradebot encrypted file")
    if header.get("v") != ENVELOPE_VERSION:
        raise SealedFormatError(f"unsupported encrypted file version {header.get('v')!r}")
    if header.get("purpose") != purpose:
        raise SealedFormatError(f"this is a {header.get('purpose')!r} file, expected a {purpose!r} file")
    return header, token.strip()
