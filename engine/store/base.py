"""Provides the store's connection: opening, pragmas, migrations, transactions and JSON helpers.

One aiosqlite connection per ``Store`` in autocommit mode; transactions are explicit
(``BEGIN IMMEDIATE`` ... ``COMMIT``) and serialised by an asyncio lock, so a coroutine never
sees another coroutine's uncommitted writes and never joins its transaction by accident.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import aiosqlite
import numpy as np

from engine.domain.errors import StoreException
from engine.store.migrations import MIGRATIONS, apply_migrations, read_schema_version

T = TypeVar("T")

log = logging.getLogger(__name__)

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


def _roll_back(raw: sqlite3.Connection) -> None:
    """Ends a transaction the failed or cancelled block may have left open (runs on the DB thread)."""
    if raw.in_transaction:
        raw.execute("ROLLBACK")


def _rolling_back_to(savepoint: str) -> Callable[[sqlite3.Connection], None]:
    def undo(raw: sqlite3.Connection) -> None:
        """Undoes and drops ``savepoint`` if it exists (runs on the DB thread)."""
        if not raw.in_transaction:
            return
        try:
            raw.execute(f"ROLLBACK TO {savepoint}")
        except sqlite3.OperationalError as error:
            if "no such savepoint" in str(error):
                return  # SAVEPOINT never ran or RELEASE already did: nothing of this block to undo alone
            raise
        raw.execute(f"RELEASE {savepoint}")

    return undo


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

        Cancellation-safe: a task cancelled anywhere in here (awaiting the lock, ``BEGIN``, a statement or
        ``COMMIT``) leaves no transaction open and releases the lock; see :meth:`_settle`.

        Raises:
            StoreException: SQLite failed or the store is closed (the message names the file); the
                transaction is rolled back.
        """
        self._check_open()
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
        self._depth = 1
        try:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield
                await self._conn.execute("COMMIT")
            except BaseException as error:  # CancelledError too: never leave the transaction open
                await self._settle(_roll_back, error)
                if isinstance(error, sqlite3.Error):
                    raise self._wrapped(error) from error
                raise
        finally:
            self._depth = 0

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        savepoint = f"sp{self._depth}"
        self._depth += 1
        try:
            try:
                await self._conn.execute(f"SAVEPOINT {savepoint}")
                yield
                await self._conn.execute(f"RELEASE {savepoint}")
            except BaseException as error:  # the enclosing transaction rolls back the rest on cancellation
                await self._settle(_rolling_back_to(savepoint), error)
                if isinstance(error, sqlite3.Error):
                    raise self._wrapped(error) from error
                raise
        finally:
            self._depth -= 1

    async def _settle(self, undo: Callable[[sqlite3.Connection], None], cause: BaseException) -> None:
        """Runs ``undo`` on the connection's thread after every statement already queued there.

        A cancelled ``await conn.execute(...)`` does not withdraw the statement: aiosqlite's thread may
        still run it later, so ``conn.in_transaction`` read from the event loop right after the
        cancellation can be stale. ``undo`` is queued behind it (the thread runs its queue in order) and
        checks the transaction state itself. It is awaited to the end even if this task is cancelled
        again meanwhile (``asyncio.wait`` never cancels what it waits for, like ``asyncio.shield``; the
        lock stays held until the transaction is really closed); such a second cancellation is re-raised
        afterwards. A failing ``undo`` is logged; ``cause`` stays the error the caller re-raises.
        """
        pending = asyncio.ensure_future(self._in_db_thread(undo))
        cancelled_again = False
        while not pending.done():
            try:
                await asyncio.wait((pending,))
            except asyncio.CancelledError:
                cancelled_again = True
        if pending.cancelled():
            log.error("%s: rollback after %s was cancelled; the connection may be left in a transaction",
                      self._path, type(cause).__name__)
        elif pending.exception() is not None:
            log.error("%s: rollback after %s failed", self._path, type(cause).__name__,
                      exc_info=pending.exception())
        if cancelled_again and not isinstance(cause, asyncio.CancelledError):
            raise asyncio.CancelledError

    def _wrapped(self, error: sqlite3.Error) -> StoreException:
        """SQLite failures surface as StoreException naming the file."""
        return StoreException(f"{self._path}: {type(error).__name__}: {error}")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreException(f"{self._path}: the store is closed")

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[None]:
        """Waits for another task's open transaction so reads see committed data only.

        Raises:
            StoreException: SQLite failed or the store is closed (the message names the file).
        """
        self._check_open()
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            try:
                yield
            except sqlite3.Error as error:
                raise self._wrapped(error) from error
            return
        async with self._lock:
            self._owner = task
            try:
                yield
            except sqlite3.Error as error:
                raise self._wrapped(error) from error
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
        rowid, _ = await self._write(sql, params)
        return int(rowid or 0)

    async def _execute_rowcount(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Runs one write in its own transaction (or the caller's); returns how many rows it changed."""
        _, rowcount = await self._write(sql, params)
        return rowcount

    async def _executemany(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        """Runs one statement per row of ``rows`` (consumed lazily on the DB thread) in one transaction."""

        def run(raw: sqlite3.Connection) -> None:
            raw.executemany(sql, rows).close()

        async with self.transaction():
            await self._in_db_thread(run)

    async def _write(self, sql: str, params: Iterable[Any]) -> tuple[int | None, int]:
        """One statement in one trip to the DB thread: ``(lastrowid, rowcount)``."""
        args = tuple(params)

        def run(raw: sqlite3.Connection) -> tuple[int | None, int]:
            cursor = raw.execute(sql, args)
            try:
                return cursor.lastrowid, cursor.rowcount
            finally:
                cursor.close()

        async with self.transaction():
            return await self._in_db_thread(run)

    async def _in_db_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``fn(raw_connection)`` on the connection's own thread.

        Used to stream a large result straight into numpy without building a list of row tuples
        on the way. aiosqlite has no public hook for this; ``_execute`` is the call every one of its
        public methods goes through (pinned aiosqlite 0.22).
        """
        raw_call = self._conn._execute  # noqa: SLF001 - see docstring
        return await raw_call(lambda: fn(self._conn._conn))  # type: ignore[no-any-return,no-untyped-call]  # noqa: SLF001
