"""Provides ``tradebot backup FILE`` and ``tradebot restore FILE``: encrypted copies of the store.

The passphrase comes from ``$TRADEBOT_BACKUP_PASSPHRASE``, else ``$TRADEBOT_SECRETS_PASSPHRASE``,
else a hidden prompt. Both steps are recorded in the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.security.audit import AuditAction, AuditLog, VerifyResult
from engine.security.backup import BackupInfo, RestoreInfo, create_backup, restore_backup
from engine.security.passphrase import (
    BACKUP_PASSPHRASE_ENV,
    SECRETS_PASSPHRASE_ENV,
    passphrase_from_env_or_prompt,
    require_passphrase,
)
from engine.store import Store
from engine.store.base import now_ms

PASSPHRASE_ENVS = (BACKUP_PASSPHRASE_ENV, SECRETS_PASSPHRASE_ENV)
ACTOR = "cli"


def register(subparsers: Any) -> None:
    backup = subparsers.add_parser(
        "backup", help="write an encrypted, consistent copy of the database (safe while the engine runs)"
    )
    backup.add_argument("file", type=Path, help="backup file to create (mode 0600)")
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.set_defaults(handler=handle_backup)

    restore = subparsers.add_parser(
        "restore", help="check an encrypted backup and replace the database with it (stop the engine first)"
    )
    restore.add_argument("file", type=Path, help="backup file made by `tradebot backup`")
    restore.set_defaults(handler=handle_restore)


def handle_backup(args: argparse.Namespace, settings: Settings) -> int:
    database = Path(settings.storage.database_path)
    passphrase = require_passphrase(
        passphrase_from_env_or_prompt(PASSPHRASE_ENVS, "Backup passphrase: ", confirm=True), PASSPHRASE_ENVS
    )
    info = create_backup(database, args.file, passphrase, overwrite=args.force)
    asyncio.run(_record_backup(database, info))
    print(
        f"backup written to {info.path} (schema version {info.schema_version}, "
        f"{info.database_bytes} database bytes, {info.file_bytes} file bytes)"
    )
    return 0


def handle_restore(args: argparse.Namespace, settings: Settings) -> int:
    database = Path(settings.storage.database_path)
    passphrase = require_passphrase(
        passphrase_from_env_or_prompt(PASSPHRASE_ENVS, "Backup passphrase: "), PASSPHRASE_ENVS
    )
    info = restore_backup(args.file, database, passphrase)
    verdict = asyncio.run(_record_restore(args.file, info))
    print(f"restored {info.database_path} from {args.file} (schema version {info.schema_version})")
    if info.previous_copy is not None:
        print(f"the replaced database is kept as {info.previous_copy}")
    if not verdict.ok:
        print(
            f"warning: the restored audit log is broken at seq {verdict.first_broken_seq}: {verdict.reason}",
            file=sys.stderr,
        )
    return 0


async def _record_backup(database: Path, info: BackupInfo) -> None:
    async with Store.open(database) as store:
        detail = {"file": str(info.path), "schema_version": info.schema_version}
        await AuditLog(store).append(ACTOR, AuditAction.BACKUP_CREATED, detail, now_ms())


async def _record_restore(backup_file: Path, info: RestoreInfo) -> VerifyResult:
    async with Store.open(info.database_path) as store:
        log = AuditLog(store)
        verdict = await log.verify()
        detail = {
            "file": str(backup_file),
            "schema_version": info.schema_version,
            "previous_copy": None if info.previous_copy is None else str(info.previous_copy),
        }
        await log.append(ACTOR, AuditAction.DATABASE_RESTORED, detail, now_ms())
        return verdict
