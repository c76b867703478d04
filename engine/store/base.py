"""Provides the store's connection: opening, pragmas, migrations, transactions and JSON helpers.

One aiosqlite connection per ``Store`` in autocommit mode; transactions are explicit
(``BEGIN IMMEDIATE`` ... ``COMMIT``) and serialised by an asyncio lock, so a coroutine never
sees another coroutine's uncommitted writes and never joins its transaction by accident.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import aiosqlite
import numpy as np

from engine.errors import StoreException
from engine.store.migrations import MIGRATIONS, apply_migrations, read_schema_version

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5_000


def now_ms() -> int:
    """Wall-clock time in UTC ms; used only when a caller gives no explicit time."""
    return time.time_ns() // 1_000_000


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str:
    """Compact, key-sorted JSON; numpy scalars and arrays become plain numbers and lists."""
    return json.dumps(value, default=_json_default, sort_keys=True, separators=(",", ":"))


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


StoreT = TypeVar("StoreT", bound="StoreBase")


class StoreOpening(Generic[StoreT]):
    """What ``Store.open`` returns: await it for the store, or use it as an async context manager."""

    def __init__(self, opening: Coroutine[Any, Any, StoreT]) -> None:
        self._opening = opening
        self._store: StoreT | None = None

    def __await__(self) -> Generator[Any, None, StoreT]:
        return self._opening.__await__()

    async def __aenter__(self) -> StoreT:
        self._store = await self._opening
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()


class StoreBase:
    """The connection half of ``engine.store.Store``; use ``Store.open``."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0
        self._closed = False

    @classmethod
    def open(cls, path: str | Path) -> StoreOpening[Self]:
        """Opens (creating it and its parent directories if needed) and migrates the store file.

        Both ``store = await Store.open(path)`` and ``async with Store.open(path) as store:`` work;
        the second closes the store when the block ends.

        Raises:
            StoreException: the file cannot be opened, is not a SQLite database, is newer than this
                code, or a migration failed. The message names the file.
        """
        return StoreOpening(cls._open(Path(path)))

    @classmethod
    async def _open(cls, path: Path) -> Self:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreException(f"{path}: cannot create directory {path.parent}: {error}") from error
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as error:
            raise StoreException(f"{path}: cannot open store: {error}") from error
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await apply_migrations(conn, str(path), MIGRATIONS)
        except sqlite3.Error as error:
            await conn.close()
            raise StoreException(f"{path}: cannot open store: {error}") from error
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    @property
    def path(self) -> Path:
        return self._path

    async def close(self) -> None:
        """Closes the connection (idempotent); the WAL is checkpointed by SQLite on last close."""
        if not self._closed:
            self._closed = True
            await self._conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def schema_version(self) -> int:
        async with self._reading():
            return await read_schema_version(self._conn)

    async def pragma(self, name: str) -> Any:
        """The value of one PRAGMA (``journal_mode``, ``foreign_keys``...), for diagnostics and tests."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a pragma name: {name!r}")
        async with self._reading():
            rows = list(await self._conn.execute_fetchall(f"PRAGMA {name}"))
        return rows[0][0] if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Groups writes into one atomic unit: ``BEGIN IMMEDIATE``, ``COMMIT``, or ``ROLLBACK`` on error.

        Re-entrant within one task: a nested block becomes a SAVEPOINT (rolled back alone if it raises),
        so a store method that opens its own transaction can be called inside a caller's transaction.
        Other tasks' reads and writes on this store wait until the transaction ends.

        Raises:
            StoreException: SQLite failed (the message names the file); the transaction is rolled back.
        """
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            if self._depth == 0:
                async with self._top_level_transaction():
                    yield
            else:
                async with self._savepoint():
                    yield
            return
        async with self._lock:
            self._owner = task
            try:
                async with self._top_level_transaction():
                    yield
            finally:
                self._owner = None

    @asynccontextmanager
    async def _top_level_transaction(self) -> AsyncIterator[None]:
        await self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException as error:
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise self._wrapped(error) from error
            raise
        else:
            try:
                await self._conn.execute("COMMIT")
            except sqlite3.Error as error:
                if self._conn.in_transaction:
                    await self._conn.execute("ROLLBACK")
                raise self._wrapped(error) from error
        finally:
            self._depth = 0

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        savepoint = f"sp{self._depth}"
        self._depth += 1
        await self._conn.execute(f"SAVEPOINT {savepoint}")
        try:
            yield
        except BaseException as error:
            if self._conn.in_transaction:
                await self._conn.execute(f"ROLLBACK TO {savepoint}")
                await self._conn.execute(f"RELEASE {savepoint}")
            if isinstance(error, sqlite3.Error):
                raise self._wrapped(error) from error
            raise
        else:
            await self._conn.execute(f"RELEASE {savepoint}")
        finally:
            self._depth -= 1

    def _wrapped(self, error: sqlite3.Error) -> StoreException:
        """SQLite failures surface as StoreException naming the file."""
        return StoreException(f"{self._path}: {type(error).__name__}: {error}")

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[None]:
        """Waits for another task's open transaction so reads see committed data only."""
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            yield
            return
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._reading():
            return list(await self._conn.execute_fetchall(sql, tuple(params)))

    async def _fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Runs one write in its own transaction (or the caller's); returns the last inserted rowid."""
        async with self.transaction():
            cursor = await self._conn.execute(sql, tuple(params))
            rowid = cursor.lastrowid
            await cursor.close()
        return int(rowid or 0)

    async def _in_db_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``fn(raw_connection)`` on the connection's own thread.

        Used to stream a large result straight into numpy without building a list of row tuples
        on the way. aiosqlite has no public hook for this; ``_execute`` is the call every one of its
        public methods goes through (pinned aiosqlite 0.22).
        """
        raw_call = self._conn._execute  # noqa: SLF001 - see docstring
        return await raw_call(lambda: fn(self._conn._conn))  # type: ignore[no-any-return,no-untyped-call]  # noqa: SLF001
