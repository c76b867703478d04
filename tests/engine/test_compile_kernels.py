"""Specification of the kernels' warm-up (engine.analysis.compile_kernels): it compiles every entry point."""

from __future__ import annotations

import numba
import pytest

from engine.analysis import buckets, kernels
from engine.analysis.compile_kernels import warm_up

# The entry points are the public kernels (the inner helpers compiled into them are private).
ENTRY_POINTS = {f"{module.__name__}.{name}": value for module in (kernels, buckets)
                for name, value in vars(module).items()
                if isinstance(value, numba.core.registry.CPUDispatcher) and not name.startswith("_")}


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="plain Python: nothing is compiled")
def test_the_warm_up_compiles_every_cached_kernel_entry_point() -> None:
    warm_up()
    assert len(ENTRY_POINTS) >= 10, "the kernel modules' entry points are found"
    assert [name for name, kernel in ENTRY_POINTS.items() if not kernel.signatures] == []
