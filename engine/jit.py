"""Provides ``njit`` for every room that holds numba kernels, and chooses numba's on-disk cache directory.

Importing this module chooses the cache directory before numba reads its configuration. numba keys a cached
kernel on its own file only, so a kernel whose callee changed in another file would load stale machine code;
the directory is therefore named by a hash of every module that holds kernels (``engine/core/*.py`` and
``engine/analysis/*.py``, :data:`KERNEL_PACKAGES`): ``engine/__pycache__/numba-<hash>`` when the package
directory is writable, else ``numba_cache/<hash>`` under the data directory (the parent of
``TRADEBOT_STORAGE__DATABASE_PATH``, ``./data`` by default). Kernels compile once per version of that code and
load in milliseconds afterwards. An explicit ``NUMBA_CACHE_DIR`` is respected. ``NUMBA_DISABLE_JIT=1`` runs the
same functions as plain Python (tests, coverage, tracebacks).

Only the entry points called from Python are cached (``cache=True``): numba stores a cached kernel as object
code, which a caller compiled later cannot inline, so every call into it would pay a real call and the
reference counting of each array argument (a bar's path is a dozen such calls). An inner kernel is compiled
inside each entry point that uses it and cached as part of it.

Unlayered, like ``engine.config``: it imports nothing of the engine, so every room may import it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

ENGINE_DIRECTORY = Path(__file__).resolve().parent
KERNEL_PACKAGES = ("core", "analysis")
"""The packages of ``engine`` whose modules hold (or call) numba kernels: all of them feed the hash."""
HASH_LENGTH = 16  # hex digits of the cache directory's name


def kernel_code_hash() -> str:
    """A hash of every module that holds kernels (names and contents): it changes with any kernel's code."""
    digest = hashlib.sha256()
    for package in KERNEL_PACKAGES:
        for module in sorted((ENGINE_DIRECTORY / package).glob("*.py")):
            digest.update(f"{package}/{module.name}".encode())
            digest.update(module.read_bytes())
    return digest.hexdigest()[:HASH_LENGTH]


def _choose_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    version = kernel_code_hash()
    if os.access(ENGINE_DIRECTORY, os.W_OK):
        cache = ENGINE_DIRECTORY / "__pycache__" / f"numba-{version}"
    else:
        database = os.environ.get("TRADEBOT_STORAGE__DATABASE_PATH", "./data/tradebot.sqlite3")
        cache = Path(database).expanduser().resolve().parent / "numba_cache" / version
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(cache)
    if "numba" in sys.modules:  # imported before us (by a caller of numba itself): let it read the setting
        sys.modules["numba"].core.config.reload_config()


_choose_cache_dir()

import numba  # noqa: E402  (after the cache directory is chosen)

F = TypeVar("F", bound=Callable[..., Any])


def njit(*, cache: bool = False) -> Callable[[F], F]:
    """Compile a function in nopython mode; ``cache``: an entry point called from Python, kept on disk."""
    return cast(Callable[[F], F], numba.njit(cache=cache))
