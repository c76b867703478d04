"""Provides the frozen domain types shared by every part of the engine.

Conventions: prices in quote currency, quantities in base currency, times in UTC
milliseconds since the epoch (``*_ms``), percentages as ``pct`` in [0, 100] and
ratios in [0, 1].
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CANDLE_COLUMNS: tuple[str, ...] = ("open_time_ms", "open", "high", "low", "close", "volume")


@dataclass(frozen=True, eq=False)
class Candles:
    """Columnar OHLCV candles of one symbol and timeframe, oldest first.

    Arrays are read-only views so that a shared history can never be edited in place.
    ``open_time_ms`` is the candle open time (UTC ms); a candle covers
    ``[open_time_ms, open_time_ms + timeframe_ms)``.
    """

    symbol: str
    timeframe: str
    open_time_ms: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        length = len(self.open_time_ms)
        for name in CANDLE_COLUMNS:
            dtype = np.int64 if name == "open_time_ms" else np.float64
            array = np.asarray(getattr(self, name), dtype=dtype)
            if len(array) != length:
                raise ValueError(f"Candles.{name} has {len(array)} values, open_time_ms has {length}")
            if array.flags.writeable:
                array = array.copy() if array is getattr(self, name) else array
                array.flags.writeable = False
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.open_time_ms)

    @classmethod
    def empty(cls, symbol: str, timeframe: str) -> Candles:
        return cls(
            symbol,
            timeframe,
            np.empty(0, dtype=np.int64),
            *(np.empty(0, dtype=np.float64) for _ in range(5)),
        )

    def slice(self, start: int | None = None, stop: int | None = None) -> Candles:
        """Rows ``start:stop`` as a new Candles sharing memory with this one."""
        window = slice(start, stop)
        return Candles(
            self.symbol,
            self.timeframe,
            self.open_time_ms[window],
            self.open[window],
            self.high[window],
            self.low[window],
            self.close[window],
            self.volume[window],
        )

    def between(self, start_ms: int | None, end_ms: int | None) -> Candles:
        """Candles whose open time lies in ``[start_ms, end_ms)`` (None = unbounded)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.open_time_ms, start_ms, "left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.open_time_ms, end_ms, "left"))
        return self.slice(lo, hi)


class SignalType(enum.StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    EXIT = "EXIT"
    NONE = "NONE"


@dataclass(frozen=True)
class TradingSignal:
    """What the signal engine concluded about one closed bar.

    Attributes:
        symbol: market symbol, e.g. ``BTC/USDT``.
        time_ms: open time of the closed bar the signal was computed on (UTC ms).
        type: LONG, SHORT, EXIT or NONE.
        strength: ratio in [0, 1].
        reasons: short human-readable reasons, most important first.
    """

    symbol: str
    time_ms: int
    type: SignalType
    strength: float
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"TradingSignal.strength must be in [0, 1], got {self.strength}")


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class PositionSide(enum.StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def entry_side(self) -> Side:
        return Side.BUY if self is PositionSide.LONG else Side.SELL

    @property
    def exit_side(self) -> Side:
        return self.entry_side.opposite

    @property
    def sign(self) -> int:
        """+1 for long, -1 for short: P&L = sign * (exit - entry) * qty."""
        return 1 if self is PositionSide.LONG else -1


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_MARKET = "stop_market"
    STOP_LIMIT = "stop_limit"  # a stop that becomes a limit order when triggered (Binance STOP_LOSS_LIMIT)


class OrderStatus(enum.StrEnum):
    INTENT = "intent"  # persisted, not yet sent: the write-ahead record
    SUBMITTED = "submitted"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)


@dataclass(frozen=True)
class MarketLimits:
    """Exchange trading rules for one symbol (Binance LOT_SIZE, PRICE_FILTER, NOTIONAL)."""

    symbol: str
    lot_step: float = 1e-8
    tick_size: float = 1e-8
    min_qty: float = 0.0
    min_notional: float = 0.0


class OrderKind(enum.StrEnum):
    """What an order is for, as the execution layer places it (stored in ``orders.kind``)."""

    ENTRY = "entry"  # opens a position (market)
    EXIT = "exit"  # closes a position at market (a decision, a crossed stop, a reached target)
    STOP = "stop"  # the protective stop resting on the exchange (lone, or the stop leg of a pair)
    TAKE_PROFIT = "take_profit"  # the take-profit leg resting with its stop as one pair (Binance OCO)


