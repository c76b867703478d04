"""Provides EngineLock: one trading engine per database, held as an exclusive lock file beside the SQLite file.

The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<database>.lock`` (e.g. ``tradebot.sqlite3.lock``), taken
before the store is opened and before anything talks to the exchange, and held for the engine's lifetime. The
kernel drops a flock when its file is closed, so a crashed or SIGKILLed engine never leaves a stale lock; the
file itself stays (removing it would race a process that just opened it), and its contents only describe the
last holder. The holder writes its pid, start time (UTC ms) and mode into the file, so an engine that is refused
can name the one that holds the database.

Taking the lock never blocks, so the async start-up calls it directly (no thread). flock locks belong to the
open file, so a second acquire in the same process on the same database is refused too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from engine.domain.errors import EngineAlreadyRunningException, StoreException

LOCK_SUFFIX = ".lock"
LOCK_STATE_KEY = "engine.lock"  # kv_state key of the holder (pid, started_ms, mode), written once the store is open
LOCK_FILE_MODE = 0o600
_READ_LIMIT = 4096


def lock_path_for(database_path: str | os.PathLike[str]) -> Path:
    """The lock file of a database: ``<database>.lock`` in the same folder."""
    database = Path(database_path)
    return database.with_name(database.name + LOCK_SUFFIX)


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a database's lock, as its lock file says."""

    pid: int
    started_ms: int | None = None
    mode: str | None = None

    def describe(self) -> str:
        """``pid 1234, paper, started 2026-12-03 15:40:02 UTC`` (only the parts that are known)."""
        parts = [f"pid {self.pid}"]
        if self.mode:
            parts.append(self.mode)
        if self.started_ms is not None:
            started = datetime.fromtimestamp(self.started_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            parts.append(f"started {started}")
        return ", ".join(parts)

    def as_state(self) -> dict[str, Any]:
        return {"pid": self.pid, "started_ms": self.started_ms, "mode": self.mode}

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The holder a lock file's text names, or None when it names none (empty, torn or foreign)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        pid, started, mode = data.get("pid"), data.get("started_ms"), data.get("mode")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None
        return cls(
            pid,
            started if isinstance(started, int) and not isinstance(started, bool) else None,
            mode if isinstance(mode, str) else None,
        )


def refusal_message(database_path: str | os.PathLike[str], holder: LockHolder | None) -> str:
    """The one line a refused engine reports."""
    who = holder.describe() if holder is not None else "pid unknown"
    database = Path(database_path).absolute()
    return f"another tradebot engine ({who}) holds {database}; stop it first (it keeps trading)"


def read_holder(database_path: str | os.PathLike[str]) -> LockHolder | None:
    """The holder the lock file names (the last one if nobody holds it now), or None if it names none."""
    try:
        text = lock_path_for(database_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return LockHolder.parse(text[:_READ_LIMIT])


class EngineLock:
    """An exclusive, non-blocking lock on one database for one engine.

    Use :meth:`acquire` (or :func:`probe` to check and let go at once); :meth:`release` closes the file and
    is idempotent. Also a context manager.

    Attributes:
        database_path: the SQLite file this lock guards.
        path: the lock file, ``<database>.lock``.
        mode: what the holder runs (``paper`` / ``live``), written into the lock file.
    """

    def __init__(self, database_path: str | os.PathLike[str], *, mode: str = "paper") -> None:
        self.database_path = Path(database_path)
        self.path = lock_path_for(self.database_path)
        self.mode = mode
        self.holder: LockHolder | None = None
        self._fd: int | None = None

    @classmethod
    def take(cls, database_path: str | os.PathLike[str], *, mode: str = "paper") -> Self:
        """A held lock on ``database_path``.

        Raises:
            EngineAlreadyRunningException: another engine (this process or another) holds it.
            StoreException: the lock file cannot be opened or locked for another reason.
        """
        lock = cls(database_path, mode=mode)
        lock.acquire()
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, record: bool = True) -> None:
        """Take the lock now or raise; never waits. ``record=False`` leaves the file's holder as it is (probes).

        Raises:
            EngineAlreadyRunningException: another engine holds it; the message names its pid.
            StoreException: the lock file cannot be opened or locked for another reason.
        """
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_FILE_MODE)
        except OSError as exc:
            raise StoreException(f"cannot open the engine lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = self._holder_from(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise EngineAlreadyRunningException(
                    refusal_message(self.database_path, holder), pid=holder.pid if holder else None
                ) from None
            raise StoreException(f"cannot lock {self.path}: {exc.strerror}") from None
        self._fd = fd
        if record:
            self.holder = LockHolder(os.getpid(), int(time.time() * 1000), self.mode)
            self._write_holder(fd, self.holder)

    def release(self) -> None:
        """Let go of the lock (closing the file); idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def as_state(self) -> dict[str, Any]:
        """The holder as stored under :data:`LOCK_STATE_KEY` (pid, started_ms, mode, lock file path)."""
        state = self.holder.as_state() if self.holder is not None else {"pid": os.getpid(), "mode": self.mode}
        return {**state, "path": str(self.path.absolute())}

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:  # a lock never released explicitly still closes its file
        with contextlib.suppress(Exception):
            self.release()

    @staticmethod
    def _holder_from(fd: int) -> LockHolder | None:
        try:
            data = os.pread(fd, _READ_LIMIT, 0)
        except OSError:
            return None
        return LockHolder.parse(data.decode("utf-8", errors="replace"))

    @staticmethod
    def _write_holder(fd: int, holder: LockHolder) -> None:
        # The file is ours only while locked: truncate and write now; readers see the holder or, mid-write,
        # nothing they can parse ("pid unknown").
        with contextlib.suppress(OSError):
            os.fchmod(fd, LOCK_FILE_MODE)  # an older file may have other permissions
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder.as_state()) + "\n").encode(), 0)


def probe(database_path: str | os.PathLike[str]) -> None:
    """Raise :class:`EngineAlreadyRunningException` if an engine holds ``database_path`` now; else return.

    Takes the lock and lets it go at once (the lock file is left as it was), so a command can refuse before
    it starts anything. The engine still takes the lock for real at start-up, which catches a race.
    """
    if not Path(database_path).parent.is_dir():
        return  # no folder, no database: nobody can hold it
    lock = EngineLock(database_path)
    try:
        lock.acquire(record=False)
    finally:
        lock.release()
