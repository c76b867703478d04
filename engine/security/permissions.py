"""Provides file-permission checks for config and secrets files, and private (0600) atomic file writes."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from engine.domain.errors import SecurityException

logger = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
# Bits that let someone other than the owner read or change the file.
_GROUP_OTHER_ACCESS = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH


def permission_problem(path: Path) -> str | None:
    """A one-line description of why ``path`` is too open, or None when it is private or absent."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    loose = mode & _GROUP_OTHER_ACCESS
    if not loose:
        return None
    who = []
    if mode & (stat.S_IRGRP | stat.S_IWGRP):
        who.append("group")
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        who.append("other users")
    return f"{path} is accessible by {' and '.join(who)} (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"


def check_file_permissions(paths: Iterable[Path], *, live: bool) -> list[str]:
    """Checks that each existing file in ``paths`` is private to its owner.

    In paper mode each problem is logged as a warning and returned; in live mode any problem refuses
    the start.

    Raises:
        SecurityException: ``live`` is true and a file is readable or writable by group or others.
    """
    problems = [problem for path in paths if (problem := permission_problem(Path(path))) is not None]
    if problems and live:
        raise SecurityException("refusing to trade live: " + "; ".join(problems))
    for problem in problems:
        logger.warning("insecure file permissions: %s", problem)
    return problems


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replaces ``path`` with ``data``, the file being mode 0600 from its first byte.

    The bytes go to a temporary file in the same directory (created with ``O_EXCL`` and mode 0600),
    are flushed to disk, and the temporary file is renamed over ``path``; a crash leaves either the
    old or the new file, never a mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        # The umask can only remove bits; fchmod makes the mode exact even under an odd umask.
        os.fchmod(fd, PRIVATE_FILE_MODE)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    os.close(fd)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Makes a rename inside ``directory`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
