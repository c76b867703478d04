"""Specification of encrypted backups and checked restores of the SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.domain.errors import SecurityException
from engine.security.audit import AuditAction, AuditLog
from engine.security.backup import PRE_RESTORE_SUFFIX, create_backup, read_backup, restore_backup
from engine.security.crypto import KdfParams, WrongPassphraseError
from engine.store import LATEST_VERSION, Store

FAST_KDF = KdfParams(n=2**4, r=8, p=1)
PASSPHRASE = "backup-passphrase-x1"
MARKER = "plain-marker-that-must-not-leak-5521"


def make_database(path: Path, rows: int = 10) -> Path:
    """A migrated store file plus two tables that every writer fills in the same transaction."""

    async def migrate() -> None:
        async with Store.open(path):
            pass

    asyncio.run(migrate())
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE pair_a (n INTEGER PRIMARY KEY, note TEXT)")
        connection.execute("CREATE TABLE pair_b (n INTEGER PRIMARY KEY, note TEXT)")
        for n in range(rows):
            connection.execute("INSERT INTO pair_a VALUES (?, ?)", (n, MARKER))
            connection.execute("INSERT INTO pair_b VALUES (?, ?)", (n, MARKER))
    connection.close()
    return path


def counts(path: Path) -> tuple[int, int]:
    connection = sqlite3.connect(path)
    try:
        a = connection.execute("SELECT COUNT(*) FROM pair_a").fetchone()[0]
        b = connection.execute("SELECT COUNT(*) FROM pair_b").fetchone()[0]
        return a, b
    finally:
        connection.close()


def integrity(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


class PairWriter(threading.Thread):
    """Inserts one row into each pair table per transaction until stopped, like a busy engine."""

    def __init__(self, path: Path, start_at: int) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.next_n = start_at
        self.stop = threading.Event()
        self.committed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        connection = sqlite3.connect(self.path, timeout=10)
        connection.execute("PRAGMA journal_mode = WAL")
        try:
            while not self.stop.is_set():
                with connection:
                    connection.execute("INSERT INTO pair_a VALUES (?, ?)", (self.next_n, "w" * 200))
                    connection.execute("INSERT INTO pair_b VALUES (?, ?)", (self.next_n, "w" * 200))
                self.next_n += 1
                self.committed += 1
        except BaseException as error:  # noqa: BLE001 - reported to the test
            self.error = error
        finally:
            connection.close()


def wait_until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return make_database(tmp_path / "live" / "tradebot.sqlite3")


def test_backup_and_restore_round_trip_the_rows(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    assert info.schema_version == LATEST_VERSION
    target = tmp_path / "restored" / "db.sqlite3"
    result = restore_backup(info.path, target, PASSPHRASE)
    assert counts(target) == (10, 10)
    assert integrity(target) == "ok"
    assert result.previous_copy is None


def test_backup_file_is_mode_0600(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600


def test_backup_file_holds_no_plain_database_content(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    raw = info.path.read_bytes()
    assert MARKER.encode() not in raw
    assert b"SQLite format 3" not in raw


def test_backup_writes_no_plain_copy_to_disk(database: Path, tmp_path: Path) -> None:
    before = {p for p in tmp_path.rglob("*")}
    create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    created = {p for p in tmp_path.rglob("*")} - before
    assert created == {tmp_path / "b.enc"}


def test_existing_backup_file_is_not_overwritten_by_default(database: Path, tmp_path: Path) -> None:
    (tmp_path / "b.enc").write_bytes(b"keep me")
    with pytest.raises(SecurityException, match="already exists"):
        create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    assert (tmp_path / "b.enc").read_bytes() == b"keep me"


def test_missing_database_cannot_be_backed_up(tmp_path: Path) -> None:
    with pytest.raises(SecurityException, match="no database to back up"):
        create_backup(tmp_path / "none.sqlite3", tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)


def test_backup_taken_during_continuous_writes_restores_a_consistent_snapshot(database: Path, tmp_path: Path) -> None:
    writer = PairWriter(database, start_at=1_000)
    writer.start()
    try:
        wait_until(lambda: writer.committed >= 50)
        info = create_backup(database, tmp_path / "during.enc", PASSPHRASE, kdf=FAST_KDF)
        committed_after_backup = writer.committed
        wait_until(lambda: writer.committed > committed_after_backup + 20)
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None
    target = tmp_path / "restored.sqlite3"
    restore_backup(info.path, target, PASSPHRASE)
    assert integrity(target) == "ok"
    a, b = counts(target)
    assert a == b  # both inserts of a transaction, or neither
    assert 10 + 50 <= a < 10 + writer.committed  # taken mid-stream, not before or after the writes


async def test_backup_from_a_thread_while_the_store_appends_audit_rows(tmp_path: Path) -> None:
    path = tmp_path / "engine.sqlite3"
    async with Store.open(path) as store:
        log = AuditLog(store)
        stop = asyncio.Event()

        async def keep_appending() -> int:
            n = 0
            while not stop.is_set():
                await log.append("engine", AuditAction.CLOSE_POSITION, {"n": n}, 1_700_000_000_000 + n)
                n += 1
            return n

        appender = asyncio.create_task(keep_appending())
        while len(await store.audit_rows(limit=30)) < 30:
            await asyncio.sleep(0.001)
        info = await asyncio.to_thread(create_backup, path, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
        stop.set()
        total = await appender
    restored = tmp_path / "restored.sqlite3"
    restore_backup(info.path, restored, PASSPHRASE)
    async with Store.open(restored) as copy:
        result = await AuditLog(copy).verify()
        assert result.ok
        assert 30 <= result.rows_checked <= total


def test_restore_with_wrong_passphrase_leaves_the_database_untouched(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    before = database.read_bytes()
    with pytest.raises(WrongPassphraseError):
        restore_backup(info.path, database, "not-the-passphrase")
    assert database.read_bytes() == before
    assert sorted(p.name for p in database.parent.iterdir()) == [database.name]


def test_restore_replaces_the_database_and_keeps_the_previous_one(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("INSERT INTO pair_a VALUES (500, 'after backup')")
    connection.close()
    result = restore_backup(info.path, database, PASSPHRASE)
    assert counts(database) == (10, 10)
    assert result.previous_copy == database.with_name(database.name + PRE_RESTORE_SUFFIX)
    assert counts(result.previous_copy) == (11, 10)
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert stat.S_IMODE(result.previous_copy.stat().st_mode) == 0o600


def test_restored_database_opens_as_a_store(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    restore_backup(info.path, database, PASSPHRASE)

    async def open_it() -> int:
        async with Store.open(database) as store:
            return await store.schema_version()

    assert asyncio.run(open_it()) == LATEST_VERSION


def test_restore_refuses_while_the_database_is_open_elsewhere(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    engine_connection = sqlite3.connect(database)
    engine_connection.execute("PRAGMA journal_mode = WAL")
    engine_connection.execute("SELECT COUNT(*) FROM pair_a").fetchone()
    try:
        with pytest.raises(SecurityException, match="in use; stop the engine"):
            restore_backup(info.path, database, PASSPHRASE)
    finally:
        engine_connection.close()
    assert not database.with_name(database.name + PRE_RESTORE_SUFFIX).exists()


def test_restore_refuses_a_schema_newer_than_this_code(database: Path, tmp_path: Path) -> None:
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (LATEST_VERSION + 1,))
    connection.close()
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    target = tmp_path / "t.sqlite3"
    with pytest.raises(SecurityException, match="newer than this program"):
        restore_backup(info.path, target, PASSPHRASE)
    assert not target.exists()


def test_backup_refuses_a_database_that_is_not_a_tradebot_store(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE t (x)")
    connection.close()
    with pytest.raises(SecurityException, match="not a tradebot database"):
        create_backup(other, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)


def test_restore_refuses_a_damaged_backup(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    raw = bytearray(info.path.read_bytes())
    raw[-20] = ord("A") if raw[-20] != ord("A") else ord("B")
    info.path.write_bytes(bytes(raw))
    with pytest.raises(SecurityException):
        restore_backup(info.path, tmp_path / "t.sqlite3", PASSPHRASE)


def test_read_backup_gives_a_sqlite_image(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    assert read_backup(info.path, PASSPHRASE).startswith(b"SQLite format 3\x00")


def test_restore_replaces_a_damaged_database_and_keeps_its_bytes(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    database.write_bytes(b"this is no longer a database" * 100)
    result = restore_backup(info.path, database, PASSPHRASE)
    assert counts(database) == (10, 10)
    assert result.previous_copy is not None
    assert result.previous_copy.read_bytes().startswith(b"this is no longer a database")


def test_restore_after_a_crash_keeps_the_unsaved_wal_in_the_previous_copy(database: Path, tmp_path: Path) -> None:
    info = create_backup(database, tmp_path / "b.enc", PASSPHRASE, kdf=FAST_KDF)
    crash = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode = WAL')\n"
        "c.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "with c: c.execute(\"INSERT INTO pair_a VALUES (777, 'only in the wal')\")\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", crash, str(database)], check=True)
    assert database.with_name(database.name + "-wal").stat().st_size > 0
    result = restore_backup(info.path, database, PASSPHRASE)
    assert not database.with_name(database.name + "-wal").exists()
    assert counts(database) == (10, 10)
    assert result.previous_copy is not None
    assert counts(result.previous_copy) == (11, 10)
