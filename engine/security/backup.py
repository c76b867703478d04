"""Provides encrypted backups of the SQLite store and their checked restore.

A backup is taken with SQLite's online backup API into an in-memory database (so no plain-text copy
ever touches the disk), which yields one consistent snapshot even while the engine keeps writing
through its own connection. The image is compressed and sealed with a passphrase (Fernet, Scrypt
key) into a file of mode 0600.

A restore decrypts into a private temporary file beside the database, checks it (``PRAGMA
integrity_check``, schema version not newer than this code), refuses when another connection has the
database open, keeps the current file as ``<db>.pre-restore``, and renames the new file into place.
Both functions block: call them from a thread (``asyncio.to_thread``) inside the engine.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path

from engine.domain.errors import SecurityException
from engine.security.crypto import PRODUCTION_KDF, KdfParams, SealedFormatError, seal, unseal
from engine.security.permissions import PRIVATE_FILE_MODE, fsync_directory, write_private_file
from engine.store.migrations import LATEST_VERSION

BACKUP_PURPOSE = "backup"
PRE_RESTORE_SUFFIX = ".pre-restore"
# How long the backup waits for a writer's lock, seconds (WAL readers rarely wait at all).
BACKUP_BUSY_TIMEOUT_S = 10.0
_COMPRESSION_LEVEL = 6


@dataclass(frozen=True)
class BackupInfo:
    """What a backup holds.

    Attributes:
        path: the backup file.
        schema_version: the store schema version inside.
        database_bytes: size of the database image, bytes.
        file_bytes: size of the encrypted file, bytes.
    """

    path: Path
    schema_version: int
    database_bytes: int
    file_bytes: int


@dataclass(frozen=True)
class RestoreInfo:
    """What a restore did.

    Attributes:
        database_path: the database that was replaced.
        schema_version: the schema version of the restored file.
        previous_copy: where the replaced database was kept, or None when there was none.
    """

    database_path: Path
    schema_version: int
    previous_copy: Path | None


def create_backup(
    database_path: str | os.PathLike[str],
    backup_path: str | os.PathLike[str],
    passphrase: str,
    *,
    kdf: KdfParams = PRODUCTION_KDF,
    overwrite: bool = False,
) -> BackupInfo:
    """Writes an encrypted, consistent copy of the database at ``database_path`` to ``backup_path``.

    Raises:
        SecurityException: the database is missing or damaged, or ``backup_path`` exists and
            ``overwrite`` is false.
    """
    database = Path(database_path)
    target = Path(backup_path)
    if not database.is_file():
        raise SecurityException(f"{database}: no database to back up")
    if target.exists() and not overwrite:
        raise SecurityException(f"{target} already exists; choose another name or pass --force")
    if target.resolve() == database.resolve():
        raise SecurityException("the backup file must not be the database itself")
    image, schema_version = _snapshot(database)
    sealed = seal(zlib.compress(image, _COMPRESSION_LEVEL), passphrase, purpose=BACKUP_PURPOSE, params=kdf)
    write_private_file(target, sealed)
    return BackupInfo(target, schema_version, len(image), len(sealed))


def read_backup(backup_path: str | os.PathLike[str], passphrase: str) -> bytes:
    """The database image inside a backup file.

    Raises:
        WrongPassphraseError: the passphrase does not open the file.
        SecurityException: the file is missing, not a backup, or damaged.
    """
    path = Path(backup_path)
    try:
        blob = path.read_bytes()
    except OSError as error:
        raise SecurityException(f"{path}: cannot read backup: {error.strerror}") from None
    try:
        compressed = unseal(blob, passphrase, purpose=BACKUP_PURPOSE)
    except SealedFormatError as error:
        raise SecurityException(f"{path}: {error}") from None
    try:
        return zlib.decompress(compressed)
    except zlib.error:
        raise SecurityException(f"{path}: the backup content is damaged") from None


def restore_backup(
    backup_path: str | os.PathLike[str],
    database_path: str | os.PathLike[str],
    passphrase: str,
) -> RestoreInfo:
    """Replaces the database at ``database_path`` with the checked content of ``backup_path``.

    Nothing is changed unless every check passes. The replaced database is kept as
    ``<database>.pre-restore`` (mode 0600).

    Raises:
        WrongPassphraseError: the passphrase does not open the backup.
        SecurityException: the backup is damaged, its schema is newer than this code, or the
            database is in use by another connection (stop the engine first).
    """
    database = Path(database_path)
    image = read_backup(backup_path, passphrase)
    database.parent.mkdir(parents=True, exist_ok=True)
    staged = database.with_name(f".{database.name}.{os.getpid()}.{os.urandom(4).hex()}.restore")
    write_private_file(staged, image)
    try:
        schema_version = _check_database_file(staged)
        previous = _replace_database(staged, database)
    finally:
        for leftover in (staged, _sidecar(staged, "-wal"), _sidecar(staged, "-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return RestoreInfo(database, schema_version, previous)


def _snapshot(database: Path) -> tuple[bytes, int]:
    """A consistent in-memory copy of ``database`` and its schema version."""
    try:
        source = sqlite3.connect(database, timeout=BACKUP_BUSY_TIMEOUT_S)
    except sqlite3.Error as error:
        raise SecurityException(f"{database}: cannot open database: {error}") from None
    memory = sqlite3.connect(":memory:")
    try:
        # pages=-1 copies everything in one step under one read transaction: a single snapshot.
        source.backup(memory, pages=-1)
        _require_intact(memory, database)
        return memory.serialize(), _schema_version(memory, database)
    except sqlite3.Error as error:
        raise SecurityException(f"{database}: backup failed: {error}") from None
    finally:
        memory.close()
        source.close()


def _check_database_file(path: Path) -> int:
    try:
        connection = sqlite3.connect(path, timeout=0)
    except sqlite3.Error as error:
        raise SecurityException(f"the backup does not hold a database: {error}") from None
    try:
        _require_intact(connection, "the backup")
        version = _schema_version(connection, "the backup", newest=LATEST_VERSION)
        # Leave the staged file in rollback-journal mode so it carries no WAL of its own when renamed.
        connection.execute("PRAGMA journal_mode = DELETE")
        return version
    except sqlite3.DatabaseError as error:
        raise SecurityException(f"the backup does not hold a valid database: {error}") from None
    finally:
        connection.close()


def _require_intact(connection: sqlite3.Connection, what: object) -> None:
    rows = connection.execute("PRAGMA integrity_check").fetchall()
    if [tuple(row) for row in rows] != [("ok",)]:
        first = rows[0][0] if rows else "no answer"
        raise SecurityException(f"{what}: integrity check failed: {first}")


def _schema_version(connection: sqlite3.Connection, what: object, *, newest: int | None = None) -> int:
    try:
        row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:
        raise SecurityException(f"{what} is not a tradebot database (no schema_version table)") from None
    version = row[0] if row else None
    if not isinstance(version, int):
        raise SecurityException(f"{what} has no schema version")
    if newest is not None and version > newest:
        raise SecurityException(
            f"{what} has schema version {version}, newer than this program ({newest}); upgrade tradebot"
        )
    return version


def _replace_database(staged: Path, database: Path) -> Path | None:
    """Renames ``staged`` over ``database`` after keeping a copy; refuses when the database is open."""
    if not database.exists():
        _move_into_place(staged, database)
        return None
    previous = database.with_name(database.name + PRE_RESTORE_SUFFIX)
    current = sqlite3.connect(database, timeout=0)
    try:
        try:
            # Leaving WAL mode needs the only connection: it fails while the engine (or anything)
            # has the file open, and it folds a leftover WAL into the file so the copy is complete.
            mode = current.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
            if str(mode).lower() != "delete":
                raise SecurityException(f"{database} is in use; stop the engine before restoring")
            current.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as error:
            raise SecurityException(f"{database} is in use; stop the engine before restoring ({error})") from None
        except sqlite3.DatabaseError:
            # The current file is damaged (the usual reason to restore): nothing can hold it open
            # as a database, so keep its bytes and replace it.
            pass
        write_private_file(previous, database.read_bytes())
        _move_into_place(staged, database)
        return previous
    finally:
        with contextlib.suppress(sqlite3.Error):
            current.rollback()
        current.close()


def _move_into_place(staged: Path, database: Path) -> None:
    os.replace(staged, database)
    os.chmod(database, PRIVATE_FILE_MODE)
    # A WAL or journal left by the replaced file would be applied to the new one: remove them.
    for stale in (_sidecar(database, "-wal"), _sidecar(database, "-shm"), _sidecar(database, "-journal")):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    fsync_directory(database.parent)


def _sidecar(database: Path, suffix: str) -> Path:
    return database.with_name(database.name + suffix)
