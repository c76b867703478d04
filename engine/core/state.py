"""Provides the typed state records of the compiled core and their construction from the settings.

Every record is a numpy structured array (one row for the account and the configuration, one row per
symbol for markets and positions, one row per breaker), so numba kernels read and write named fields and
``cache=True`` works (a jitclass cannot be cached). Enumerations are small integer codes defined here;
the Python face (``engine.core.records``) turns them back into the domain's enums and texts.

Optional values of the Python core (``None``) are a flag field beside the value (``has_*``), or
:data:`NO_TIME` for times.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.config import BacktestConfig, BreakerConfig, RiskConfig
from engine.domain.models import MarketLimits
from engine.domain.precision import step_decimals
from engine.domain.trading_day import reset_offset_ms

NO_TIME = np.iinfo(np.int64).min
"""A time that is not set (the Python core's ``None``), UTC ms."""

# Sides and trailing policies.
LONG, SHORT = 1, -1
PERCENT, ATR, SWING = 0, 1, 2
POLICY_CODES = {"percent": PERCENT, "atr": ATR, "swing": SWING}

# Trading states (engine.domain.models.TradingState) and breaker states (engine.domain.models.CircuitState).
ACTIVE, REDUCING, HALTED = 0, 1, 2
CLOSED, OPEN, HALF_OPEN = 0, 1, 2
VOLATILITY, LOSS, SYSTEM = 0, 1, 2  # breaker rows
# Emergency exit phases (engine.core.emergency): armed, in progress, done.
EMERGENCY_ARMED, EMERGENCY_IN_PROGRESS, EMERGENCY_DONE = 0, 1, 2
# Loss-limit actions (engine.core.account_limits.RiskAction) and limits (bit masks of breached limits).
ACTION_NONE, ACTION_HALT_ENTRIES, ACTION_CLOSE_ALL = 0, 1, 2
DAILY_LOSS_BIT, DRAWDOWN_BIT = 1, 2
# Size bounds (engine.core.risk.SizeBound), in this order.
BOUND_RISK, BOUND_MAX_RISK, BOUND_MAX_NOTIONAL, BOUND_BALANCE = 0, 1, 2, 3
# Pending orders of a symbol: none, an entry, an exit.
ORDER_NONE, ORDER_ENTRY, ORDER_EXIT = 0, 1, 2
# Exit reasons (engine.simulation.account exit kinds).
EXIT_SIGNAL, EXIT_STOP, EXIT_TRAILING_STOP, EXIT_TARGET, EXIT_RISK_LIMIT, EXIT_EMERGENCY, EXIT_MANUAL, \
    EXIT_END_OF_DATA = range(8)

CONFIG_DTYPE = np.dtype([
    # risk sizing and stops
    ("risk_per_trade_pct", np.float64), ("max_position_size_pct", np.float64), ("max_notional_pct", np.float64),
    ("stop_atr_multiple", np.float64), ("take_profit_atr_multiple", np.float64),
    # trailing
    ("trailing_policy", np.int64), ("trailing_activation_pct", np.float64), ("trailing_distance_pct", np.float64),
    ("chandelier_atr_multiple", np.float64),
    # loss limits
    ("max_daily_loss_pct", np.float64), ("max_drawdown_pct", np.float64), ("warning_threshold_ratio", np.float64),
    ("reset_offset_ms", np.int64),
    # breakers
    ("volatility_multiplier", np.float64), ("max_consecutive_losses", np.int64), ("breaker_daily_loss_pct", np.float64),
    ("api_error_threshold", np.int64), ("api_error_window_ms", np.int64), ("cooldown_ms", np.int64),
    ("half_open_size_ratio", np.float64), ("latching_volatility", np.bool_), ("latching_loss", np.bool_),
    ("latching_system", np.bool_),
    # fills (engine.simulation.fills.FillModel)
    ("commission_rate", np.float64), ("slippage_rate", np.float64),
], align=True)

MARKET_DTYPE = np.dtype([
    ("lot_step", np.float64), ("tick_size", np.float64), ("min_qty", np.float64), ("min_notional", np.float64),
    ("lot_decimals", np.int64), ("tick_decimals", np.int64),
    ("name_rank", np.int64),  # position of the symbol in name order (close-all and end-of-data order)
], align=True)

ACCOUNT_DTYPE = np.dtype([
    # portfolio
    ("cash", np.float64), ("fees_paid", np.float64), ("realized_pnl", np.float64),
    ("open_count", np.int64), ("next_seq", np.int64), ("rejected_orders", np.int64),
    # decision core
    ("trading_state", np.int64), ("halted_by_limit", np.bool_), ("watch_volatility", np.bool_),
    ("bar_close_ms", np.int64),  # close of the bar being simulated: its fills count in its trading day
    # loss limits (engine.core.account_limits.AccountLimits)
    ("peak_equity", np.float64), ("has_peak", np.bool_), ("day_key", np.int64), ("has_day", np.bool_),
    ("day_start_equity", np.float64), ("has_day_start", np.bool_), ("mark_equity", np.float64),
    ("has_mark", np.bool_), ("warned_daily", np.bool_), ("warned_drawdown", np.bool_),
    ("latched_daily_ms", np.int64), ("latched_drawdown_ms", np.int64),  # NO_TIME: not latched
    # the latest limit check (DecisionCore.last_limit_check)
    ("has_check", np.bool_), ("check_action", np.int64), ("check_breached", np.int64),
    ("check_daily_loss_pct", np.float64), ("check_drawdown_pct", np.float64), ("check_equity", np.float64),
    # breakers' shared inputs (engine.core.breaker.CircuitBreaker)
    ("consecutive_losses", np.int64), ("breaker_daily_loss_pct", np.float64),
    ("emergency_phase", np.int64), ("emergency_since_ms", np.int64),
    ("api_error_count", np.int64), ("api_error_head", np.int64),
], align=True)

BREAKER_DTYPE = np.dtype([
    ("state", np.int64), ("value", np.float64), ("threshold", np.float64), ("since_ms", np.int64),
    ("normal_since_ms", np.int64), ("resume_after_ms", np.int64), ("confirmations", np.int64),
], align=True)

POSITION_DTYPE = np.dtype([
    # the open position (engine.core.portfolio.OpenPosition)
    ("open", np.bool_), ("side", np.int64), ("quantity", np.float64), ("entry_price", np.float64),
    ("entry_ms", np.int64), ("entry_fee", np.float64), ("stop_price", np.float64),
    ("initial_stop_price", np.float64), ("take_profit_price", np.float64), ("has_take_profit", np.bool_),
    ("best_price", np.float64), ("trailing_active", np.bool_), ("bars_held", np.int64), ("last_price", np.float64),
    ("seq", np.int64),  # opening order: equity sums positions in it, as the ledger's dict does
    ("entry_bar", np.int64), ("entry_bound", np.int64),  # the filled entry's decision bar and size bound
    # the decided, not yet filled or rejected order (DecisionCore.pending and the simulated queue)
    ("pending", np.bool_), ("order_kind", np.int64), ("order_side", np.int64), ("order_quantity", np.float64),
    ("order_stop", np.float64), ("order_target", np.float64), ("order_has_target", np.bool_),
    ("order_bar", np.int64), ("order_bound", np.int64), ("order_reason", np.int64),
    ("order_daily_loss_pct", np.float64), ("order_drawdown_pct", np.float64), ("order_breached", np.int64),
], align=True)

BAR_DTYPE = np.dtype([
    ("index", np.int64), ("open_ms", np.int64), ("close_ms", np.int64),
    ("open", np.float64), ("high", np.float64), ("low", np.float64), ("close", np.float64),
    ("atr", np.float64), ("normal_volatility", np.float64), ("volatility_ratio", np.float64),
    ("volatility_alarm", np.bool_), ("entry_direction", np.int64), ("entry_strength", np.float64),
    ("entry_multiplier", np.float64), ("exit_long", np.bool_), ("exit_short", np.bool_),
    ("swing_low", np.float64), ("swing_high", np.float64),
], align=True)

API_ERROR_CAPACITY = 4096
"""API error times kept for the system breaker's sliding window (the oldest are dropped beyond it)."""


def config_record(risk: RiskConfig, breaker: BreakerConfig, backtest: BacktestConfig) -> np.ndarray:
    """The one-row configuration record of the settings (times converted as the Python core rounds them)."""
    record = np.zeros(1, CONFIG_DTYPE)
    row = record[0]
    row["risk_per_trade_pct"] = risk.risk_per_trade_percent
    row["max_position_size_pct"] = risk.max_position_size_percent
    row["max_notional_pct"] = risk.max_notional_percent
    row["stop_atr_multiple"] = risk.stop_atr_multiple
    row["trailing_policy"] = POLICY_CODES[risk.trailing_policy]
    row["trailing_activation_pct"] = risk.trailing_stop_activation_percent
    row["trailing_distance_pct"] = risk.trailing_stop_distance_percent
    row["chandelier_atr_multiple"] = risk.chandelier_atr_multiple
    row["max_daily_loss_pct"] = risk.max_daily_loss_percent
    row["max_drawdown_pct"] = risk.max_drawdown_percent
    row["warning_threshold_ratio"] = risk.warning_threshold_ratio
    row["reset_offset_ms"] = reset_offset_ms(risk.daily_reset_utc)
    row["volatility_multiplier"] = breaker.volatility_multiplier
    row["max_consecutive_losses"] = breaker.max_consecutive_losses
    row["breaker_daily_loss_pct"] = breaker.daily_loss_percent
    row["api_error_threshold"] = breaker.api_error_threshold
    row["api_error_window_ms"] = round(breaker.api_error_window_s * 1000)
    row["cooldown_ms"] = round(breaker.cooldown_s * 1000)
    row["half_open_size_ratio"] = breaker.half_open_size_ratio
    row["latching_volatility"] = "volatility" in breaker.latching
    row["latching_loss"] = "loss" in breaker.latching
    row["latching_system"] = "system" in breaker.latching
    row["commission_rate"] = backtest.commission_percent / 100.0
    row["slippage_rate"] = backtest.slippage_percent / 100.0
    return record


def with_take_profit(config: np.ndarray, take_profit_atr_multiple: float) -> np.ndarray:
    """``config`` with the strategy's take-profit distance (ATR multiples; 0 = no target)."""
    config[0]["take_profit_atr_multiple"] = take_profit_atr_multiple
    return config


def market_records(limits: Sequence[MarketLimits]) -> np.ndarray:
    """One market row per symbol, in the given order (the order of the core's symbol indices)."""
    records = np.zeros(len(limits), MARKET_DTYPE)
    ranks = {symbol: rank for rank, symbol in enumerate(sorted(m.symbol for m in limits))}
    for row, market in zip(records, limits, strict=True):
        row["lot_step"] = market.lot_step
        row["tick_size"] = market.tick_size
        row["min_qty"] = market.min_qty
        row["min_notional"] = market.min_notional
        row["lot_decimals"] = step_decimals(market.lot_step)
        row["tick_decimals"] = step_decimals(market.tick_size)
        row["name_rank"] = ranks[market.symbol]
    return records


def new_account(cash: float) -> np.ndarray:
    """A fresh account: ``cash`` quote currency, flat, ACTIVE, no limit check yet, breakers closed."""
    account = np.zeros(1, ACCOUNT_DTYPE)
    row = account[0]
    row["cash"] = cash
    row["latched_daily_ms"] = NO_TIME
    row["latched_drawdown_ms"] = NO_TIME
    row["emergency_since_ms"] = NO_TIME
    row["bar_close_ms"] = NO_TIME
    for name in ("peak_equity", "day_start_equity", "mark_equity", "check_daily_loss_pct", "check_drawdown_pct",
                 "check_equity"):
        row[name] = np.nan
    return account


def new_breakers(breaker: BreakerConfig) -> np.ndarray:
    """The volatility, loss and system breakers, closed (rows :data:`VOLATILITY`, :data:`LOSS`, :data:`SYSTEM`)."""
    breakers = np.zeros(3, BREAKER_DTYPE)
    breakers["since_ms"] = NO_TIME
    breakers["normal_since_ms"] = NO_TIME
    breakers["resume_after_ms"] = NO_TIME
    breakers["threshold"] = (breaker.volatility_multiplier, 1.0, float(breaker.api_error_threshold))
    return breakers


def new_positions(count: int) -> np.ndarray:
    """``count`` flat symbols with nothing pending."""
    positions = np.zeros(count, POSITION_DTYPE)
    for name in ("order_target", "take_profit_price", "order_daily_loss_pct", "order_drawdown_pct"):
        positions[name] = np.nan
    positions["entry_bar"] = -1
    positions["order_bar"] = -1
    return positions
