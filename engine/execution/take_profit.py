"""Provides Targets: the live take-profit, the same target the backtest takes, on the exchange or watched by the engine.

The decision core computes the target (``EntryDecision.take_profit_price``, ``take_profit_atr_multiple``
ATRs from the decision bar's close); the backtest and paper fill model sell there inside any bar whose
high reaches it, unless the bar also reached the stop (then the stop, the worse, is assumed). Live:

* Where the venue allows it the target rests *with* the stop as one pair (Binance spot OCO: a
  ``LIMIT_MAKER`` above, the stop below, the quantity locked once; when one leg fills the other
  expires). :meth:`Targets.settle_pair` applies what the exchange says about a pair: both legs resting,
  one leg sold (the position closes with reason ``take_profit`` or ``stop``), or both gone.
* Otherwise (no OCO on the market, the pair refused, or exchange targets disabled) the stop rests
  alone and :meth:`Targets.check_bar` applies the fill model to each closed bar: a bar that reached
  the target and not the stop exits at market, recording the modelled price (the target, or the
  open of a bar that gapped through it) beside the real fill.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.analysis.strategy import PreparedSymbol
from engine.domain.errors import ExchangeCallException
from engine.domain.events import StopPlaced, TargetReached
from engine.domain.models import ExitKind, Order, OrderKind, OrderStatus, OrderType, Side
from engine.execution.booking import TAKE_PROFIT
from engine.execution.broker import PairAck, pair_client_ids
from engine.execution.protection import Protection, ProtectionState
from engine.simulation.fills import FillModel

if TYPE_CHECKING:
    from engine.execution.order_manager import OrderManager

log = logging.getLogger(__name__)

_P = ProtectionState


def target_intent(stop: Order, target_price: float) -> Order:
    """The write-ahead row of the target leg that goes with ``stop`` (its id derived from the stop's)."""
    _, target_id = pair_client_ids(stop.client_order_id)
    return Order(target_id, stop.symbol, Side.SELL, OrderType.LIMIT, stop.quantity, OrderStatus.INTENT,
                 stop.created_ms, price=target_price, reason=f"target: {TAKE_PROFIT}", kind=OrderKind.TAKE_PROFIT)


class Targets:
    """The take-profit side of one live :class:`~engine.execution.order_manager.OrderManager`.

    Args:
        manager: the order manager (its broker, books, resting stops and targets).
        fill_model: the backtest's fill model, whose trigger rules decide an engine-checked target.
    """

    def __init__(self, manager: OrderManager, fill_model: FillModel) -> None:
        self.m = manager
        self.fill_model = fill_model

    def pair_target(self, symbol: str, protection: Protection) -> float | None:
        """The target to rest with the position's stop as one pair, or None (a lone stop)."""
        position = self.m.portfolio.positions[symbol]
        if position.take_profit_price is None or protection.pair_refused or not self.m.exchange_targets:
            return None
        return position.take_profit_price if self.m.broker.supports_protection_pair(symbol) else None

    async def settle_pair(self, symbol: str, stop_row: Order, target_row: Order, pair: PairAck) -> None:
        """Apply what the exchange says about a pair: both legs resting, one leg sold, or both gone."""
        m = self.m
        stop = pair.stop.order.labelled_like(stop_row)
        target = pair.target.order.labelled_like(target_row)
        leg = pair.filled_leg
        if leg is None:
            await m.save(stop)
            await m.save(target)
            if pair.is_open:
                await self._resting(symbol, stop, target)
                return
            m.stops.pop(symbol, None)
            m.targets.pop(symbol, None)
            protection = m.protection_of(symbol)
            if symbol in m.portfolio.positions and not protection.exiting:
                protection.enter(_P.UNPROTECTED)
            return
        if leg.is_open:  # partly sold and still working: take the rest down first (it locks what is held)
            try:
                leg = await m.broker.cancel_order(leg.client_order_id, symbol)
            except ExchangeCallException as exc:
                log.warning("%s: %s partly filled, its rest not cancelled (%s); next candle", symbol,
                            leg.client_order_id, exc)
                return
        if leg.client_order_id == target.client_order_id:
            await m.save(stop)  # expired when the target sold
            await m.books.target_filled(symbol, target, leg)
        else:
            await m.save(target)  # expired when the stop sold
            await m.books.stop_filled(symbol, stop, leg)

    async def _resting(self, symbol: str, stop: Order, target: Order) -> None:
        m = self.m
        m.stops[symbol], m.targets[symbol] = stop, target
        position = m.portfolio.positions.get(symbol)
        if position is not None and position.take_profit_price is None:
            position.take_profit_price = target.price  # restored without it: the exchange's pair says where
        protection = m.protection_of(symbol)
        if not protection.exiting:  # an exit decided meanwhile still wins: it cancels this pair first
            protection.enter(_P.PROTECTED)
        m.emit(StopPlaced(time_ms=m.now(), message=f"{symbol}: exchange stop at {float(stop.stop_price or 0):.8g} "
                          f"with take-profit at {float(target.price or 0):.8g} for {stop.quantity:g}",
                          symbol=symbol, stop=stop.stop_price, target=target.price, qty=stop.quantity,
                          client_order_id=stop.client_order_id, target_client_order_id=target.client_order_id))

    async def check_bar(self, prepared: PreparedSymbol, index: int) -> None:
        """The fill model's target rule on the closed bar, where no target rests on the exchange.

        A bar that reached the target and not the stop exits at market as ``take_profit`` with the
        model's price recorded (a bar that also reached the stop is the stop's: the model assumes it).
        """
        m, symbol = self.m, prepared.symbol
        position = m.portfolio.positions.get(symbol)
        if (position is None or position.take_profit_price is None or symbol in m.targets
                or symbol in m.core.pending or m.awaiting(symbol)):
            return
        protection = m.protection_of(symbol)
        if protection.exiting:
            return
        candles = prepared.candles
        bar = float(candles.open[index]), float(candles.high[index]), float(candles.low[index])
        if self.fill_model.stop_trigger_price(position.side, position.stop_price, *bar) is not None:
            return  # the model takes the stop on this bar: the exchange stop is the exit
        modelled = self.fill_model.target_trigger_price(position.side, position.take_profit_price, *bar)
        if modelled is None:
            return
        m.emit(TargetReached(time_ms=m.now(), message=f"{symbol}: the bar reached the target "
                             f"{position.take_profit_price:.8g}; selling at market",
                             symbol=symbol, target=position.take_profit_price, modelled_exit=modelled, high=bar[1]))
        m.core.pending.add(symbol)
        protection.start_exit(ExitKind.TARGET, TAKE_PROFIT, modelled)
        protection.new_budget()
        await m.drive_protection(symbol)
