"""Provides PaperExecution: paper trading through the backtester's own SimulatedAccount (shared code).

Each closed candle of a symbol goes through ``SimulatedAccount.process_bar``: orders decided on the
previous bar fill at this bar's open with the shared FillModel's slippage and commission, stops and
targets trigger inside the bar, then the DecisionCore decides. A paper session over some bars is
therefore the backtest over those bars, trade for trade.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.analysis.strategy import PreparedSymbol
from engine.core.decision import Decision, DecisionCore, Outcome
from engine.domain.events import Event
from engine.domain.models import ClosedTrade, Fill, Order
from engine.simulation.account import SimulatedAccount
from engine.simulation.fills import FillModel


class PaperExecution:
    """The runtime's execution back-end for paper mode.

    Args:
        core: the decision path and its account.
        fill_model: the backtest's fill model.
        on_event: receives every event the simulated account emits (fills, trades, breakers, limits).
    """

    mode = "paper"

    def __init__(self, core: DecisionCore, fill_model: FillModel, on_event: Callable[[Event], None]) -> None:
        self.core = core
        self.account = SimulatedAccount(core, fill_model, on_event=on_event, keep_fills=True)

    async def start(self, now_ms: int) -> list[str]:
        """Nothing to reconcile: the paper account is its own venue. Returns the repairs made (none)."""
        return []

    async def on_bar(self, prepared: PreparedSymbol, index: int) -> None:
        self.account.process_bar(prepared, index)
        self.account.log.events.clear()  # already delivered through on_event; do not grow forever

    async def execute(self, decisions: tuple[Decision, ...]) -> None:
        """Queue decisions taken outside the bar loop (commands); they fill at the symbol's next open."""
        if decisions:
            self.account.submit(Outcome(decisions, ()))

    async def cancel_open_orders(self) -> int:
        """Paper stops and targets live inside the simulation; there are no resting venue orders."""
        return 0

    def take_records(self) -> tuple[list[Fill], list[Order], list[ClosedTrade]]:
        """Fills, their filled orders (one each, in the same order) and closed trades since the last call.

        The runtime persists them.
        """
        log = self.account.log
        fills, orders = list(log.fills), list(log.orders)
        trades = [record.trade for record in log.trades]
        log.fills.clear()
        log.orders.clear()
        log.trades.clear()
        return fills, orders, trades

    @property
    def busy(self) -> bool:
        """Orders decided but not yet filled."""
        return self.account.has_pending

    async def close(self) -> None:
        return None
