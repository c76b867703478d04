"""Provides the fill model shared by the backtester and the paper broker.

One model, so that a paper session and a backtest over the same bars fill identically:
market orders decided on a closed bar fill at the next bar's open with slippage against us;
stops trigger inside a bar from its high/low and fill at the stop, or at the open when the bar
gaps through the stop; commission is charged per side on the filled notional.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config import BacktestConfig
from engine.domain.models import PositionSide, Side


@dataclass(frozen=True)
class FillModel:
    """Fill assumptions.

    Attributes:
        commission_rate: ratio of notional charged per side (0.001 = 0.1 %).
        slippage_rate: ratio the fill price moves against us on market and stop fills.
    """

    commission_rate: float = 0.001
    slippage_rate: float = 0.0005

    @classmethod
    def from_config(cls, config: BacktestConfig) -> FillModel:
        return cls(commission_rate=config.commission_percent / 100.0, slippage_rate=config.slippage_percent / 100.0)

    def describe(self) -> dict[str, object]:
        """The assumptions, for recording next to every result."""
        return {
            "entry": "next bar open after the decision bar, plus slippage",
            "exit_signal": "next bar open after the decision bar, minus slippage",
            "stop": "inside the bar from high/low at the stop price; at the open when the bar gaps through",
            "stop_and_target_same_bar": "assume the stop (the worse outcome)",
            "commission_rate_per_side": self.commission_rate,
            "slippage_rate": self.slippage_rate,
        }

    def market_price(self, side: Side, reference_price: float) -> float:
        """Fill price of a market order at ``reference_price`` (quote currency)."""
        if side is Side.BUY:
            return reference_price * (1.0 + self.slippage_rate)
        return reference_price * (1.0 - self.slippage_rate)

    def commission(self, quantity: float, price: float) -> float:
        return abs(quantity) * price * self.commission_rate

    def stop_trigger_price(
        self, position_side: PositionSide, stop_price: float, bar_open: float, bar_high: float, bar_low: float
    ) -> float | None:
        """Price before slippage at which a protective stop fills inside this bar, or None if untouched."""
        if position_side is PositionSide.LONG:
            if bar_open <= stop_price:
                return bar_open  # gapped through: the first price available is the open
            return stop_price if bar_low <= stop_price else None
        if bar_open >= stop_price:
            return bar_open
        return stop_price if bar_high >= stop_price else None

    def untouched_band(
        self, position_side: PositionSide, stop_price: float, target_price: float | None
    ) -> tuple[float, float]:
        """``(low, high)``: a bar whose open, high and low all lie strictly inside fills neither order.

        Inside it :meth:`stop_trigger_price` and :meth:`target_trigger_price` both return None; the
        simulated account tests this band first so that a quiet bar costs four comparisons.
        """
        if position_side is PositionSide.LONG:
            return stop_price, math.inf if target_price is None else target_price
        return -math.inf if target_price is None else target_price, stop_price

    def target_trigger_price(
        self, position_side: PositionSide, target_price: float, bar_open: float, bar_high: float, bar_low: float
    ) -> float | None:
        """Price at which a take-profit limit fills inside this bar, or None (a gap fills at the better open)."""
        if position_side is PositionSide.LONG:
            if bar_open >= target_price:
                return bar_open
            return target_price if bar_high >= target_price else None
        if bar_open <= target_price:
            return bar_open
        return target_price if bar_low <= target_price else None
