"""Provides the account ledger shared by the backtester, the paper broker and the live runtime.

Cash moves by ``-sign * quantity * price - fee`` on entry and the reverse on exit, so longs and
shorts share one formula; equity is cash plus every position marked to its last price.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.domain.models import ClosedTrade, ExitKind, FloatArray, Position, PositionSide

# Quantities below this are dust left by rounding, not a position.
QUANTITY_EPSILON = 1e-12

_LONG = PositionSide.LONG


@dataclass(slots=True)
class OpenPosition:
    """A position with the stop state the decision path manages.

    Mutable on purpose: the decision path updates the last price, best price, stop and bar count of an
    open position on every bar, in place (creating a new record per bar cost more than the rest of the
    bar). Anything that leaves the engine (snapshots, stored rows) is converted at the edge with
    :meth:`to_position` or ``dataclasses.asdict``; never hold on to one across bars expecting it to stay.

    Attributes:
        stop_price: current protective stop (initial or trailed), quote currency.
        initial_stop_price: the stop set at entry (risk per unit = |entry - initial stop|).
        take_profit_price: optional target, quote currency.
        best_price: most favourable price since entry (high for longs, low for shorts).
        trailing_active: whether the trailing policy has taken over the stop.
        bars_held: closed bars since entry.
    """

    symbol: str
    side: PositionSide
    quantity: float
    entry_price: float
    entry_ms: int
    entry_fee: float
    stop_price: float
    initial_stop_price: float
    take_profit_price: float | None = None
    best_price: float = 0.0
    trailing_active: bool = False
    bars_held: int = 0
    last_price: float = 0.0

    def unrealized_pnl(self, mark_price: float | None = None) -> float:
        mark = self.last_price if mark_price is None else mark_price
        return self.side.sign * (mark - self.entry_price) * self.quantity

    def to_position(self) -> Position:
        return Position(
            symbol=self.symbol,
            side=self.side,
            quantity=self.quantity,
            entry_price=self.entry_price,
            opened_ms=self.entry_ms,
            stop_price=self.initial_stop_price,
            trailing_stop_price=self.stop_price if self.trailing_active else None,
            last_price=self.last_price,
            entry_fee=self.entry_fee,
        )


@dataclass
class Portfolio:
    """Cash, open positions and closed trades of one account (quote currency)."""

    cash: float
    positions: dict[str, OpenPosition] = field(default_factory=dict)
    closed_trades: list[ClosedTrade] = field(default_factory=list)
    realized_pnl: float = 0.0
    fees_paid: float = 0.0
    # Live spot: base quantity under one lot left on the account after a position closed (fees are
    # charged in the base asset, sells are floored to the lot). Not sellable alone, not a position; the
    # next sell of the symbol sweeps it in once it adds up to a lot. Not marked into equity (< 1 lot).
    dust: dict[str, float] = field(default_factory=dict)

    def equity(self) -> float:
        marked = 0.0  # summed first, then added to cash: the same float association as sum()
        for p in self.positions.values():
            # sign * quantity * price without the property call (a hot path): IEEE products are sign-symmetric.
            if p.side is _LONG:
                marked += p.quantity * p.last_price
            else:
                marked -= p.quantity * p.last_price
        return self.cash + marked

    def equity_marked_at(self, symbol: str, prices: FloatArray) -> FloatArray:
        """:meth:`equity` if the only open position, ``symbol``'s, were marked at each of ``prices``.

        The same float operations as :meth:`equity`, element-wise, so each value is bit-identical to it.
        """
        if len(self.positions) != 1:
            raise ValueError("equity_marked_at needs exactly one open position")
        position = self.positions[symbol]
        if position.side is _LONG:
            return self.cash + (0.0 + position.quantity * prices)
        return self.cash + (0.0 - position.quantity * prices)

    def unrealized_pnl(self) -> float:
        return sum(p.unrealized_pnl() for p in self.positions.values())

    def available_balance(self) -> float:
        """Cash free for a new long entry (spot: what is not already spent)."""
        return max(self.cash, 0.0)

    def mark(self, symbol: str, price: float) -> None:
        position = self.positions.get(symbol)
        if position is not None:
            position.last_price = price

    def open(
        self,
        symbol: str,
        side: PositionSide,
        quantity: float,
        price: float,
        fee: float,
        time_ms: int,
        stop_price: float,
        take_profit_price: float | None = None,
    ) -> OpenPosition:
        if symbol in self.positions:
            raise ValueError(f"{symbol} already has an open position")
        if quantity <= QUANTITY_EPSILON:
            raise ValueError(f"cannot open {symbol} with quantity {quantity}")
        self.cash -= side.sign * quantity * price + fee
        self.fees_paid += fee
        position = OpenPosition(
            symbol=symbol,
            side=side,
            quantity=quantity,
            entry_price=price,
            entry_ms=time_ms,
            entry_fee=fee,
            stop_price=stop_price,
            initial_stop_price=stop_price,
            take_profit_price=take_profit_price,
            best_price=price,
            last_price=price,
        )
        self.positions[symbol] = position
        return position

    def update(self, position: OpenPosition) -> None:
        self.positions[position.symbol] = position

    def close(
        self, symbol: str, price: float, fee: float, time_ms: int, reason: str, exit_kind: ExitKind
    ) -> ClosedTrade:
        """Close the whole position at ``price`` (quote) with the exit ``fee`` (quote); ``reason`` is for people."""
        position = self.positions.pop(symbol)
        self.cash += position.side.sign * position.quantity * price - fee
        self.fees_paid += fee
        gross = position.side.sign * (price - position.entry_price) * position.quantity
        fees = position.entry_fee + fee
        trade = ClosedTrade(
            symbol=symbol,
            side=position.side,
            quantity=position.quantity,
            entry_price=position.entry_price,
            exit_price=price,
            entry_ms=position.entry_ms,
            exit_ms=time_ms,
            pnl=gross - fees,
            fees=fees,
            reason=reason,
            exit_kind=exit_kind,
        )
        self.realized_pnl += trade.pnl
        self.closed_trades.append(trade)
        return trade
