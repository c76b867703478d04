"""Provides the DynamicRiskManager: position sizing, ATR stops, trailing stops and account loss limits.

Everything here is pure per-call float arithmetic (no pandas/numpy on scalars) because the decision path
calls it on every bar, and time is always injected as ``now_ms`` (UTC ms): nothing reads a clock.
Trailing policies live in ``engine.core.trailing``, the daily-loss/drawdown limits in ``engine.core.account_limits``;
this
class is the one surface the decision path uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.config import RiskConfig
from engine.core.account_limits import AccountLimits, LimitCheck, RiskAction
from engine.core.trailing import TrailingPolicy, TrailingUpdate, trailing_policy_from_config, update_trailing_stop
from engine.domain.errors import RiskManagementException
from engine.domain.events import Event
from engine.domain.models import MarketLimits, PositionSide
from engine.domain.precision import LIMIT_REL_EPS, STEP_EPS, ceil_to_step, floor_to_step, reaches

__all__ = ["DynamicRiskManager", "LimitCheck", "RiskAction", "SizeBound", "SizeDecision", "TrailingUpdate"]


class SizeBound(StrEnum):
    """What decided an entry's size: the risk budget itself, or the cap that bound it."""

    RISK = "risk"  # the scaled risk budget at the stop distance
    MAX_RISK = "max_risk"  # the scaled budget exceeded max_position_size_percent of equity at risk
    MAX_NOTIONAL = "max_notional"  # the notional reached max_notional_percent of equity
    BALANCE = "balance"  # the free quote balance could not pay for more


@dataclass(frozen=True, slots=True)
class SizeDecision:
    """The sized order, or a refusal (``quantity == 0``) with the reason.

    Attributes:
        quantity: base-currency quantity, a multiple of the lot step; 0 when refused.
        notional: ``quantity * entry_price`` in quote currency.
        risk_amount: quote currency lost if the stop is hit (``quantity * |entry - stop|``), fees excluded.
        stop_price: initial stop (quote currency), None when no stop could be computed.
        reason: why this size (which cap bound it) or why it was refused.
        bound: which rule decided the size (``RISK`` when no cap bound; also set on refusals).
    """

    quantity: float
    notional: float
    risk_amount: float
    stop_price: float | None
    reason: str
    bound: SizeBound = SizeBound.RISK

    @property
    def approved(self) -> bool:
        return self.quantity > 0.0


def _refuse(reason: str, stop_price: float | None = None, bound: SizeBound = SizeBound.RISK) -> SizeDecision:
    return SizeDecision(0.0, 0.0, 0.0, stop_price, reason, bound)


def _finite(*values: float) -> bool:
    for value in values:  # a loop, not all(<generator>): this runs on every entry decision
        if not math.isfinite(value):
            return False
    return True


def _bound_reasons(config: RiskConfig) -> dict[SizeBound, str]:
    """The sizing reason per bound (formatted once per config, not per entry)."""
    return {
        SizeBound.RISK: "sized by risk",
        SizeBound.MAX_RISK: f"risk capped at {config.max_position_size_percent}% of equity",
        SizeBound.MAX_NOTIONAL: f"notional capped at {config.max_notional_percent}% of equity",
        SizeBound.BALANCE: "capped by available balance",
    }


