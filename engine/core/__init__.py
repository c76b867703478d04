"""Provides the compiled decision core: the per-bar state machine as numba kernels over typed state records.

Importing this package imports :mod:`engine.jit` first, which chooses numba's on-disk cache directory (named
by a hash of every module holding kernels, this package's and ``engine.analysis``'s) before numba is imported.
``NUMBA_DISABLE_JIT=1`` runs the same functions as plain Python (tests, coverage, tracebacks).
"""

from __future__ import annotations

import engine.jit  # noqa: F401  (chooses the cache directory before any kernel module imports numba)
