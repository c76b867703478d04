"""Provides restart recovery: reload the persisted decision state and account, before reconciling.

What the store holds is restored first (DecisionCore: trading state, loss limits, breakers and the
emergency-exit latch; the account: cash and positions with their stops). The live order manager then
reconciles that with the exchange (:meth:`engine.order_manager.OrderManager.start`), which is the
source of truth for orders, balances and positions.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.decision import DecisionCore
from engine.persistence import CORE_STATE_KEY, PORTFOLIO_STATE_KEY, restore_portfolio
from engine.portfolio import Portfolio

log = logging.getLogger(__name__)


async def restore_engine_state(store: Any, core: DecisionCore, portfolio: Portfolio) -> list[str]:
    """Load the last persisted core and account state; returns what was restored, for the log."""
    notes: list[str] = []
    core_state = await store.get_state(CORE_STATE_KEY)
    if core_state:
        core.restore(core_state)
        open_breakers = [s.name for s in core.breaker.statuses() if s.state.value != "closed"]
        notes.append(f"restored trading state {core.trading_state.value}; breakers not closed: "
                     f"{', '.join(open_breakers) or 'none'}; emergency exit: {core.breaker.emergency_phase or 'none'}")
    account = await store.get_state(PORTFOLIO_STATE_KEY)
    if account:
        restore_portfolio(portfolio, account)
        notes.append(f"restored account: cash {portfolio.cash:.2f}, positions "
                     f"{', '.join(sorted(portfolio.positions)) or 'none'}")
    return notes
