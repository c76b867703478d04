"""Provides StopMover: a trailing stop's move on the exchange, for a lone stop or a stop-and-target pair.

A move replaces what rests, cancel-then-place (see :mod:`engine.execution.ccxt_protection`): a lone stop
by a stop at the new level, a pair by a new pair at the new stop with the *same* target. The new order
is persisted before it is sent. If the old one had already sold, that sale is booked instead; if the new
one is refused, the old level is put back where possible, else the position is protected again (or
exited, when the market is already through the new stop or at the target) through the protection loop.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.core.decision import StopMoved
from engine.domain.errors import ExchangeCallException, OrderOutcomeUnknownException
from engine.domain.models import ExitKind, Order, OrderKind, OrderStatus, OrderType, Side
from engine.execution.booking import TAKE_PROFIT
from engine.execution.broker import OrderAck, PairAck, StopReplaceError
from engine.execution.protection import ProtectionState
from engine.execution.take_profit import target_intent

if TYPE_CHECKING:
    from engine.execution.order_manager import OrderManager

log = logging.getLogger(__name__)

_P = ProtectionState


class StopMover:
    """Moves the exchange stops of one :class:`~engine.execution.order_manager.OrderManager` as the trailing stop
    tightens."""

    def __init__(self, manager: OrderManager) -> None:
        self.m = manager

    async def move_stop(self, decision: StopMoved) -> None:
        m, symbol = self.m, decision.symbol
        position = m.portfolio.positions.get(symbol)
        if position is None:
            return
        protection = m.protection_of(symbol)
        old, old_target = m.stops.get(symbol), m.targets.get(symbol)
        if protection.state is not _P.PROTECTED or old is None or m.awaiting(symbol):
            if not protection.exiting:  # no stop rests: place one at the new level
                protection.new_budget()
                await m.drive_protection(symbol)
            return
        if not m.governed(symbol, "stop move"):
            return  # the old stop keeps resting
        mine = position.quantity + m.portfolio.dust.get(symbol, 0.0)
        intent = Order(m.new_client_id(symbol, "trail"), symbol, Side.SELL, OrderType.STOP_MARKET, mine,
                       OrderStatus.INTENT, m.now(), stop_price=decision.stop_price,
                       reason=f"{OrderKind.STOP}: trailing", kind=OrderKind.STOP)
        target_price = None
        if old_target is not None:  # the same target as before: the position's (the model's), else what rested
            target_price = position.take_profit_price if position.take_profit_price is not None else old_target.price
        paired = None if target_price is None else target_intent(intent, target_price)
        await m.save(intent)
        if paired is not None:
            await m.save(paired)
        try:
            if paired is None:
                ack: OrderAck | PairAck = await m.broker.replace_stop_loss(
                    old.client_order_id, intent.client_order_id, symbol, Side.SELL, mine, decision.stop_price)
            else:
                ack = await m.broker.replace_protection(old.client_order_id, intent.client_order_id, symbol,
                                                        Side.SELL, mine, decision.stop_price, float(target_price or 0))
        except StopReplaceError as exc:
            await self._refused(symbol, exc, intent, paired, old, old_target, target_price)
            return
        except OrderOutcomeUnknownException as exc:  # the old one was cancelled; the new one's fate is unknown
            await self._old_cancelled(symbol, old, old_target)
            protection.enter(_P.PLACING_STOP)
            await m.mark_uncertain(intent, exc, paired)
            return
        except ExchangeCallException as exc:
            for row in (intent, paired):
                if row is not None:
                    await m.save(replace(row, status=OrderStatus.REJECTED))
            log.warning("%s: stop not moved (%s); the old stop stays", symbol, exc)
            return
        if ack.client_order_id == old.client_order_id:  # the old one had sold: nothing to move
            for row in (intent, paired):
                if row is not None:
                    await m.save(replace(row, status=OrderStatus.CANCELED))
            if isinstance(ack, PairAck):
                assert old_target is not None
                await m.targets_side.settle_pair(symbol, old, old_target, ack)
            else:
                await m.books.stop_filled(symbol, old, ack)
            return
        await self._old_cancelled(symbol, old, old_target)
        if isinstance(ack, PairAck):
            assert paired is not None
            await m.targets_side.settle_pair(symbol, intent, paired, ack)
        else:
            await m.save(ack.order.labelled_like(intent))
            m.stops[symbol] = ack.order.labelled_like(intent)

    async def _old_cancelled(self, symbol: str, old: Order, old_target: Order | None) -> None:
        await self.m.save(replace(old, status=OrderStatus.CANCELED))
        if old_target is not None:
            await self.m.save(replace(old_target, status=OrderStatus.CANCELED))
        self.m.stops.pop(symbol, None)
        self.m.targets.pop(symbol, None)

    async def _refused(
        self, symbol: str, exc: StopReplaceError, intent: Order, paired: Order | None, old: Order,
        old_target: Order | None, target_price: float | None,
    ) -> None:
        """The new stop (or pair) was refused after the old one was cancelled: restored, or protected anew."""
        m = self.m
        for row in (intent, paired):
            if row is not None:
                await m.save(replace(row, status=OrderStatus.REJECTED))
        await self._old_cancelled(symbol, old, old_target)
        protection = m.protection_of(symbol)
        if exc.restored is not None:
            restored = replace(exc.restored.order, reason=f"{OrderKind.STOP}: restored", kind=OrderKind.STOP)
            if exc.restored_target is not None:
                restored_target = replace(exc.restored_target.order, reason=f"target: {TAKE_PROFIT}",
                                          kind=OrderKind.TAKE_PROFIT)
                await m.targets_side.settle_pair(symbol, restored, restored_target,
                                                 PairAck(exc.restored, exc.restored_target))
            else:
                await m.save(restored)
                m.stops[symbol] = restored
            return
        if exc.would_trigger:
            m.core.pending.add(symbol)
            protection.start_exit(ExitKind.TRAILING_STOP, "trailing stop crossed")
        elif exc.target_reached:
            m.core.pending.add(symbol)
            protection.start_exit(ExitKind.TARGET, TAKE_PROFIT, target_price)
        else:
            protection.enter(_P.UNPROTECTED)
        protection.new_budget()
        await m.drive_protection(symbol)
