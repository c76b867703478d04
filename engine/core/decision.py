"""Provides DecisionCore, the stateful half of the one decision path shared by backtest, paper and live.

Per closed bar of a symbol it updates the position's trailing stop, decides exits and entries through the
breakers and the risk manager, and on account checks enforces the loss limits (a breach closes every
position and halts). It owns no clock and no I/O: time comes in as ``now_ms`` and decisions go out as
values that a driver executes (the backtest's simulated fills, the paper broker, or the live broker).
While flat with no entry signal and calm volatility a bar costs a few attribute reads (and records the
volatility reading the console shows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.analysis.strategy import PreparedSymbol
from engine.config import BreakerConfig, RiskConfig
from engine.core.account_limits import AccountLimits, LimitCheck
from engine.core.breaker import VOLATILITY, CircuitBreaker
from engine.core.portfolio import OpenPosition, Portfolio
from engine.core.risk import DynamicRiskManager, SizeBound
from engine.core.trailing import QuietTrail, QuietTrails
from engine.domain.events import Event, Severity, TradingStateChanged
from engine.domain.models import CircuitState, ClosedTrade, ExitKind, MarketLimits, PositionSide, TradingState


@dataclass(frozen=True, slots=True)
class EntryDecision:
    """Open a position at the next available price (market)."""

    symbol: str
    side: PositionSide
    quantity: float
    stop_price: float
    take_profit_price: float | None
    strength: float
    multiplier: float
    decided_ms: int
    reason: str
    size_bound: SizeBound = SizeBound.RISK  # which sizing rule decided the quantity
    volume_effect: int = 0  # engine.analysis.volume_rules code: which volume rules downsized this entry


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """Close the symbol's whole position at market; ``kind`` is why (``reason`` says it for people)."""

    symbol: str
    decided_ms: int
    reason: str
    kind: ExitKind


@dataclass(frozen=True, slots=True)
class StopMoved:
    """The protective stop of an open position was tightened (live: replace the exchange stop)."""

    symbol: str
    stop_price: float
    decided_ms: int


Decision = EntryDecision | ExitDecision | StopMoved


@dataclass(frozen=True, slots=True)
class Outcome:
    decisions: tuple[Decision, ...] = ()
    events: tuple[Event, ...] = ()


NOTHING = Outcome()


