"""Provides the per-position protection state and the order-rate governor the live order manager obeys.

A live position is always in one :class:`ProtectionState`. The order manager moves it between states
in one bounded loop (:meth:`engine.execution.order_manager.OrderManager.drive_protection`), never by the stop
and exit paths calling each other: a stop refused because the market is already through it becomes
one market exit; a refused exit becomes a critical alert, halted entries and one retry on the next
bar; at most :data:`MAX_PROTECTION_ORDERS_PER_DECISION` orders are sent per decision or bar. The
:class:`OrderRateGovernor` bounds every order sent, whatever the reason, per symbol and per account.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from engine.domain.models import ExitKind

MAX_PROTECTION_ORDERS_PER_DECISION = 2
"""Orders the protection loop may send for one symbol per decision or bar (a stop, then an exit)."""

RATE_WINDOW_MS = 60_000


class ProtectionState(enum.StrEnum):
    PROTECTED = "protected"  # one exchange stop (with its take-profit, where placed as a pair) rests for what is held
    PLACING_STOP = "placing_stop"  # a stop was sent; its outcome is not known yet
    UNPROTECTED = "unprotected"  # no stop: place one (sized from the free balance)
    EXITING = "exiting"  # sell at market (the stop is crossed, or an exit was decided)
    EXIT_REFUSED = "exit_refused"  # the exchange refused the exit: alerted, halted, retried next bar


@dataclass
class Protection:
    """One position's protection: its state, why it exits, and the orders spent on the current bar.

    Attributes:
        state: where the position stands.
        exit_reason: why it is being closed (EXITING / EXIT_REFUSED), for people: ``signal: ...``, ``take_profit``.
        exit_kind: why it is being closed, as the kind the closed trade records (None until an exit is started).
        modelled_price: the price the backtest's fill model gives this exit (a take-profit: the target), or None.
        attempts: orders sent by the protection loop since the last decision or bar.
        alerted: the state the last critical alert was sent for (one alert per state entered).
        pair_refused: the venue refused the stop-and-target pair for this position: it is protected by a
            lone stop, and the engine checks the target on each closed bar instead.
    """

    state: ProtectionState = ProtectionState.UNPROTECTED
    exit_reason: str = ""
    exit_kind: ExitKind | None = None
    modelled_price: float | None = None
    attempts: int = 0
    alerted: ProtectionState | None = None
    pair_refused: bool = False

    def enter(self, state: ProtectionState) -> None:
        self.state = state
        if state is ProtectionState.PROTECTED:
            self.alerted = None

    def start_exit(self, kind: ExitKind, reason: str, modelled_price: float | None = None) -> None:
        """Sell at market now (EXITING), for ``kind``; ``modelled_price``: the fill model's price of this exit."""
        self.exit_kind, self.exit_reason, self.modelled_price = kind, reason, modelled_price
        self.enter(ProtectionState.EXITING)

    def new_budget(self) -> None:
        """A new decision or bar: the loop may send again."""
        self.attempts = 0

    @property
    def budget_left(self) -> bool:
        return self.attempts < MAX_PROTECTION_ORDERS_PER_DECISION

    @property
    def exiting(self) -> bool:
        return self.state in (ProtectionState.EXITING, ProtectionState.EXIT_REFUSED)


@dataclass
class OrderRateGovernor:
    """At most ``per_symbol`` orders per symbol and ``per_account`` orders in all per rolling minute.

    Every order the bot sends asks first; a refusal means the caller halts and alerts instead of
    sending (a loop that keeps ordering is a bug or a misbehaving venue, never a strategy).

    Args:
        per_symbol: orders per symbol per minute (>= 1).
        per_account: orders per account per minute (>= 1).
    """

    per_symbol: int
    per_account: int
    _sent: deque[tuple[int, str]] = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.per_symbol < 1 or self.per_account < 1:
            raise ValueError("order rate limits must be >= 1 order per minute")

    def _prune(self, now_ms: int) -> None:
        while self._sent and self._sent[0][0] <= now_ms - RATE_WINDOW_MS:
            self._sent.popleft()

    def allow(self, symbol: str, now_ms: int) -> bool:
        """Whether one more order for ``symbol`` may be sent now; if so it is counted."""
        self._prune(now_ms)
        if len(self._sent) >= self.per_account:
            return False
        if sum(1 for _, sent_symbol in self._sent if sent_symbol == symbol) >= self.per_symbol:
            return False
        self._sent.append((now_ms, symbol))
        return True

    def sent_in_window(self, now_ms: int, symbol: str | None = None) -> int:
        self._prune(now_ms)
        return sum(1 for _, sent_symbol in self._sent if symbol is None or sent_symbol == symbol)
