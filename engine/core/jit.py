"""Provides ``njit``: numba's ``njit`` with a type mypy can check callers against.

Only the entry points called from Python are cached (``cache=True``): numba stores a cached kernel as object
code, which a caller compiled later cannot inline, so every call into it would pay a real call and the
reference counting of each array argument (a bar's path is a dozen such calls). An inner kernel is compiled
inside each entry point that uses it and cached as part of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])


def njit(*, cache: bool = False) -> Callable[[F], F]:
    """Compile a function in nopython mode; ``cache``: an entry point, kept on disk (``engine.core`` says where)."""
    return cast(Callable[[F], F], numba.njit(cache=cache))