class DecisionCore:
    """Positions' stops, exits, entries, limits and breakers for one account.

    Args:
        portfolio: the account ledger (the driver applies fills to it).
        market_limits: lot/tick/minimums per symbol; a symbol without limits uses permissive defaults.
    """

    def __init__(
        self,
        risk_config: RiskConfig,
        breaker_config: BreakerConfig,
        portfolio: Portfolio,
        market_limits: Mapping[str, MarketLimits] | None = None,
        take_profit_atr_multiple: float = 0.0,
    ) -> None:
        self.risk = DynamicRiskManager(risk_config)
        self.limits: AccountLimits = self.risk.limits  # one tracker: sizing refuses while it is halted
        self.breaker = CircuitBreaker(breaker_config)
        self.portfolio = portfolio
        self.market_limits: dict[str, MarketLimits] = dict(market_limits or {})
        self.take_profit_atr_multiple = take_profit_atr_multiple
        self.trading_state = TradingState.ACTIVE
        self.pending: set[str] = set()  # symbols with an order decided but not yet filled or rejected
        self._last_limit_check: LimitCheck | None = None
        # True while the HALTED state comes only from a loss limit (a daily-loss halt lifts by itself at the
        # day boundary; a halt by a person or an emergency exit does not).
        self._halted_by_limit = False
        # The volatility breaker is only fed while alarmed or not closed: calm bars cost nothing.
        self._watch_volatility = False
        self._quiet_trails = QuietTrails()  # the trailing stops' quiet bounds (see _trail_is_quiet)
        self._quiet_bars_enabled = True  # private switch: False runs the full update on every bar (tests)

    @property
    def idle(self) -> bool:
        """No position, no pending order and no breaker watching volatility.

        While idle, a bar without an entry signal and without a volatility alarm changes nothing, so a
        driver may skip it (the backtester does; results are identical).
        """
        return not self.portfolio.positions and not self.pending and not self._watch_volatility

    @property
    def last_limit_check(self) -> LimitCheck | None:
        """The latest loss-limit check (including one skipped as quiet by :meth:`check_account`)."""
        deferred = self.limits.take_deferred_check()
        if deferred is not None:
            self._last_limit_check = deferred
        return self._last_limit_check

    @last_limit_check.setter
    def last_limit_check(self, check: LimitCheck | None) -> None:
        self._last_limit_check = check

    # ------------------------------------------------------------------------------------------ helpers
    def limits_for(self, symbol: str) -> MarketLimits:
        limits = self.market_limits.get(symbol)
        if limits is None:
            limits = MarketLimits(symbol)
            self.market_limits[symbol] = limits
        return limits

    def _state_event(self, state: TradingState, now_ms: int, reason: str) -> tuple[Event, ...]:
        if state is self.trading_state:
            return ()
        previous, self.trading_state = self.trading_state, state
        return (
            TradingStateChanged(
                time_ms=now_ms,
                message=f"trading {previous.value} -> {state.value}: {reason}",
                severity=Severity.WARNING if state is not TradingState.ACTIVE else Severity.INFO,
                previous=previous,
                state=state,
                reason=reason,
            ),
        )

    # --------------------------------------------------------------------------------------------- bars
    def on_bar(self, prepared: PreparedSymbol, index: int, now_ms: int) -> Outcome:
        """Decide for closed bar ``index`` of ``prepared`` (``now_ms`` = the bar's close time)."""
        events: tuple[Event, ...] = ()
        if self._watch_volatility or prepared.volatility_alarm[index]:
            update = self.breaker.check_volatility_circuit(
                float(prepared.atr[index]), float(prepared.normal_volatility[index]), now_ms
            )
            self._watch_volatility = update.status.state is not CircuitState.CLOSED
            events = update.events
        else:  # the shown value only; the breaker's decisions stay fed by alarm bars as above
            self.breaker.observe_volatility(prepared.atr[index], prepared.normal_volatility[index])
        symbol = prepared.symbol
        if symbol in self.pending:
            return Outcome((), events) if events else NOTHING
        position = self.portfolio.positions.get(symbol)
        if position is not None:
            decisions = self._manage_position(prepared, index, now_ms)
            return Outcome(decisions, events) if decisions or events else NOTHING
        if self._halted_by_limit:
            events += self._lift_expired_limit_halt(now_ms)
        direction = prepared.entry_direction[index]
        if direction == 0:
            return Outcome((), events) if events else NOTHING
        account = self._check_before_entry(now_ms)
        events += account.events
        if account.decisions or self.trading_state is not TradingState.ACTIVE:
            return Outcome(account.decisions, events) if account.decisions or events else NOTHING
        entry, entry_events = self._entry(prepared, index, int(direction), now_ms)
        return Outcome((entry,) if entry else (), events + entry_events)

    def _check_before_entry(self, now_ms: int) -> Outcome:
        """An entry signal for a flat symbol: the loss limits are checked at this close first.

        This marks the equity before the entry, so an entry bar in a new trading day is measured from it
        (flat equity changes only by fills, each of which is checked, so the latest check holds the equity
        at the reset), and gives the breakers today's daily loss before the entry asks them. Flat bars
        without a signal are not checked (O(1)) unless a loss-limit halt waits to be lifted.
        """
        return self.check_account(now_ms)

    def _lift_expired_limit_halt(self, now_ms: int) -> tuple[Event, ...]:
        """While flat and halted by a loss limit, every bar re-checks the limits (skipped inside the quiet band,
        i.e. until the trading day ends), so a daily-loss halt shows ACTIVE from the next day's first bar."""
        events: tuple[Event, ...] = ()
        if self.limits.halted:
            check = self.limits.check_unless_quiet(self.portfolio.equity(), now_ms)
            if check is None:
                return ()
            self.last_limit_check = check
            if self.limits.halted:
                return check.events
            events = check.events
        self._halted_by_limit = False
        return events + self._state_event(TradingState.ACTIVE, now_ms, "loss limit halt lifted")

    def _manage_position(self, prepared: PreparedSymbol, index: int, now_ms: int) -> tuple[Decision, ...]:
        symbol = prepared.symbol
        position = self.portfolio.positions[symbol]
        candles = prepared.candles
        side = position.side
        is_long = side is PositionSide.LONG
        best = position.best_price
        # max()/min() semantics: the bar's extreme replaces the best only when strictly better (NaN never).
        if is_long:
            high = candles.high[index]
            if high > best:
                best = high
        else:
            low = candles.low[index]
            if low < best:
                best = low
        if self._trail_is_quiet(symbol, position, best, prepared, index):
            moved = False  # the update would return the stop unchanged: see engine.core.trailing.quiet_trail
        else:
            update = self.risk.update_trailing_stop(
                side,
                position.entry_price,
                position.stop_price,
                float(best),
                self.limits_for(symbol),
                price=float(candles.close[index]),
                atr=float(prepared.atr[index]),
                swing_price=float(prepared.swing_low[index] if is_long else prepared.swing_high[index]),
            )
            moved = update.moved
            position.stop_price = update.stop_price
            position.trailing_active = position.trailing_active or moved
        # In place (see OpenPosition): a new record per bar was the most expensive part of a bar.
        position.best_price = float(best)
        position.bars_held += 1
        exit_now = prepared.exit_long[index] if is_long else prepared.exit_short[index]
        if not moved and not exit_now:
            return ()
        decisions: list[Decision] = []
        if moved:
            decisions.append(StopMoved(symbol, position.stop_price, now_ms))
        if exit_now:
            self.pending.add(symbol)
            reasons = prepared.signals.signal_at(index).reasons or ("exit condition",)
            decisions.append(ExitDecision(symbol, now_ms, "signal: " + "; ".join(reasons), ExitKind.SIGNAL))
        return tuple(decisions)

    def quiet_extreme_bound(self, symbol: str) -> float | None:
        """While not None, a bar of the symbol without exit signal or volatility alarm whose extreme stays
        inside this bound (long ``<=``, short ``>=``) leaves the open position's stop as it is.

        None unless a position is open without a pending order, no breaker watches volatility and the
        trailing policy bounds the extreme (percent; see ``engine.core.trailing.quiet_trail``).
        """
        position = self.portfolio.positions.get(symbol)
        if position is None or symbol in self.pending or self._watch_volatility or not self._quiet_bars_enabled:
            return None
        return self._quiet_trail(symbol, position).extreme_bound

    def _quiet_trail(self, symbol: str, position: OpenPosition) -> QuietTrail:
        limits = self.market_limits.get(symbol)
        tick = (limits if limits is not None else self.limits_for(symbol)).tick_size
        return self._quiet_trails.get(
            symbol, self.risk.policy, position.side, position.entry_price, position.stop_price, tick
        )

    def _trail_is_quiet(
        self, symbol: str, position: OpenPosition, best: float, prepared: PreparedSymbol, index: int
    ) -> bool:
        """Whether the trailing update provably leaves the stop as it is on this bar (else it runs in full)."""
        if not self._quiet_bars_enabled:
            return False
        guard = self._quiet_trail(symbol, position)
        is_long = position.side is PositionSide.LONG
        bound = guard.extreme_bound
        if bound is not None:
            return best <= bound if is_long else best >= bound
        raw = self.risk.policy.candidate(
            position.side, position.entry_price, best, float(prepared.candles.close[index]),
            float(prepared.atr[index]), float(prepared.swing_low[index] if is_long else prepared.swing_high[index]),
        )
        return not raw > guard.candidate_bound if is_long else not raw < guard.candidate_bound

    def _refresh_breakers(self, now_ms: int) -> tuple[Event, ...]:
        """Give open breakers a fresh reading so they can cool down and half-open without a new trade."""
        daily_loss_pct = self.last_limit_check.daily_loss_pct if self.last_limit_check else 0.0
        update = self.breaker.check_loss_circuit(self.breaker.consecutive_losses, daily_loss_pct, now_ms)
        return update.events + self.breaker.advance(now_ms)

    def _entry(
        self, prepared: PreparedSymbol, index: int, direction: int, now_ms: int
    ) -> tuple[EntryDecision | None, tuple[Event, ...]]:
        if self.limits.halted:
            return None, ()
        events: tuple[Event, ...] = ()
        permission = self.breaker.allows_entry(now_ms)
        if not permission.allowed:
            events = self._refresh_breakers(now_ms)
            permission = self.breaker.allows_entry(now_ms)
            if not permission.allowed:
                return None, events
        symbol = prepared.symbol
        side = PositionSide.LONG if direction > 0 else PositionSide.SHORT
        price = float(prepared.candles.close[index])
        atr = float(prepared.atr[index])
        limits = self.limits_for(symbol)
        strength = float(prepared.entry_strength[index])
        multiplier = float(prepared.entry_multiplier[index])
        size = self.risk.calculate_position_size(
            equity=self.portfolio.equity(),
            available_balance=self.portfolio.available_balance(),
            entry_price=price,
            atr=atr,
            signal_strength=strength,
            confluence_multiplier=multiplier,
            limits=limits,
            volatility_ratio=float(prepared.volatility_ratio[index]),
            size_multiplier=permission.size_multiplier,
            side=side,
        )
        if not size.approved or size.stop_price is None:
            return None, events
        target = None
        if self.take_profit_atr_multiple > 0:
            target = price + side.sign * self.take_profit_atr_multiple * atr
        self.pending.add(symbol)
        decision = EntryDecision(
            symbol=symbol,
            side=side,
            quantity=size.quantity,
            stop_price=size.stop_price,
            take_profit_price=target,
            strength=strength,
            multiplier=multiplier,
            decided_ms=now_ms,
            reason="; ".join(prepared.reasons_at(index)) + f"; {size.reason}",
            size_bound=size.bound,
            volume_effect=int(prepared.volume_rule_effect[index]),
        )
        return decision, events

    # ---------------------------------------------------------------------------------------- account
    def check_account(self, now_ms: int, equity: float | None = None) -> Outcome:
        """Test the loss limits on marked-to-market equity; a breach closes everything and halts.

        A check that provably changes nothing is skipped (``AccountLimits.check_unless_quiet``), which is
        what keeps a bar with an open position cheap; :attr:`last_limit_check` still reports it.

        Args:
            now_ms: the close of the bar the equity is marked at (UTC ms; its trading day:
            ``engine.domain.trading_day``).
            equity: ``portfolio.equity()`` if the caller already computed it (quote currency).
        """
        if equity is None:
            equity = self.portfolio.equity()
        check = self.limits.check_unless_quiet(equity, now_ms)
        if check is None:
            return NOTHING
        self._last_limit_check = check
        events = check.events
        if not check.must_close_all:
            return Outcome((), events) if events else NOTHING
        if self.trading_state is not TradingState.HALTED:
            self._halted_by_limit = True
        events += self._state_event(TradingState.HALTED, now_ms, "; ".join(check.reasons) or "risk limit breached")
        return Outcome(self._close_all(now_ms, "risk limit: " + "; ".join(check.reasons), ExitKind.RISK_LIMIT), events)

    def _close_all(self, now_ms: int, reason: str, kind: ExitKind) -> tuple[Decision, ...]:
        exits = []
        for symbol in sorted(self.portfolio.positions):
            if symbol in self.pending:
                continue
            self.pending.add(symbol)
            exits.append(ExitDecision(symbol, now_ms, reason, kind))
        return tuple(exits)

    def order_resolved(self, symbol: str) -> None:
        """The driver filled or rejected the symbol's pending order."""
        self.pending.discard(symbol)

    def on_trade_closed(self, trade: ClosedTrade, now_ms: int, bar_close_ms: int | None = None) -> Outcome:
        """Check the loss limits and feed the closed trade to the loss breaker (streak and daily loss).

        Args:
            now_ms: when the trade closed (UTC ms; the breakers' clock).
            bar_close_ms: the close of the bar the exit filled in, when simulated: the fill counts in that
                bar's trading day. None (live): the fill is the instant ``now_ms``.
        """
        equity = self.portfolio.equity()
        if bar_close_ms is None:
            check = self.limits.check_unless_quiet(equity, now_ms, instant=True)
        else:
            check = self.limits.check_unless_quiet(equity, bar_close_ms)
        limit_events: tuple[Event, ...] = ()
        if check is None:  # skipped as a no-op (see check_account): only its daily loss is needed here
            daily_loss_pct = self.limits.quiet_daily_loss_pct(equity)
        else:
            self.last_limit_check = check
            daily_loss_pct, limit_events = check.daily_loss_pct, check.events
        # The breaker reads the limits' daily loss of now, not the one it kept from an earlier trade or day.
        update = self.breaker.record_trade_result(trade.pnl, now_ms, daily_loss_pct)
        loss_update = self.breaker.check_loss_circuit(self.breaker.consecutive_losses, daily_loss_pct, now_ms)
        return Outcome((), update.events + loss_update.events + limit_events)

    # --------------------------------------------------------------------------------------- commands
    def halt(self, now_ms: int, reason: str) -> Outcome:
        self._halted_by_limit = False
        return Outcome((), self._state_event(TradingState.HALTED, now_ms, reason))

    def resume(self, now_ms: int) -> Outcome:
        """Allow entries again; also lifts a latched loss-limit halt (the engine asks for a grant first)."""
        events = self.clear_limit_halt(now_ms).events + self._state_event(TradingState.ACTIVE, now_ms, "resumed")
        return Outcome((), events)

    def clear_limit_halt(self, now_ms: int) -> Outcome:
        """A person lifts a latched loss-limit halt; a HALTED state caused only by that halt ends with it."""
        events = self.limits.manual_resume(self.portfolio.equity(), now_ms)
        if self._halted_by_limit:
            self._halted_by_limit = False
            events += self._state_event(TradingState.ACTIVE, now_ms, "loss limit halt lifted manually")
        return Outcome((), events)

    def emergency_exit(self, now_ms: int, reason: str) -> Outcome:
        """Close every position at market and halt; a second call while one runs does nothing new."""
        instruction = self.breaker.trigger_emergency_exit(reason, now_ms)
        if instruction.status != "started":
            return NOTHING
        self._halted_by_limit = False
        events = instruction.events + self._state_event(TradingState.HALTED, now_ms, f"emergency exit: {reason}")
        return Outcome(self._close_all(now_ms, f"emergency exit: {reason}", ExitKind.EMERGENCY_EXIT), events)

    def close_position(self, symbol: str, now_ms: int, reason: str) -> Outcome:
        if symbol not in self.portfolio.positions or symbol in self.pending:
            return NOTHING
        self.pending.add(symbol)
        return Outcome((ExitDecision(symbol, now_ms, reason, ExitKind.MANUAL),), ())

    # ------------------------------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        return {
            "trading_state": self.trading_state.value,
            "halted_by_limit": self._halted_by_limit,
            "limits": self.limits.to_state(),
            "breaker": self.breaker.to_state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.trading_state = TradingState(state.get("trading_state", TradingState.ACTIVE.value))
        self._halted_by_limit = bool(state.get("halted_by_limit", False))
        if state.get("limits"):
            self.limits.restore(state["limits"])
        if state.get("breaker"):
            self.breaker.restore(state["breaker"])
            self._watch_volatility = self.breaker.status(VOLATILITY).state is not CircuitState.CLOSED
