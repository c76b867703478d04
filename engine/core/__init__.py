"""Provides the compiled decision core: the per-bar state machine as numba kernels over typed state records.

Importing this package chooses numba's on-disk cache directory before numba is imported. numba keys a
cached kernel on its own file only, so a kernel whose callee changed in another file would load stale
machine code; the directory is therefore named by a hash of every module of this package: ``__pycache__/numba-
<hash>`` beside the modules when the package directory is writable, else ``numba_cache/<hash>`` under the data
directory (the parent of ``TRADEBOT_STORAGE__DATABASE_PATH``, ``./data`` by default). Kernels compile once
per version of the core and load in milliseconds afterwards. An explicit ``NUMBA_CACHE_DIR`` is respected.
``NUMBA_DISABLE_JIT=1`` runs the same functions as plain Python (tests, coverage, tracebacks).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def _choose_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for module in sorted(package.glob("*.py")):
        digest.update(module.name.encode())
        digest.update(module.read_bytes())
    version = digest.hexdigest()[:16]
    if os.access(package, os.W_OK):
        cache = package / "__pycache__" / f"numba-{version}"
    else:
        database = os.environ.get("TRADEBOT_STORAGE__DATABASE_PATH", "./data/tradebot.sqlite3")
        cache = Path(database).expanduser().resolve().parent / "numba_cache" / version
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(cache)
    if "numba" in sys.modules:  # imported before us (e.g. by the indicator kernels): let it read the setting
        sys.modules["numba"].core.config.reload_config()


_choose_cache_dir()
