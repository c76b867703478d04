"""Provides ExecutionHost: what the order manager and reconcile use of the engine that runs them.

The runtime's ``TradingEngine`` satisfies it; naming the few members here keeps ``engine.execution`` below
``engine.runtime`` (the layers contract) and says exactly what the execution side may touch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from engine.config import Settings
from engine.core.decision import DecisionCore
from engine.core.portfolio import Portfolio
from engine.domain.clock import Clock
from engine.domain.events import Event


class PortfolioRecorder(Protocol):
    """Queues a write of the portfolio (the runtime's ``EngineRecorder``)."""

    def save_portfolio(self, portfolio: Portfolio, time_ms: int) -> Any: ...


class ExecutionHost(Protocol):
    """The running engine as the execution side sees it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def core(self) -> DecisionCore: ...

    @property
    def portfolio(self) -> Portfolio: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def store(self) -> Any: ...

    @property
    def symbols(self) -> Sequence[str]: ...


    @property
    def recorder(self) -> PortfolioRecorder | None: ...

    def emit(self, event: Event) -> None: ...

    def emit_all(self, events: tuple[Event, ...] | list[Event]) -> None: ...
