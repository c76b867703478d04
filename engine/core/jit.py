"""Provides ``njit`` to the compiled core: the engine-wide wrapper of :mod:`engine.jit` (which also chooses
numba's cache directory from a hash of every module holding kernels)."""

from __future__ import annotations

from engine.jit import njit

__all__ = ["njit"]