class ExitKind(enum.StrEnum):
    """Why a position was closed, set where the exit is decided (stored in ``trades.exit_kind``).

    Backtest and live record the same kind for the same exit: a take-profit order that sells on the
    exchange and the fill model's target fill are both ``TARGET``.
    """

    SIGNAL = "signal"  # the strategy's exit condition
    STOP = "stop"  # the initial protective stop
    TRAILING_STOP = "trailing_stop"  # the stop after the trailing policy moved it
    TARGET = "target"  # the take-profit target was reached
    RISK_LIMIT = "risk_limit"  # a loss limit closed every position
    EMERGENCY_EXIT = "emergency_exit"  # a person's emergency exit
    MANUAL = "manual"  # a person closed the position
    END_OF_DATA = "end_of_data"  # the backtest's data ended with the position open

    @property
    def is_intrabar(self) -> bool:
        """Filled inside a bar from its high/low (the exchange's stop or target), not at a bar's open."""
        return self in (ExitKind.STOP, ExitKind.TRAILING_STOP, ExitKind.TARGET)

    @property
    def is_commanded(self) -> bool:
        """A person decided this exit (not the engine)."""
        return self in (ExitKind.MANUAL, ExitKind.EMERGENCY_EXIT)


@dataclass(frozen=True)
class Order:
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: float
    status: OrderStatus
    created_ms: int
    price: float | None = None
    stop_price: float | None = None
    exchange_order_id: str | None = None
    filled_quantity: float = 0.0
    average_price: float | None = None
    reduce_only: bool = False
    reason: str = ""
    kind: OrderKind | None = None
    exit_kind: ExitKind | None = None

    def labelled_like(self, ours: Order) -> Order:
        """This order as the exchange reported it, with the bot's own labels of ``ours`` kept.

        The exchange knows nothing of why an order was placed: its kind, exit kind, reason and creation
        time are the bot's and are carried over from the stored row (``ours``).
        """
        return replace(self, kind=ours.kind, exit_kind=ours.exit_kind, reason=ours.reason, created_ms=ours.created_ms)


@dataclass(frozen=True)
class Fill:
    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    time_ms: int
    fee_asset: str = ""
    trade_id: str = ""


@dataclass(frozen=True)
class Position:
    symbol: str
    side: PositionSide
    quantity: float
    entry_price: float
    opened_ms: int
    stop_price: float | None = None
    trailing_stop_price: float | None = None
    last_price: float | None = None
    entry_fee: float = 0.0

    @property
    def unrealized_pnl(self) -> float:
        if self.last_price is None:
            return 0.0
        return self.side.sign * (self.last_price - self.entry_price) * self.quantity

    @property
    def notional(self) -> float:
        return self.quantity * (self.last_price if self.last_price is not None else self.entry_price)


@dataclass(frozen=True)
class ClosedTrade:
    """A round trip that has been fully exited, as kept in the store's ``trades`` table.

    Attributes:
        quantity: base quantity that was closed.
        entry_price / exit_price: average fill prices in quote currency.
        entry_ms / exit_ms: first entry fill and last exit fill times (UTC ms).
        pnl: realised P&L in quote currency, net of ``fees``.
        fees: entry plus exit fees in quote currency.
        reason: why the position was exited, for people (``signal: EMA cross down``, ``take_profit``...).
        exit_kind: why the position was exited, as a kind (set by whoever decided the exit; the default is
            for hand-built trades in tests and tools).
    """

    symbol: str
    side: PositionSide
    quantity: float
    entry_price: float
    exit_price: float
    entry_ms: int
    exit_ms: int
    pnl: float
    fees: float = 0.0
    reason: str = ""
    exit_kind: ExitKind = ExitKind.MANUAL


@dataclass(frozen=True)
class EquityPoint:
    time_ms: int
    equity: float
    cash: float
    unrealized_pnl: float = 0.0


class CircuitState(enum.StrEnum):
    CLOSED = "closed"  # trading allowed
    OPEN = "open"  # no new entries
    HALF_OPEN = "half_open"  # trading at reduced size after cool-down


class TradingState(enum.StrEnum):
    """Whether the decision path may open positions (stored in the store's ``trading_state`` key).

    There is no separate "exits only" state: HALTED is exits only, since stops, targets and exit signals of
    open positions keep working while halted.
    """

    ACTIVE = "ACTIVE"  # entries and exits
    HALTED = "HALTED"  # no new entries; open positions keep their stops, targets and exits


class EngineState(enum.StrEnum):
    """The engine service's lifecycle (``TradingEngine.engine_state``; shown in the console's status bar)."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"  # a worker or the store failed; the engine stops or has stopped


@dataclass(frozen=True)
class BreakerStatus:
    """One breaker as the console and Telegram show it."""

    name: str
    state: CircuitState
    value: float
    threshold: float
    reason: str = ""
    since_ms: int | None = None
    resume_after_ms: int | None = None
    latching: bool = False

    @property
    def distance_to_trip(self) -> float:
        """How far the value is from the threshold, as a ratio of the threshold (<= 0 = tripped)."""
        if self.threshold == 0:
            return 0.0
        return (self.threshold - self.value) / abs(self.threshold)
