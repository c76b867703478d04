"""Provides the typed events of positions and orders (the decision path and the execution layer)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain.events.base import Event, Severity
from engine.domain.models import ExitKind, PositionSide, Side


@dataclass(frozen=True, kw_only=True)
class PositionOpened(Event):
    """An entry filled. ``price``: the average entry price; ``stop`` / ``target``: the decision's levels."""

    symbol: str
    side: PositionSide
    qty: float
    price: float
    stop: float
    target: float | None = None
    reason: str = ""
    filled: float | None = None  # live: the gross filled quantity (``qty`` is net of base-asset fees)
    client_order_id: str | None = None
    recovered: bool = False  # live: found filled while reconciling after a restart
    fills_known: bool = True  # live: the venue reported the fills (else the fees are unknown)


@dataclass(frozen=True, kw_only=True)
class PositionClosed(Event):
    """A position was exited; ``exit_kind`` is why, ``reason`` says it for people; ``pnl`` net of fees (quote)."""

    symbol: str
    side: PositionSide
    qty: float
    entry: float
    exit: float
    pnl: float
    exit_kind: ExitKind
    reason: str = ""
    stop_and_target_in_one_bar: bool = False
    client_order_id: str | None = None
    modelled_exit: float | None = None  # live: the fill model's price of this exit where it differs


@dataclass(frozen=True, kw_only=True)
class PositionReduced(Event):
    """Live: an exit sold only ``sold`` of the position; ``qty`` is still held."""

    symbol: str
    sold: float
    qty: float
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class OrderFilled(Event):
    symbol: str
    client_order_id: str
    side: Side
    qty: float
    price: float | None


@dataclass(frozen=True, kw_only=True)
class OrderRejected(Event):
    """The venue (or the simulated account, for lack of balance) refused an order; ``error``: the exception's name."""

    symbol: str
    client_order_id: str | None = None
    error: str | None = None
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class OrderUncertain(Event):
    """An order's outcome is unknown: it is looked up on every candle, never re-sent blind."""

    symbol: str
    client_order_id: str
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class OrderRateLimited(Event):
    """An order was not sent because the order-rate bound was reached; trading halts."""

    symbol: str
    order: str
    sent_last_minute: int
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class OrderCancelFailed(Event):
    symbol: str
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class StopPlaced(Event):
    """An exchange stop rests (with its take-profit leg as one pair when ``target`` is set)."""

    symbol: str
    stop: float | None
    qty: float
    client_order_id: str
    target: float | None = None
    target_client_order_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class StopLost(Event):
    """The resting exchange stop is gone (cancelled or expired outside the bot): a new one is placed."""

    symbol: str
    client_order_id: str
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class StopRefused(Event):
    """The stop was refused because the market is already through it: the position is sold at market."""

    symbol: str
    stop: float
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class TargetReached(Event):
    """The take-profit target was reached where no target rests on the exchange: sold at market."""

    symbol: str
    target: float | None
    modelled_exit: float | None
    high: float | None = None


@dataclass(frozen=True, kw_only=True)
class TargetNotPlaced(Event):
    """The venue refused the stop-and-target pair: a lone stop, the target checked on each closed bar."""

    symbol: str
    target: float | None
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, kw_only=True)
class PositionUnprotected(Event):
    symbol: str
    stop: float
    error: str | None = None
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class ExitRefused(Event):
    """The venue refused an exit: entries halt, the exit is retried on the next candle."""

    symbol: str
    reason: str
    severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class ExitPostponed(Event):
    """The resting stop could not be cancelled, so the exit waits (the stop still protects the position)."""

    symbol: str
    severity: Severity = Severity.WARNING
