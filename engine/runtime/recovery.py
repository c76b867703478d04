"""Provides restart recovery: reload the persisted decision state and account, before reconciling.

What the store holds is restored first (runtime risk changes over the loaded settings, see
:mod:`engine.runtime.risk_overrides`; DecisionCore: trading state, loss limits, breakers and the emergency-exit
latch; the account: cash and positions with their stops). The live order manager then
reconciles that with the exchange (:meth:`engine.execution.order_manager.OrderManager.start`), which is the
source of truth for orders, balances and positions.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.core.decision import DecisionCore
from engine.core.portfolio import OpenPosition, Portfolio
from engine.runtime.persistence import CORE_STATE_KEY, PORTFOLIO_STATE_KEY, restore_portfolio
from engine.runtime.risk_overrides import restore_risk_overrides

log = logging.getLogger(__name__)


async def restore_engine_state(store: Any, core: DecisionCore, portfolio: Portfolio) -> list[str]:
    """Load the last persisted core and account state; returns what was restored, for the log."""
    notes = await restore_risk_overrides(store, core)  # settings first: the state below is kept as it is
    core_state = await store.get_state(CORE_STATE_KEY)
    if core_state:
        core.restore(core_state)
        open_breakers = [s.name for s in core.breaker.statuses() if s.state.value != "closed"]
        notes.append(f"restored trading state {core.trading_state.value}; breakers not closed: "
                     f"{', '.join(open_breakers) or 'none'}; emergency exit: {core.breaker.emergency_phase or 'none'}")
    account = await store.get_state(PORTFOLIO_STATE_KEY)
    if account:
        restore_portfolio(portfolio, account)
    # The positions table is written in the same transaction as each fill: it wins over the account
    # snapshot, which is written a moment later and can miss the last fill before a crash.
    stored = {p.symbol: p for p in await store.open_positions()}
    for symbol, position in stored.items():
        if symbol not in portfolio.positions:
            stop = position.trailing_stop_price or position.stop_price or 0.0
            portfolio.positions[symbol] = OpenPosition(
                symbol, position.side, position.quantity, position.entry_price, position.opened_ms,
                position.entry_fee, stop, position.stop_price or stop, best_price=position.entry_price,
                trailing_active=position.trailing_stop_price is not None,
                last_price=position.last_price or position.entry_price)
            notes.append(f"restored {symbol} position from the fills table (account snapshot missed it)")
    for symbol in [s for s in portfolio.positions if s not in stored]:
        del portfolio.positions[symbol]
        notes.append(f"dropped {symbol} from the account snapshot: no stored position (closed by a later fill)")
        notes.append(f"restored account: cash {portfolio.cash:.2f}, positions "
                     f"{', '.join(sorted(portfolio.positions)) or 'none'}")
    return notes
