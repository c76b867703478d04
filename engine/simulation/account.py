"""Provides the bar-by-bar simulated account: the one loop the backtester and the paper broker both run.

For each closed candle of a symbol, in this order (backtesting.py's rule: pending orders are processed
before the strategy decides on the bar):

1. orders decided on the previous bar fill at this bar's open, with slippage and commission;
2. the open position's stop and target are tested inside the bar from its high/low (a gap through the
   stop fills at the open; stop and target in the same bar: the stop, the worse, and the trade is flagged);
3. the position is marked at the close and the account limits are checked (a breach closes everything
   at the next open and halts);
4. :class:`engine.core.decision.DecisionCore` decides on the closed bar; its orders wait for step 1 of the
   symbol's next bar.

Because paper trading feeds live or replayed candles through this same class, a paper session and a
backtest over the same bars produce the same trades.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from engine.analysis.strategy import PreparedSymbol
from engine.core.decision import DecisionCore, EntryDecision, ExitDecision, Outcome
from engine.core.portfolio import QUANTITY_EPSILON
from engine.core.quiet_runs import MAX, MIN, NO_BARS, QuietArrays
from engine.core.risk import SizeBound
from engine.domain.events import Event, OrderRejected, PositionClosed, PositionOpened, Severity
from engine.domain.models import (
    ClosedTrade,
    ExitKind,
    Fill,
    FloatArray,
    Order,
    OrderKind,
    OrderStatus,
    OrderType,
    PositionSide,
    Side,
)
from engine.domain.timeframes import parse_timeframe
from engine.simulation.fills import FillModel


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """A closed trade with how its exit was simulated.

    Attributes:
        exit_kind: why the trade was exited; always ``trade.exit_kind`` (a record built with another kind
            takes this one into its trade).
        stop_and_target_in_one_bar: the exit bar reached both the stop and the target; the stop was assumed.
        size_bound: which sizing rule decided the entry's quantity (the risk budget or a cap).
        volume_effect: the entry bar's ``engine.analysis.volume_rules`` code (which volume rules downsized it).
    """

    trade: ClosedTrade
    exit_kind: ExitKind
    stop_and_target_in_one_bar: bool = False
    entry_reason: str = ""
    size_bound: SizeBound = SizeBound.RISK
    volume_effect: int = 0

    def __post_init__(self) -> None:
        kind = ExitKind(self.exit_kind)
        object.__setattr__(self, "exit_kind", kind)
        if self.trade.exit_kind is not kind:
            object.__setattr__(self, "trade", replace(self.trade, exit_kind=kind))


@dataclass
class SimulationLog:
    """What a simulated account did. ``events`` holds the events themselves only while the account keeps
    them (see :class:`SimulatedAccount`); ``event_counts`` counts every event by kind either way."""

    trades: list[TradeRecord] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)  # the filled market order of each fill, with its kind
    events: list[Event] = field(default_factory=list)
    event_counts: Counter[str] = field(default_factory=Counter)
    rejected_orders: int = 0


class SimulatedAccount:
    """Drives a :class:`DecisionCore` over candles with the shared :class:`FillModel`.

    Args:
        core: the decision path and its account.
        fill_model: fill assumptions (shared with the paper broker).
        on_event: called with every event as it happens (the runtime publishes them; None collects only).
        keep_fills: record every fill in ``log.fills``.
        keep_events: record every event in ``log.events``. Without it and without ``on_event`` only
            ``log.event_counts`` is kept, and a position's open/close events are never built (a backtest
            needs the counts only; building the messages was a measurable share of a trade's cost).
    """

    def __init__(
        self,
        core: DecisionCore,
        fill_model: FillModel,
        on_event: Callable[[Event], None] | None = None,
        keep_fills: bool = True,
        keep_events: bool = True,
    ) -> None:
        self.core = core
        self.fill_model = fill_model
        self.log = SimulationLog()
        self._pending: dict[str, list[EntryDecision | ExitDecision]] = {}
        self._entry_reasons: dict[str, str] = {}
        self._entry_sizing: dict[str, tuple[SizeBound, int]] = {}
        self._on_event = on_event
        self._keep_fills = keep_fills
        self.keep_events = keep_events
        self._timeframe_ms: dict[str, int] = {}
        self._quiet_arrays_by_symbol: dict[str, QuietArrays] = {}
        self._quiet_bars = True  # private switch: False tests every bar's stop and target in full (tests)
        self._bar_close_ms = 0  # close of the bar being processed: its fills count in its trading day

    # ------------------------------------------------------------------------------------------ events
    def _emit(self, events: tuple[Event, ...] | list[Event]) -> None:
        if not events:
            return
        counts = self.log.event_counts
        for event in events:
            counts[event.kind] += 1
        if self.keep_events:
            self.log.events.extend(events)
        if self._on_event is not None:
            for event in events:
                self._on_event(event)

    @property
    def _builds_events(self) -> bool:
        return self.keep_events or self._on_event is not None

    def _queue(self, outcome: Outcome) -> None:
        self._emit(outcome.events)
        for decision in outcome.decisions:
            if isinstance(decision, EntryDecision | ExitDecision):
                self._pending.setdefault(decision.symbol, []).append(decision)

    def submit(self, outcome: Outcome) -> None:
        """Queue decisions taken outside the bar loop (commands: halt, emergency exit, close)."""
        self._queue(outcome)

    @property
    def has_pending(self) -> bool:
        return any(self._pending.values())

    @property
    def idle(self) -> bool:
        """Nothing queued and the core idle: see :attr:`DecisionCore.idle`."""
        return not self._pending and self.core.idle

    # -------------------------------------------------------------------------------------------- bars
    def process_bar(self, prepared: PreparedSymbol, index: int) -> float | None:
        """Run steps 1-4 of the module docstring for closed bar ``index`` of ``prepared``.

        Returns:
            The equity the account limits were checked with (step 3; quote currency), which is the equity
            after the bar too (step 4 only queues orders); None when no check ran (flat, nothing traded).
        """
        candles = prepared.candles
        symbol = prepared.symbol
        tf_ms = self._timeframe_ms.get(candles.timeframe)
        if tf_ms is None:
            tf_ms = self._bar_ms(candles.timeframe)
        open_ms = int(candles.open_time_ms[index])
        close_ms = self._bar_close_ms = open_ms + tf_ms
        core = self.core
        positions = core.portfolio.positions
        traded = False
        if symbol in self._pending:
            traded = self._fill_pending(symbol, float(candles.open[index]), open_ms)
        position = positions.get(symbol)
        if position is not None:
            bar_open = float(candles.open[index])
            bar_high = float(candles.high[index])
            bar_low = float(candles.low[index])
            low, high = self.fill_model.untouched_band(position.side, position.stop_price, position.take_profit_price)
            if not (low < bar_low and low < bar_open and bar_high < high and bar_open < high) or not self._quiet_bars:
                traded |= self._check_stops(symbol, bar_open, bar_high, bar_low, open_ms)
                position = positions.get(symbol)
            if position is not None:
                position.last_price = float(candles.close[index])  # Portfolio.mark, without the lookup
        equity = None
        if positions or traded:
            equity = core.portfolio.equity()
            outcome = core.check_account(close_ms, equity)
            if outcome.decisions or outcome.events:
                self._queue(outcome)
        outcome = core.on_bar(prepared, index, close_ms)
        if outcome.decisions or outcome.events:
            self._queue(outcome)
        return equity

    def skip_quiet_bars(self, prepared: PreparedSymbol, start: int, stop: int) -> FloatArray | None:
        """Process the leading bars of ``start..stop-1`` on which nothing can change but marks, all at once.

        Such a bar (an open lone position without pending orders) fills nothing (inside
        ``FillModel.untouched_band``), leaves the stop (inside ``DecisionCore.quiet_extreme_bound``), has
        no exit signal or volatility alarm, and its limit check is skipped (inside
        ``AccountLimits.quiet_band``): :meth:`process_bar` would only update the best price, bar count
        and last price and defer the check, which is what this does for the whole run.

        Returns:
            The equity after each skipped bar (possibly none), or None when the account is not in that
            state (the caller processes bars one by one).
        """
        symbol = prepared.symbol
        core = self.core
        positions = core.portfolio.positions
        position = positions.get(symbol)
        if not self._quiet_bars or position is None or len(positions) != 1 or symbol in self._pending:
            return None
        extreme = core.quiet_extreme_bound(symbol)
        is_long = position.side is PositionSide.LONG
        if extreme is None or not (position.best_price <= extreme if is_long else position.best_price >= extreme):
            return None
        candles = prepared.candles
        exit_signal = prepared.exit_long if is_long else prepared.exit_short
        if start >= stop or exit_signal[start] or prepared.volatility_alarm[start]:
            return NO_BARS
        low, high = self.fill_model.untouched_band(position.side, position.stop_price, position.take_profit_price)
        # Strictly inside (low, high), and the extreme inside its bound (the open too: stricter, still exact).
        # The first bar decides most calls (a stop hit): it is tested on scalars before any array work.
        first_open = candles.open[start]
        if is_long:
            ceiling = min(math.nextafter(high, -math.inf), extreme)
            if not (candles.low[start] > low and first_open > low and candles.high[start] <= ceiling
                    and first_open <= ceiling):
                return NO_BARS
        else:
            floor = max(math.nextafter(low, math.inf), extreme)
            if not (candles.high[start] < high and first_open < high and candles.low[start] >= floor
                    and first_open >= floor):
                return NO_BARS
        bar_ms = self._bar_ms(candles.timeframe)
        equity_low, equity_high, from_ms, until_ms = core.limits.quiet_band()
        # from_ms <= close < until_ms with close = open + bar_ms, tested on the open times (exact integers,
        # increasing): the first bar bounds the start, a binary search the end.
        open_ms = candles.open_time_ms[start:stop]
        if not from_ms - bar_ms <= open_ms[0]:
            return NO_BARS
        if open_ms[-1] >= until_ms - bar_ms:
            stop = start + int(open_ms.searchsorted(until_ms - bar_ms, "left"))
            if stop == start:
                return NO_BARS
        arrays = self._quiet_arrays(prepared)
        if is_long:
            quiet = arrays.lowest[start:stop] > low
            quiet &= arrays.highest[start:stop] <= ceiling
            quiet &= arrays.calm_long[start:stop]
        else:
            quiet = arrays.highest[start:stop] < high
            quiet &= arrays.lowest[start:stop] >= floor
            quiet &= arrays.calm_short[start:stop]
        bar_close = candles.close[start:stop]
        equity = core.portfolio.equity_marked_at(symbol, bar_close)
        quiet &= equity_low <= equity
        quiet &= equity <= equity_high
        first_loud = int(quiet.argmin())  # the method: np.argmin adds a Python-level dispatch
        count = len(quiet) if quiet[first_loud] else first_loud
        if count:
            # max()/min() of the bar extremes, as the per-bar update keeps them (no NaN inside the band).
            best = float(MAX(candles.high[start:start + count]) if is_long else MIN(candles.low[start:start + count]))
            if best > position.best_price if is_long else best < position.best_price:
                position.best_price = best
            position.bars_held += count
            position.last_price = float(bar_close[count - 1])
            # Inside the quiet band: the check is deferred, as the per-bar checks were (the last one counts).
            outcome = core.check_account(int(open_ms[count - 1]) + bar_ms, float(equity[count - 1]))
            if outcome.decisions or outcome.events:
                self._queue(outcome)
        return equity[:count]

    def _quiet_arrays(self, prepared: PreparedSymbol) -> QuietArrays:
        arrays = self._quiet_arrays_by_symbol.get(prepared.symbol)
        if arrays is None or arrays.prepared is not prepared or len(arrays.lowest) != len(prepared.candles):
            arrays = self._quiet_arrays_by_symbol[prepared.symbol] = QuietArrays.of(prepared)
        return arrays

    def _bar_ms(self, timeframe: str) -> int:
        tf_ms = self._timeframe_ms.get(timeframe)
        if tf_ms is None:
            tf_ms = self._timeframe_ms[timeframe] = parse_timeframe(timeframe)
        return tf_ms

    def _fill_pending(self, symbol: str, open_price: float, time_ms: int) -> bool:
        orders = self._pending.pop(symbol, [])
        traded = False
        for order in orders:
            self.core.order_resolved(symbol)
            if isinstance(order, EntryDecision):
                traded |= self._fill_entry(order, open_price, time_ms)
            else:
                position = self.core.portfolio.positions.get(symbol)
                if position is not None:
                    price = self.fill_model.market_price(position.side.exit_side, open_price)
                    traded |= self._close(symbol, price, time_ms, order.kind, order.reason, False)
        return traded

    def _fill_entry(self, order: EntryDecision, open_price: float, time_ms: int) -> bool:
        portfolio = self.core.portfolio
        if order.symbol in portfolio.positions:
            self.log.rejected_orders += 1
            return False
        price = self.fill_model.market_price(order.side.entry_side, open_price)
        fee = self.fill_model.commission(order.quantity, price)
        if order.side.entry_side is Side.BUY and order.quantity * price + fee > portfolio.available_balance():
            # The open gapped up past what cash can pay: a real exchange rejects the order.
            self.log.rejected_orders += 1
            self._emit([OrderRejected(time_ms=time_ms, message=f"{order.symbol}: insufficient balance at the open",
                                      symbol=order.symbol)])
            return False
        position = portfolio.open(
            order.symbol, order.side, order.quantity, price, fee, time_ms, order.stop_price, order.take_profit_price
        )
        self._entry_reasons[order.symbol] = order.reason
        self._entry_sizing[order.symbol] = (order.size_bound, order.volume_effect)
        if self._keep_fills:
            self._log_fill(Fill(f"sim-{order.symbol}-{time_ms}-in", order.symbol, order.side.entry_side,
                                order.quantity, price, fee, time_ms), OrderKind.ENTRY, None)
        if not self._builds_events:
            self.log.event_counts[PositionOpened.__name__] += 1
            return True
        self._emit([PositionOpened(
            time_ms=time_ms,
            message=f"{order.symbol} {position.side.value} {order.quantity:g} @ {price:.8g} "
            f"(stop {order.stop_price:.8g})",
            symbol=order.symbol, side=position.side, qty=order.quantity, price=price, stop=order.stop_price,
            target=order.take_profit_price, reason=order.reason,
        )])
        return True

    def _check_stops(self, symbol: str, bar_open: float, bar_high: float, bar_low: float, time_ms: int) -> bool:
        position = self.core.portfolio.positions[symbol]
        stop_at = self.fill_model.stop_trigger_price(position.side, position.stop_price, bar_open, bar_high, bar_low)
        target_at = None
        if position.take_profit_price is not None:
            target_at = self.fill_model.target_trigger_price(
                position.side, position.take_profit_price, bar_open, bar_high, bar_low
            )
        if stop_at is not None:
            kind = ExitKind.TRAILING_STOP if position.trailing_active else ExitKind.STOP
            price = self.fill_model.market_price(position.side.exit_side, stop_at)
            return self._close(symbol, price, time_ms, kind, kind.value, target_at is not None)
        if target_at is not None:
            return self._close(symbol, target_at, time_ms, ExitKind.TARGET, ExitKind.TARGET.value, False)
        return False

    def _log_fill(self, fill: Fill, kind: OrderKind, exit_kind: ExitKind | None) -> None:
        self.log.fills.append(fill)
        self.log.orders.append(Order(fill.client_order_id, fill.symbol, fill.side, OrderType.MARKET, fill.quantity,
                                     OrderStatus.FILLED, fill.time_ms, filled_quantity=fill.quantity,
                                     average_price=fill.price, reason="paper", kind=kind, exit_kind=exit_kind))

    def _close(self, symbol: str, price: float, time_ms: int, kind: ExitKind, reason: str, ambiguous: bool) -> bool:
        portfolio = self.core.portfolio
        position = portfolio.positions.get(symbol)
        if position is None or position.quantity <= QUANTITY_EPSILON:
            return False
        fee = self.fill_model.commission(position.quantity, price)
        trade = portfolio.close(symbol, price, fee, time_ms, reason, kind)
        self.log.trades.append(TradeRecord(trade, kind, ambiguous, self._entry_reasons.pop(symbol, ""),
                                           *self._entry_sizing.pop(symbol, (SizeBound.RISK, 0))))
        if self._keep_fills:
            self._log_fill(Fill(f"sim-{symbol}-{time_ms}-out", symbol, position.side.exit_side,
                                position.quantity, price, fee, time_ms), OrderKind.EXIT, kind)
        if not self._builds_events:
            self.log.event_counts[PositionClosed.__name__] += 1
        else:
            self._emit([PositionClosed(
                time_ms=time_ms,
                message=f"{symbol} {position.side.value} closed @ {price:.8g} ({kind}) pnl {trade.pnl:+.2f}",
                severity=Severity.INFO if trade.pnl >= 0 else Severity.WARNING,
                symbol=symbol, side=position.side, qty=position.quantity, entry=position.entry_price, exit=price,
                pnl=trade.pnl, exit_kind=kind, reason=reason, stop_and_target_in_one_bar=ambiguous,
            )])
        self._emit(self.core.on_trade_closed(trade, time_ms, self._bar_close_ms).events)
        return True

    def close_all_at(self, prices: dict[str, float], time_ms: int) -> None:
        """Close every open position at the given prices (minus slippage) at the end of a backtest's data.

        ``time_ms`` is a bar close (the last one): the exits count in that bar's trading day.
        """
        self._bar_close_ms = time_ms
        for symbol in sorted(self.core.portfolio.positions):
            position = self.core.portfolio.positions[symbol]
            price = self.fill_model.market_price(position.side.exit_side, prices[symbol])
            self._close(symbol, price, time_ms, ExitKind.END_OF_DATA, "end of data", False)
        self._pending.clear()
        self.core.pending.clear()
