"""Provides ``CompiledCore``: the compiled state machine called once per closed bar (paper and live).

The same kernels as the backtest loop (``engine.core.loop``): :meth:`CompiledCore.step` is
``DecisionCore.on_bar`` for live trading (the broker executes the decisions and the driver reports fills
with :meth:`~CompiledCore.order_resolved` and :meth:`~CompiledCore.position_closed`);
:meth:`CompiledCore.simulate` is ``SimulatedAccount.process_bar`` (fills at the next open, stops and
targets inside the bar) for paper trading and for checking the loop bar by bar. The state lives in one
``engine.core.arena.Arena``, so a call passes a byte buffer instead of a dozen structured arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.analysis.strategy import PreparedSymbol
from engine.config import BacktestConfig, BreakerConfig, RiskConfig
from engine.core import commands
from engine.core.arena import Arena, decide_in, simulate_in
from engine.core.breakers import record_api_error, record_api_success
from engine.core.machine import emergency_exit, order_resolved
from engine.core.records import Outbox
from engine.core.simulated import close_all_at
from engine.core.state import (
    API_ERROR_CAPACITY,
    BAR_DTYPE,
    config_record,
    market_records,
    new_account,
    new_breakers,
    new_positions,
    with_take_profit,
)
from engine.domain.models import MarketLimits


class CompiledCore:
    """The compiled decision core of one account, driven one closed bar at a time.

    Args:
        limits: the market rules of every symbol the account trades; symbol ``k`` of the calls is ``limits[k]``.
        capital: the starting cash (quote currency).
    """

    def __init__(self, risk: RiskConfig, breaker: BreakerConfig, backtest: BacktestConfig,
                 take_profit_atr_multiple: float, limits: Sequence[MarketLimits], capital: float) -> None:
        outbox = Outbox(len(limits))
        self.arena = Arena({
            "config": with_take_profit(config_record(risk, breaker, backtest), take_profit_atr_multiple),
            "markets": market_records(limits), "account": new_account(capital), "breakers": new_breakers(breaker),
            "api_errors": np.zeros(API_ERROR_CAPACITY, np.int64), "positions": new_positions(len(limits)),
            "events": outbox.events, "decisions": outbox.decisions, "trades": outbox.trades, "counts": outbox.counts,
            "bar": np.zeros(1, BAR_DTYPE),
        })
        view = self.arena.view
        self.config, self.markets, self.account = view("config"), view("markets"), view("account")
        self.breakers, self.api_errors, self.positions = view("breakers"), view("api_errors"), view("positions")
        self.bar = view("bar")
        outbox.adopt(view("events"), view("decisions"), view("trades"), view("counts"))
        self.outbox = outbox
        self._buffer, self._layout = self.arena.buffer, self.arena.layout

    def load(self, prepared: PreparedSymbol, index: int, bar_ms: int) -> None:
        """Put closed bar ``index`` of ``prepared`` into the bar row."""
        candles = prepared.candles
        open_ms = int(candles.open_time_ms[index])
        self.bar[0] = (
            index, open_ms, open_ms + bar_ms, candles.open[index], candles.high[index], candles.low[index],
            candles.close[index], prepared.atr[index], prepared.normal_volatility[index],
            prepared.volatility_ratio[index], prepared.volatility_alarm[index], prepared.entry_direction[index],
            prepared.entry_strength[index], prepared.entry_multiplier[index], prepared.exit_long[index],
            prepared.exit_short[index], prepared.swing_low[index], prepared.swing_high[index],
        )

    def step(self, symbol: int) -> None:
        """Decide on the loaded bar of ``symbol`` (``DecisionCore.on_bar``); rows land in :attr:`outbox`."""
        decide_in(self._buffer, self._layout, symbol)

    def simulate(self, symbol: int) -> float:
        """Fill, test stops and decide on the loaded bar of ``symbol``; the equity checked at its close or NaN."""
        return float(simulate_in(self._buffer, self._layout, symbol))

    def order_resolved(self, symbol: int) -> None:
        """The broker filled or rejected the symbol's pending order."""
        order_resolved(self.positions, symbol)

    def emergency_exit(self, now_ms: int) -> bool:
        """Close everything at market and halt; False when an emergency exit already runs or is done."""
        box = self.outbox
        box.counts[:] = 0
        return bool(emergency_exit(self.markets, self.account, self.positions, box.events, box.decisions, box.counts,
                                   now_ms))

    def _empty_outbox(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        box = self.outbox
        box.counts[:] = 0
        return box.events, box.decisions, box.counts

    def halt(self, now_ms: int) -> None:
        """A person halts entries (open positions keep their stops)."""
        events, _, counts = self._empty_outbox()
        commands.halt(self.account, events, counts, now_ms)

    def resume(self, now_ms: int) -> None:
        """Allow entries again, lifting a latched loss-limit halt (the runtime authorises this first)."""
        events, _, counts = self._empty_outbox()
        commands.resume(self.config, self.account, self.positions, events, counts, now_ms)

    def clear_limit_halt(self, now_ms: int) -> None:
        """Lift a latched loss-limit halt only."""
        events, _, counts = self._empty_outbox()
        commands.clear_limit_halt(self.config, self.account, self.positions, events, counts, now_ms)

    def close_position(self, symbol: int, now_ms: int) -> bool:
        """Close one position at market (exit kind manual); False when flat or an order is pending."""
        _, decisions, counts = self._empty_outbox()
        return bool(commands.close_position(self.positions, decisions, counts, symbol, now_ms))

    def resume_breaker(self, name: int, now_ms: int) -> None:
        """Reset breaker ``name`` (``engine.core.state.VOLATILITY`` / ``LOSS`` / ``SYSTEM``) to closed."""
        events, _, counts = self._empty_outbox()
        commands.resume_breaker(self.account, self.breakers, events, counts, name, now_ms)

    def complete_emergency_exit(self, now_ms: int) -> None:
        events, _, counts = self._empty_outbox()
        commands.complete_emergency_exit(self.account, events, counts, now_ms)

    def clear_emergency_exit(self, now_ms: int) -> bool:
        """False while the emergency exit is still in progress (nothing changes)."""
        events, _, counts = self._empty_outbox()
        return bool(commands.clear_emergency_exit(self.account, events, counts, now_ms))

    def api_call(self, now_ms: int, ok: bool) -> None:
        """Feed one external call's outcome to the system breaker."""
        box = self.outbox
        box.counts[:] = 0
        if ok:
            record_api_success(self.config, self.account, self.breakers, self.api_errors, box.events, box.counts,
                               now_ms)
        else:
            record_api_error(self.config, self.account, self.breakers, self.api_errors, box.events, box.counts,
                             now_ms)

    def close_all_at(self, prices: np.ndarray, time_ms: int) -> None:
        """Close every open position at ``prices[symbol]`` minus slippage (end of data)."""
        box = self.outbox
        box.counts[:] = 0
        close_all_at(self.config, self.markets, self.account, self.breakers, self.positions, box.events, box.trades,
                     box.counts, prices, time_ms)

    @property
    def open_count(self) -> int:
        return int(self.account[0]["open_count"])