class DynamicRiskManager:
    """Sizes positions, places stops and enforces the daily-loss and max-drawdown limits.

    State that must survive a restart (equity peak, trading-day key and start equity, warning flags,
    latched halts) is available as JSON-able data from :meth:`to_state` and restored by
    :meth:`restore` / :meth:`from_state`.
    """

    def __init__(self, config: RiskConfig) -> None:
        self._config = config
        self._bound_reasons = _bound_reasons(config)
        self._policy: TrailingPolicy = trailing_policy_from_config(config)
        self._limits = AccountLimits(config)

    @property
    def config(self) -> RiskConfig:
        return self._config

    @property
    def policy(self) -> TrailingPolicy:
        """The configured trailing policy (replaced on :meth:`reconfigure`)."""
        return self._policy

    @property
    def limits(self) -> AccountLimits:
        """The daily-loss and drawdown tracker (peak, day start, latched halts)."""
        return self._limits

    def reconfigure(self, config: RiskConfig) -> None:
        """Apply new settings (e.g. a ``SetRiskLimit`` command) keeping the account state."""
        self._config = config
        self._bound_reasons = _bound_reasons(config)
        self._policy = trailing_policy_from_config(config)
        self._limits.reconfigure(config)

    # ----------------------------------------------------------------------------------------- stops
    def calculate_dynamic_stop_loss(
        self, side: PositionSide, entry_price: float, atr: float, limits: MarketLimits
    ) -> float:
        """Initial stop ``stop_atr_multiple`` x ATR from entry, always on the loss side.

        Rounding goes to the tick *away from entry* (down for a long, up for a short). That is the safe
        direction: the stop can only end up further from entry, never on or past it, and the position is
        sized on the rounded distance, so the risk budget still holds exactly. Rounding towards entry
        could land a sub-tick stop on the entry price itself. The stop is always at least one tick
        beyond entry (a sub-tick ATR distance is widened to that), and a long stop that would be <= 0 is
        raised to one tick.

        Args:
            side: position side.
            entry_price: expected entry price (quote currency, > 0).
            atr: average true range (quote currency, finite, >= 0).
            limits: market rules (``tick_size``).

        Raises:
            RiskManagementException: on a non-positive/non-finite entry or a negative/non-finite ATR, or a
                long entry under two ticks (no positive stop a tick below it exists).
        """
        if not (entry_price > 0.0 and math.isfinite(entry_price)):
            raise RiskManagementException(f"entry price must be finite and > 0, got {entry_price!r}")
        if not (atr >= 0.0 and math.isfinite(atr)):
            raise RiskManagementException(f"ATR must be finite and >= 0, got {atr!r}")
        tick = limits.tick_size
        distance = self._config.stop_atr_multiple * atr
        if side is PositionSide.LONG:
            nearest_allowed = floor_to_step(entry_price - tick, tick)  # at least one tick below entry
            if nearest_allowed < tick * (1.0 - STEP_EPS):
                raise RiskManagementException(f"no long stop exists below entry {entry_price} at tick {tick}")
            return max(min(floor_to_step(entry_price - distance, tick), nearest_allowed), tick)
        nearest_allowed = ceil_to_step(entry_price + tick, tick)  # at least one tick above entry
        return max(ceil_to_step(entry_price + distance, tick), nearest_allowed)

    def update_trailing_stop(
        self,
        side: PositionSide,
        entry_price: float,
        current_stop: float,
        extreme_price: float,
        limits: MarketLimits,
        *,
        price: float = math.nan,
        atr: float = math.nan,
        swing_price: float = math.nan,
    ) -> TrailingUpdate:
        """Tighten the stop with the configured trailing policy; see ``engine.core.trailing.update_trailing_stop``.

        ``extreme_price`` is the highest high (long) / lowest low (short) since entry; ``atr`` feeds the
        chandelier policy, ``swing_price`` (from ``engine.core.trailing.swing_levels``) the swing policy. The
        returned stop never loosens.
        """
        return update_trailing_stop(
            self._policy, side, entry_price, current_stop, extreme_price, limits,
            price=price, atr=atr, swing_price=swing_price,
        )

    # ---------------------------------------------------------------------------------------- sizing
    def calculate_position_size(
        self,
        equity: float,
        available_balance: float,
        entry_price: float,
        atr: float,
        signal_strength: float,
        confluence_multiplier: float,
        limits: MarketLimits,
        volatility_ratio: float = 1.0,
        size_multiplier: float = 1.0,
        side: PositionSide = PositionSide.LONG,
    ) -> SizeDecision:
        """Size a new position by fixed-fractional risk at the ATR stop, then apply the caps.

        Formula (quote currency unless noted)::

            stop          = calculate_dynamic_stop_loss(side, entry_price, atr)    # tick-rounded
            budget        = equity * risk_per_trade_percent / 100
                            * signal_strength * confluence_multiplier
                            * min(1, 1 / volatility_ratio) * size_multiplier
            budget        = min(budget, equity * max_position_size_percent / 100)  # most at risk per trade
            qty_risk      = budget / |entry_price - stop|
            cap_notional  = min(equity * max_notional_percent / 100, available_balance)
            quantity      = floor_to_lot_step(min(qty_risk, cap_notional / entry_price))

        So the risk settings decide the size (twice the risk, twice the quantity) until a cap binds; the
        decision's ``bound`` says which one did.

        Refused (quantity 0, reason set) when trading is halted by a limit, on non-finite inputs, on
        zero or negative equity, balance, price, ATR or scale factors, or when the rounded quantity is
        under ``min_qty`` or its notional under ``min_notional`` (never rounded *up* to meet a minimum:
        that would break the risk budget). Fees are not reserved here; the available-balance cap is on
        notional.

        Args:
            equity: account equity, marked to market (quote currency).
            available_balance: free quote balance that can pay for the entry.
            entry_price: expected entry price (> 0).
            atr: ATR in quote currency (> 0).
            signal_strength: ratio in [0, 1].
            confluence_multiplier: multi-timeframe multiplier (>= 0; 1 = neutral).
            limits: market rules (lot step, tick size, minimums).
            volatility_ratio: current ATR / its recent median (``volatility_median_lookback`` bars); above
                1 the risk shrinks proportionally, at or below 1 it has no effect.
            size_multiplier: ratio in (0, 1] from the breakers (e.g. half-open).
            side: position side (the stop side).
        """
        if self._limits.halted:
            return _refuse(f"trading halted: {', '.join(self._limits.halt_reasons)} limit breached")
        if not _finite(equity, available_balance, entry_price, atr, signal_strength, confluence_multiplier):
            return _refuse("non-finite input (equity, balance, price, ATR, strength or confluence)")
        if not _finite(volatility_ratio, size_multiplier):
            return _refuse("non-finite volatility ratio or size multiplier")
        if equity <= 0.0:
            return _refuse(f"equity {equity} is not positive")
        if available_balance <= 0.0:
            return _refuse(f"available balance {available_balance} is not positive")
        if entry_price <= 0.0:
            return _refuse(f"entry price {entry_price} is not positive")
        if atr <= 0.0:
            return _refuse(f"ATR {atr} is not positive")
        if volatility_ratio <= 0.0:
            return _refuse(f"volatility ratio {volatility_ratio} is not positive")
        scale = min(signal_strength, 1.0) * confluence_multiplier * size_multiplier
        if volatility_ratio > 1.0:
            scale /= volatility_ratio
        if not scale > 0.0:
            return _refuse("risk scale is zero (signal strength, confluence or size multiplier)")
        try:
            stop = self.calculate_dynamic_stop_loss(side, entry_price, atr, limits)
        except RiskManagementException as exc:
            return _refuse(str(exc))
        cfg = self._config
        unit_risk = abs(entry_price - stop)
        budget = equity * cfg.risk_per_trade_percent / 100.0 * scale
        bound = SizeBound.RISK
        max_risk = equity * cfg.max_position_size_percent / 100.0
        if budget > max_risk:
            budget, bound = max_risk, SizeBound.MAX_RISK
        qty_risk = budget / unit_risk
        notional_cap = equity * cfg.max_notional_percent / 100.0
        cap_notional = min(notional_cap, available_balance)
        qty_cap = cap_notional / entry_price
        if qty_risk <= qty_cap:
            raw_qty = qty_risk
        elif notional_cap <= available_balance:
            raw_qty, bound = qty_cap, SizeBound.MAX_NOTIONAL
        else:
            raw_qty, bound = qty_cap, SizeBound.BALANCE
        binding = self._bound_reasons[bound]
        step = limits.lot_step
        quantity = floor_to_step(raw_qty, step)
        # floor_to_step may land STEP_EPS above the exact cap; step down rather than exceed a cap.
        if quantity * entry_price > cap_notional * (1.0 + LIMIT_REL_EPS):
            quantity = floor_to_step(quantity - step, step)
        if quantity <= 0.0:
            return _refuse(f"size below one lot step {step} ({binding})", stop, bound)
        if limits.min_qty > 0.0 and not reaches(quantity, limits.min_qty):
            return _refuse(f"quantity {quantity} below market minimum {limits.min_qty} ({binding})", stop, bound)
        notional = quantity * entry_price
        if limits.min_notional > 0.0 and not reaches(notional, limits.min_notional):
            return _refuse(
                f"notional {notional:.8g} below market minimum {limits.min_notional} ({binding})", stop, bound
            )
        return SizeDecision(quantity, notional, quantity * unit_risk, stop, binding, bound)

    # ---------------------------------------------------------------------------------------- limits
    def check_drawdown_limits(self, equity: float, now_ms: int) -> LimitCheck:
        """Test the daily-loss and max-drawdown limits; see :meth:`engine.core.account_limits.AccountLimits.check`.

        Call once per bar (and after fills) with equity marked to market (quote currency). If the result's
        ``action`` is ``RiskAction.CLOSE_ALL_AND_HALT`` the caller must close every position at once and
        stop entering; sizing refuses every order while a limit is latched.
        """
        return self._limits.check(equity, now_ms)

    def should_halt_trading(self) -> bool:
        """Whether a limit breach has halted new entries (as of the last limit check)."""
        return self._limits.halted

    def manual_resume(self, equity: float, now_ms: int) -> tuple[Event, ...]:
        """A person lifts the limit halts, re-basing peak and day-start equity; see ``AccountLimits``."""
        return self._limits.manual_resume(equity, now_ms)

    # ----------------------------------------------------------------------------------- persistence
    def to_state(self) -> dict[str, Any]:
        """The restart-surviving state (limits) as JSON-able data."""
        return self._limits.to_state()

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load state produced by :meth:`to_state` (possibly after a JSON round trip)."""
        self._limits.restore(state)

    @classmethod
    def from_state(cls, config: RiskConfig, state: Mapping[str, Any]) -> DynamicRiskManager:
        manager = cls(config)
        manager.restore(state)
        return manager
