"""Provides tradebot's security layer: secrets, file permissions, log redaction, audit chain, auth and backups.

Start-up, in order: :func:`load_settings_with_secrets` (env > encrypted file > keyring; plain text in
config refused live), :func:`check_file_permissions` on the config and secrets files, then
:func:`install_secret_redaction` with ``resolved.secret_values()``.
"""

from __future__ import annotations

from engine.domain.ports import RiskChange
from engine.security.audit import AuditAction, AuditEntry, AuditLog, VerifyResult, verify_rows
from engine.security.auth import (
    AuthenticationFailed,
    PassphraseHash,
    RiskChangeAuthorizer,
    hash_passphrase,
    passphrase_hash_from_secrets,
    verify_passphrase,
)
from engine.security.backup import BackupInfo, RestoreInfo, create_backup, read_backup, restore_backup
from engine.security.crypto import PRODUCTION_KDF, KdfParams, WrongPassphraseError
from engine.security.permissions import check_file_permissions, permission_problem, write_private_file
from engine.security.redaction import SecretRedactionFilter, SecretRedactor, install_secret_redaction
from engine.security.resolution import ResolvedSecrets, load_settings_with_secrets, resolve_secrets, secure_startup
from engine.security.secrets_file import SecretsFile, default_secrets_path

__all__ = [
    "PRODUCTION_KDF",
    "AuditAction",
    "AuditEntry",
    "AuditLog",
    "AuthenticationFailed",
    "BackupInfo",
    "KdfParams",
    "PassphraseHash",
    "ResolvedSecrets",
    "RestoreInfo",
    "RiskChange",
    "RiskChangeAuthorizer",
    "SecretRedactionFilter",
    "SecretRedactor",
    "SecretsFile",
    "VerifyResult",
    "WrongPassphraseError",
    "check_file_permissions",
    "create_backup",
    "default_secrets_path",
    "hash_passphrase",
    "install_secret_redaction",
    "load_settings_with_secrets",
    "passphrase_hash_from_secrets",
    "permission_problem",
    "read_backup",
    "resolve_secrets",
    "restore_backup",
    "secure_startup",
    "verify_passphrase",
    "verify_rows",
    "write_private_file",
]
