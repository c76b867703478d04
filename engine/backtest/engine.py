"""Provides BacktestEngine: the one decision path run over history, with one shared equity for all symbols.

Each symbol is prepared once (``Strategy.prepare``) over its whole history up to ``end``; bars before
``start`` warm the indicators up but are never traded. The bars of all symbols are then merged on one
timeline and fed to :class:`engine.simulation.account.SimulatedAccount` (see :mod:`engine.backtest.loop`).
Positions still open after the last bar are closed at its close (exit kind ``end_of_data``).

``unattended=True`` (the default) empties the breaker's latching list: a latched breaker waits for a
person to resume it, which never happens in a backtest, so one loss streak would end all trading. The
choice is recorded in the result's assumptions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from engine.analysis.strategy import PreparedSymbol, Strategy, StrategyParams
from engine.analysis.volume_rules import volume_rule_counts
from engine.backtest.compact import compact_for_backtest
from engine.backtest.loop import CancelCheck, ProgressCallback, run_loop
from engine.backtest.markets import limits_for_symbols
from engine.backtest.metrics import compute_metrics
from engine.backtest.params import ParameterSet
from engine.backtest.result import BacktestResult
from engine.config import BacktestConfig, BreakerConfig, RiskConfig, Settings
from engine.core.decision import DecisionCore
from engine.core.portfolio import Portfolio
from engine.domain.errors import BacktestException
from engine.domain.models import Candles, MarketLimits
from engine.domain.timeframes import parse_timeframe
from engine.simulation.account import SimulatedAccount
from engine.simulation.fills import FillModel

TimeLike = int | str | datetime | None
CandleData = Mapping[str, Candles] | Candles | Iterable[Candles]


def to_ms(value: TimeLike) -> int | None:
    """UTC ms from ms, an ISO-8601 string (naive = UTC) or a datetime; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a time cannot be a bool")
    if isinstance(value, int):
        return value
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def as_candle_map(data: CandleData) -> dict[str, Candles]:
    if isinstance(data, Candles):
        return {data.symbol: data}
    if isinstance(data, Mapping):
        return {str(k): v for k, v in sorted(data.items())}
    return {c.symbol: c for c in sorted(data, key=lambda c: c.symbol)}


def _given(settings: Settings | None) -> Settings:
    assert settings is not None  # read above whenever a section was missing
    return settings


