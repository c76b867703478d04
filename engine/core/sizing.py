"""Provides the compiled stops and sizing: ATR stop, trailing candidates and fixed-fractional risk sizing.

The twins of ``DynamicRiskManager.calculate_dynamic_stop_loss`` / ``calculate_position_size`` and of the
policies of ``engine.core.trailing``: the same float operations in the same order (see ``engine.core.rounding``).
"""

from __future__ import annotations

import math
from typing import Any

from engine.core.jit import njit
from engine.core.rounding import STEP_EPS, ceil_to_step, floor_to_step, py_max, py_min, reaches
from engine.core.state import (
    ATR,
    BOUND_BALANCE,
    BOUND_MAX_NOTIONAL,
    BOUND_MAX_RISK,
    BOUND_RISK,
    LONG,
    PERCENT,
)

LIMIT_REL_EPS = 1e-9


@njit()
def initial_stop(config: Any, markets: Any, symbol: int, side: int, entry_price: float, atr: float) -> float:
    """The ATR stop rounded to the tick away from entry; NaN where the Python core raises (no stop exists)."""
    if not (entry_price > 0.0 and math.isfinite(entry_price)):
        return math.nan
    if not (atr >= 0.0 and math.isfinite(atr)):
        return math.nan
    market = markets[symbol]
    tick = market["tick_size"]
    decimals = market["tick_decimals"]
    distance = config[0]["stop_atr_multiple"] * atr
    if side == LONG:
        nearest_allowed = floor_to_step(entry_price - tick, tick, decimals)
        if nearest_allowed < tick * (1.0 - STEP_EPS):
            return math.nan
        return py_max(py_min(floor_to_step(entry_price - distance, tick, decimals), nearest_allowed), tick)
    nearest_allowed = ceil_to_step(entry_price + tick, tick, decimals)
    return py_max(ceil_to_step(entry_price + distance, tick, decimals), nearest_allowed)


@njit()
def trailing_candidate(config: Any, side: int, entry_price: float, extreme: float, price: float, atr: float,
                       swing: float) -> float:
    """The configured policy's raw (unrounded) stop candidate; NaN: none this bar."""
    cfg = config[0]
    policy = cfg["trailing_policy"]
    if policy == PERCENT:
        if side == LONG:
            gain_pct = (extreme / entry_price - 1.0) * 100.0
            trail = extreme * (1.0 - cfg["trailing_distance_pct"] / 100.0)
        else:
            gain_pct = (1.0 - extreme / entry_price) * 100.0
            trail = extreme * (1.0 + cfg["trailing_distance_pct"] / 100.0)
        return trail if reaches(gain_pct, cfg["trailing_activation_pct"]) else math.nan
    if policy == ATR:
        if not (atr > 0.0 and math.isfinite(atr)):
            return math.nan
        offset = cfg["chandelier_atr_multiple"] * atr
        return float(extreme - offset if side == LONG else extreme + offset)
    if not math.isfinite(swing):
        return math.nan
    if math.isfinite(price) and (swing >= price if side == LONG else swing <= price):
        return math.nan
    return swing


@njit()
def tightened_stop(markets: Any, symbol: int, side: int, raw: float, current_stop: float) -> float:
    """The tick-rounded candidate if it tightens the stop by more than ``STEP_EPS`` ticks, else NaN."""
    if not math.isfinite(raw) or raw <= 0.0:
        return math.nan
    market = markets[symbol]
    tick = market["tick_size"]
    if side == LONG:
        candidate = floor_to_step(raw, tick, market["tick_decimals"])
        improvement = candidate - current_stop
    else:
        candidate = ceil_to_step(raw, tick, market["tick_decimals"])
        improvement = current_stop - candidate
    if candidate > 0.0 and improvement > tick * STEP_EPS:
        return candidate
    return math.nan


@njit()
def _finite6(a: float, b: float, c: float, d: float, e: float, f: float) -> bool:
    return (math.isfinite(a) and math.isfinite(b) and math.isfinite(c) and math.isfinite(d) and math.isfinite(e)
            and math.isfinite(f))


@njit()
def position_size(config: Any, markets: Any, symbol: int, equity: float, available_balance: float,
                  entry_price: float, atr: float, signal_strength: float, confluence_multiplier: float,
                  volatility_ratio: float, size_multiplier: float, side: int) -> tuple[float, float, int]:
    """``(quantity, stop, bound)`` of ``calculate_position_size`` (the caller refuses while halted).

    Quantity 0 is a refusal; the stop is NaN when none could be computed.
    """
    if not _finite6(equity, available_balance, entry_price, atr, signal_strength, confluence_multiplier):
        return 0.0, math.nan, BOUND_RISK
    if not (math.isfinite(volatility_ratio) and math.isfinite(size_multiplier)):
        return 0.0, math.nan, BOUND_RISK
    if equity <= 0.0 or available_balance <= 0.0 or entry_price <= 0.0 or atr <= 0.0 or volatility_ratio <= 0.0:
        return 0.0, math.nan, BOUND_RISK
    scale = py_min(signal_strength, 1.0) * confluence_multiplier * size_multiplier
    if volatility_ratio > 1.0:
        scale /= volatility_ratio
    if not scale > 0.0:
        return 0.0, math.nan, BOUND_RISK
    stop = initial_stop(config, markets, symbol, side, entry_price, atr)
    if math.isnan(stop):
        return 0.0, math.nan, BOUND_RISK
    cfg = config[0]
    unit_risk = abs(entry_price - stop)
    budget = equity * cfg["risk_per_trade_pct"] / 100.0 * scale
    bound = BOUND_RISK
    max_risk = equity * cfg["max_position_size_pct"] / 100.0
    if budget > max_risk:
        budget = max_risk
        bound = BOUND_MAX_RISK
    qty_risk = budget / unit_risk
    notional_cap = equity * cfg["max_notional_pct"] / 100.0
    cap_notional = py_min(notional_cap, available_balance)
    qty_cap = cap_notional / entry_price
    if qty_risk <= qty_cap:
        raw_qty = qty_risk
    elif notional_cap <= available_balance:
        raw_qty = qty_cap
        bound = BOUND_MAX_NOTIONAL
    else:
        raw_qty = qty_cap
        bound = BOUND_BALANCE
    market = markets[symbol]
    step = market["lot_step"]
    decimals = market["lot_decimals"]
    quantity = floor_to_step(raw_qty, step, decimals)
    if quantity * entry_price > cap_notional * (1.0 + LIMIT_REL_EPS):
        quantity = floor_to_step(quantity - step, step, decimals)
    if quantity <= 0.0:
        return 0.0, stop, bound
    if market["min_qty"] > 0.0 and not reaches(quantity, market["min_qty"]):
        return 0.0, stop, bound
    notional = quantity * entry_price
    if market["min_notional"] > 0.0 and not reaches(notional, market["min_notional"]):
        return 0.0, stop, bound
    return quantity, stop, bound
