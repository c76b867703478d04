"""Fixtures of the compiled core's tests: kernels are compiled (or loaded from the cache) before any test times."""

from __future__ import annotations

import pytest

from engine.backtest.compiled import simulate_compiled
from tests.engine.core.corpus import setup


@pytest.fixture(scope="session", autouse=True)
def warm_kernels() -> None:
    """One small compiled run: compile time never lands inside a test (or its timeout)."""
    engine, prepared, parameters = setup("synthetic", "sma_cross")
    simulate_compiled(engine, prepared, None, parameters, keep_events=True, keep_decisions=True)