class BacktestEngine:
    """Backtests, optimisations, reports and comparisons over fixed candle data.

    Args:
        data: candles per symbol (a mapping, one ``Candles`` or several), one timeframe for all.
        strategy_params: the strategy's parameters (default: ``StrategyParams.from_settings``).
        settings: risk, breaker and backtest sections (default: ``Settings()``); ``risk``, ``breaker``
            and ``backtest`` override single sections.
        market_limits: lot/tick/minimum rules per symbol (default: :mod:`engine.backtest.markets`).
        unattended: empty the breaker latching list (see the module docstring).
    """

    def __init__(
        self,
        data: CandleData,
        strategy_params: StrategyParams | None = None,
        settings: Settings | None = None,
        *,
        risk: RiskConfig | None = None,
        breaker: BreakerConfig | None = None,
        backtest: BacktestConfig | None = None,
        market_limits: Mapping[str, MarketLimits] | None = None,
        unattended: bool = True,
    ) -> None:
        self.data = as_candle_map(data)
        if not self.data:
            raise BacktestException("no candle data")
        if settings is None and None in (strategy_params, risk, breaker, backtest):
            settings = Settings()  # read only when a section is missing: it parses the environment and files
        self.parameters = ParameterSet(
            strategy_params or StrategyParams.from_settings(_given(settings)),
            risk or _given(settings).risk,
            breaker or _given(settings).breaker,
        )
        self.backtest_config = backtest or _given(settings).backtest
        reference = {s: float(c.close[0]) for s, c in self.data.items() if len(c)}
        self.market_limits = limits_for_symbols(self.data, reference, market_limits)
        self.unattended = unattended

    @property
    def strategy_params(self) -> StrategyParams:
        return self.parameters.strategy

    # ------------------------------------------------------------------------------------------ runs
    def prepare(self, symbol: str, end_ms: int | None, parameters: ParameterSet | None = None) -> PreparedSymbol:
        """The symbol's per-bar inputs over its history before ``end_ms`` (warm-up included)."""
        chosen = parameters or self.parameters
        candles = self.data[symbol].between(None, end_ms)
        if len(candles) == 0:
            raise BacktestException(f"no candles of {symbol} before the end time")
        return Strategy(chosen.strategy, chosen.risk, chosen.breaker).prepare(candles)

    def run_backtest(
        self,
        start: TimeLike = None,
        end: TimeLike = None,
        symbols: Sequence[str] | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        skip_idle_bars: bool = True,
    ) -> BacktestResult:
        """Run the decision path over bars with open time in ``[start, end)``.

        Args:
            start / end: UTC bounds (ms, ISO string or datetime); None = all data.
            symbols: subset of the data's symbols (default: all), traded with one shared equity.
            overrides: named parameter changes for this run (see :mod:`engine.backtest.params`).
            progress: called with the done fraction in [0, 1] every few thousand bars (from this thread).
            cancel: polled as often; returning True raises ``BacktestCancelled``.
            skip_idle_bars: jump over bars that cannot act (identical results; False for verification).

        Raises:
            BacktestException: unknown symbol, no bars in the window or mixed timeframes.
        """
        start_ms, end_ms = to_ms(start), to_ms(end)
        chosen = sorted(symbols) if symbols else list(self.data)
        unknown = [s for s in chosen if s not in self.data]
        if unknown:
            raise BacktestException(f"no data for {', '.join(unknown)}; have {', '.join(self.data)}")
        parameters = self.parameters.with_overrides(overrides) if overrides else self.parameters
        # Compacted one by one: only one symbol's full analyser output is alive at a time.
        prepared = [
            compact_for_backtest(self.prepare(symbol, end_ms, parameters), parameters.risk) for symbol in chosen
        ]
        return self.simulate(
            prepared, start_ms, parameters, progress=progress, cancel=cancel, skip_idle_bars=skip_idle_bars
        )

    def simulate(
        self,
        prepared: Sequence[PreparedSymbol],
        start_ms: int | None,
        parameters: ParameterSet,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        skip_idle_bars: bool = True,
        on_account: Callable[[SimulatedAccount], None] | None = None,
    ) -> BacktestResult:
        """Run already prepared symbols through a fresh account (shared by ``run_backtest`` and adapters)."""
        breaker = parameters.breaker
        if self.unattended:
            breaker = breaker.model_copy(update={"latching": []})
        capital = self.backtest_config.initial_capital
        core = DecisionCore(
            parameters.risk,
            breaker,
            Portfolio(capital),
            self.market_limits,
            take_profit_atr_multiple=parameters.strategy.take_profit_atr_multiple,
        )
        fill_model = FillModel.from_config(self.backtest_config)
        sim = SimulatedAccount(core, fill_model, keep_fills=False, keep_events=False)
        if on_account is not None:
            on_account(sim)
        output = run_loop(prepared, sim, start_ms, progress=progress, cancel=cancel, skip_idle_bars=skip_idle_bars)
        if len(output.equity) == 0:
            raise BacktestException("no bars in the requested window")
        timeframe = prepared[0].candles.timeframe
        end_ms = int(output.time_ms[-1])
        if core.portfolio.positions:
            prices = {
                item.symbol: float(item.candles.close[output.last_bar[k]])
                for k, item in enumerate(prepared)
                if k in output.last_bar
            }
            sim.close_all_at(prices, end_ms)
            output.equity[-1] = core.portfolio.equity()
        bar_ms = parse_timeframe(timeframe)
        trades = tuple(sim.log.trades)
        metrics = compute_metrics(
            output.time_ms, output.equity, capital, [t.trade for t in trades], bar_ms, output.in_market
        )
        assumptions: dict[str, Any] = {
            "fills": fill_model.describe(),
            "unattended": self.unattended,
            "breaker_latching": list(breaker.latching),
            "end_of_data": "open positions closed at the last bar's close minus slippage",
            "market_limits": {
                s: {
                    "lot_step": m.lot_step,
                    "tick_size": m.tick_size,
                    "min_qty": m.min_qty,
                    "min_notional": m.min_notional,
                }
                for s, m in sorted(self.market_limits.items())
                if s in {p.symbol for p in prepared}
            },
            "initial_capital": capital,
        }
        return BacktestResult(
            symbols=tuple(item.symbol for item in prepared),
            timeframe=timeframe,
            start_ms=int(output.time_ms[0] - bar_ms),
            end_ms=end_ms,
            initial_capital=capital,
            params=parameters.flat(),
            assumptions=assumptions,
            trades=trades,
            equity_time_ms=output.time_ms,
            equity=output.equity,
            in_market=output.in_market,
            metrics=metrics,
            event_counts=dict(sorted(sim.log.event_counts.items())),
            rejected_orders=sim.log.rejected_orders,
            volume_signal_counts=_volume_signal_counts(prepared, int(output.time_ms[0] - bar_ms)),
        )

    # ------------------------------------------------------------------------------ optimise, report, compare
    def optimize_parameters(self, space: Mapping[str, Any], **options: Any) -> Any:
        """Grid/random search with an out-of-sample walk-forward split; see :func:`engine.backtest.optimize.optimize`.

        Returns:
            ``OptimizationReport`` (ranked rows, in- and out-of-sample metrics side by side).
        """
        from engine.backtest.optimize import optimize

        return optimize(self, space, **options)

    def generate_report(self, result: BacktestResult, path: str | None = None, title: str = "Backtest report") -> str:
        """The self-contained HTML report of ``result``; also written to ``path`` when given."""
        from engine.backtest.report import render_report

        text = render_report(result, self.data, title)
        if path is not None:
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
        return text

    def compare_strategies(
        self,
        variants: Mapping[str, Mapping[str, Any] | StrategyParams],
        start: TimeLike = None,
        end: TimeLike = None,
        symbols: Sequence[str] | None = None,
    ) -> dict[str, BacktestResult]:
        """Run several parameter variants on the same data and window (named overrides or whole params).

        Use :func:`engine.backtest.report.compare_table` on ``{name: result.metrics_dict()}`` to show them.
        """
        results: dict[str, BacktestResult] = {}
        for name, variant in variants.items():
            if isinstance(variant, StrategyParams):
                other = BacktestEngine(
                    self.data,
                    variant,
                    risk=self.parameters.risk,
                    breaker=self.parameters.breaker,
                    backtest=self.backtest_config,
                    market_limits=self.market_limits,
                    unattended=self.unattended,
                )
                results[name] = other.run_backtest(start, end, symbols)
            else:
                results[name] = self.run_backtest(start, end, symbols, overrides=variant)
        return results


def _volume_signal_counts(prepared: Sequence[PreparedSymbol], start_ms: int) -> dict[str, int]:
    """Entry signals vetoed / downsized by each volume rule from ``start_ms`` on, summed over the symbols."""
    totals: Counter[str] = Counter()
    for item in prepared:
        totals.update(volume_rule_counts(item, start_ms))
    return dict(sorted(totals.items()))
