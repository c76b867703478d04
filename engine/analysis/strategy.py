"""Provides the strategy's vectorised half: every per-bar input of the one decision path, free of look-ahead.

``Strategy.prepare(candles)`` runs the signal engine, the multi-timeframe analyser and the volume analyser
over a whole history and folds them into entry and exit arrays. Every array value at bar t depends on bars
0..t only (each analyser is truncation-tested; so is this module), so the backtester can prepare once and
walk the bars, and the live runtime primes :class:`engine.analysis.strategy_live.IncrementalPreparer` with one
``prepare`` and then appends each closed bar's values in O(1). Both paths fold the analysers' outputs with
:func:`fold_entries_and_exits` and :func:`volatility_inputs`, so the rules below exist once. The stateful
half (positions, stops, risk, breakers) is :class:`engine.core.decision.DecisionCore`.

Entry rule at bar t (long; short mirrored and only when ``allow_short``):
    signal == LONG, multi-timeframe multiplier > 0 (not conflicting, at least one timeframe aligned),
    volume confirmation >= ``min_volume_confirmation`` when ``require_volume_confirmation``, and
    ``entry_strength >= min_entry_strength``, where
    ``entry_strength = signal_strength * (1 - volume_weight + volume_weight * volume_confirmation)``;
    then the volume rules of :mod:`engine.analysis.volume_rules`: the squeeze release (every entry is one) is vetoed
    without breakout volume (``breakout_volume_rule``, default: relative volume >= ``breakout_min_relative_volume``),
    and institutional selling (the latest spike within ``institutional_memory_bars``) or a bearish divergence
    (within ``divergence_memory_bars``) vetoes the entry or multiplies its strength by ``*_downsize_ratio``
    (``institutional_against_action`` / ``divergence_against_action``). A downsized strength may fall below
    ``min_entry_strength``: it sizes the position, the minimum judged the signal.
    The size multiplier passed to the risk manager is the timeframe multiplier (0.5 / 0.75 / 1.0).
Exit rule for an open long at bar t: the signal engine's ``exit_long`` condition holds, or (when
``exit_on_mtf_conflict``) the higher timeframes conflict with the long (``should_reduce_position``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.analysis import indicators as ind
from engine.analysis.mtf import MtfFrame, MultiTimeframeAnalyzer, TrendMethod
from engine.analysis.signals import SIGNAL_LONG, SIGNAL_SHORT, SignalEngine, SignalFrame, SignalParams
from engine.analysis.swing import swing_levels
from engine.analysis.volume import VolumeAnalyzer, VolumeFrame
from engine.analysis.volume_rules import (
    VETO_BITS,
    AgainstAction,
    BreakoutVolumeRule,
    validate_volume_rule_params,
    volume_rule_effects,
    volume_rule_reasons,
)
from engine.config import BreakerConfig, RiskConfig, Settings
from engine.domain.models import Candles, FloatArray, SignalType

Int8Array = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class StrategyParams:
    """Every tunable of the decision path that is not a risk or breaker setting.

    Keys of :meth:`with_overrides` may address the nested signal parameters as ``signal.<name>``.
    """

    signal: SignalParams = field(default_factory=SignalParams)
    mtf_timeframes: tuple[str, ...] = ("1h", "4h", "1d")
    mtf_trend_method: TrendMethod = "magic_trend_and_ema"
    mtf_ema_fast: int = 20
    mtf_ema_slow: int = 50
    volume_lookback: int = 50
    require_volume_confirmation: bool = False
    min_volume_confirmation: float = 0.5  # ratio in [0, 1]
    volume_weight: float = 0.25  # ratio in [0, 1] of entry strength that comes from volume
    min_entry_strength: float = 0.2  # ratio in [0, 1]
    # Volume rules (engine.analysis.volume_rules): breakout volume, institutional activity and divergence against.
    breakout_volume_rule: BreakoutVolumeRule = "relative_volume"
    breakout_min_relative_volume: float = 1.0  # entry-bar volume / median of the previous volume_lookback bars
    institutional_against_action: AgainstAction = "downsize"
    institutional_downsize_ratio: float = 0.5  # ratio in (0, 1] the entry strength is multiplied by
    institutional_memory_bars: int = 5  # bars (entry bar included) a volume spike counts
    divergence_against_action: AgainstAction = "downsize"
    divergence_downsize_ratio: float = 0.5  # ratio in (0, 1]
    divergence_memory_bars: int = 5  # bars (entry bar included) a divergence counts
    exit_on_mtf_conflict: bool = True
    take_profit_atr_multiple: float = 4.0  # 0 = no take-profit target
    allow_short: bool = False

    def __post_init__(self) -> None:
        for name in ("min_volume_confirmation", "volume_weight", "min_entry_strength"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"StrategyParams.{name} must be a ratio in [0, 1], got {value}")
        if self.take_profit_atr_multiple < 0:
            raise ValueError("StrategyParams.take_profit_atr_multiple must be >= 0")
        validate_volume_rule_params(self)

    def with_overrides(self, **changes: Any) -> StrategyParams:
        """A copy with some fields changed; ``signal.fade_bars=3`` style keys reach the signal params."""
        signal_changes = {k.removeprefix("signal."): v for k, v in changes.items() if k.startswith("signal.")}
        own = {k: v for k, v in changes.items() if not k.startswith("signal.")}
        if "mtf_timeframes" in own:
            own["mtf_timeframes"] = tuple(own["mtf_timeframes"])
        unknown = set(own) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown strategy parameter(s): {', '.join(sorted(unknown))}")
        signal = self.signal.with_overrides(**signal_changes) if signal_changes else self.signal
        return dataclasses.replace(self, signal=signal, **own)

    def flat(self) -> dict[str, Any]:
        """All parameters as one flat JSON-able mapping (signal ones prefixed ``signal.``)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "signal"}
        values["mtf_timeframes"] = list(self.mtf_timeframes)
        values.update({f"signal.{k}": v for k, v in dataclasses.asdict(self.signal).items()})
        return values

    @classmethod
    def from_settings(cls, settings: Settings) -> StrategyParams:
        return cls(mtf_timeframes=tuple(settings.mtf.timeframes), allow_short=settings.exchange.allow_short)


@dataclass(frozen=True, eq=False)
class PreparedSymbol:
    """Per-bar inputs of the decision path for one symbol (arrays aligned with ``candles``).

    Attributes:
        entry_direction: +1 enter long, -1 enter short, 0 nothing.
        entry_strength: ratio in [0, 1] passed to the risk manager as signal strength.
        entry_multiplier: multi-timeframe size multiplier for the entry direction.
        exit_long / exit_short: an open long (short) should be closed at this bar.
        atr: ATR(risk.atr_lookback) in quote currency, for stops and sizing.
        volatility_ratio: atr / median atr of the previous ``volatility_median_lookback`` bars (sizing).
        normal_volatility: median atr of the previous ``breaker.volatility_lookback`` bars (breaker).
        volatility_alarm: atr >= volatility_multiplier * normal_volatility (the breaker's trip condition).
        swing_low / swing_high: last confirmed swing levels (swing trailing).
        volume_rule_effect: bit code of the volume rules on the bar (``engine.analysis.volume_rules``: candidate,
            vetoed / downsized by which rule); all 0 when not given (strategies without the volume rules).
    """

    symbol: str
    candles: Candles
    signals: SignalFrame
    mtf: MtfFrame
    volume: VolumeFrame
    entry_direction: Int8Array
    entry_strength: FloatArray
    entry_multiplier: FloatArray
    exit_long: BoolArray
    exit_short: BoolArray
    atr: FloatArray
    volatility_ratio: FloatArray
    normal_volatility: FloatArray
    volatility_alarm: BoolArray
    swing_low: FloatArray
    swing_high: FloatArray
    volume_rule_effect: Int8Array = field(default_factory=lambda: np.zeros(0, dtype=np.int8))

    def __post_init__(self) -> None:
        if len(self.volume_rule_effect) == 0 and len(self.candles) > 0:
            object.__setattr__(self, "volume_rule_effect", np.zeros(len(self.candles), dtype=np.int8))

    def __len__(self) -> int:
        return len(self.candles)

    def reasons_at(self, index: int) -> tuple[str, ...]:
        """Human-readable reasons for bar ``index``'s signal, with the timeframe trends and volume rules."""
        trends = self.mtf.trends_at(index)
        arrows = " ".join(f"{tf}{'↑' if d > 0 else '↓' if d < 0 else '→'}" for tf, d in trends.items())
        volume = volume_rule_reasons(int(self.volume_rule_effect[index]))
        return (*self.signals.signal_at(index).reasons, f"trends {arrows}", *volume)


def _previous_median(values: FloatArray, lookback: int) -> FloatArray:
    """Median of the ``lookback`` values before each bar (NaN until enough non-NaN history)."""
    import pandas as pd  # type: ignore[import-untyped]

    shifted = pd.Series(values).shift(1)
    return np.asarray(shifted.rolling(lookback, min_periods=lookback).median(), dtype=np.float64)


class Strategy:
    """The vectorised half of the decision path; see the module docstring for the rules."""

    def __init__(self, params: StrategyParams, risk: RiskConfig, breaker: BreakerConfig) -> None:
        self.params = params
        self.risk_config = risk
        self.breaker_config = breaker
        self.signal_engine = SignalEngine(params.signal)
        self.volume_analyzer = VolumeAnalyzer(
            lookback_periods=params.volume_lookback,
            spike_memory=params.institutional_memory_bars,
            divergence_memory=params.divergence_memory_bars,
        )
        self._timeframes = params.mtf_timeframes

    def mtf_analyzer(self, base_timeframe: str) -> MultiTimeframeAnalyzer:
        """The multi-timeframe analyser for base candles of ``base_timeframe`` (timeframes below it are skipped)."""
        from engine.domain.timeframes import parse_timeframe

        base_ms = parse_timeframe(base_timeframe)
        usable = tuple(tf for tf in self._timeframes if parse_timeframe(tf) >= base_ms) or (base_timeframe,)
        return MultiTimeframeAnalyzer(
            timeframes=usable,
            trend_method=self.params.mtf_trend_method,
            ema_fast=self.params.mtf_ema_fast,
            ema_slow=self.params.mtf_ema_slow,
        )

    def prepare(self, candles: Candles, higher: dict[str, Candles] | None = None) -> PreparedSymbol:
        """Compute every per-bar input for ``candles`` (one symbol, oldest first)."""
        signals = self.signal_engine.compute(candles)
        mtf = self.mtf_analyzer(candles.timeframe).prepare(candles, higher)
        volume = self.volume_analyzer.analyze(candles)
        entries = fold_entries_and_exits(self.params, signals, mtf, volume)
        atr = ind.atr(candles.high, candles.low, candles.close, self.risk_config.atr_lookback)
        volatility = volatility_inputs(
            atr,
            _previous_median(atr, self.risk_config.volatility_median_lookback),
            _previous_median(atr, self.breaker_config.volatility_lookback),
            self.breaker_config,
        )
        swing_low, swing_high = swing_levels(candles.high, candles.low, self.risk_config.swing_lookback)
        return PreparedSymbol(
            symbol=candles.symbol,
            candles=candles,
            signals=signals,
            mtf=mtf,
            volume=volume,
            entry_direction=entries.direction,
            entry_strength=entries.strength,
            entry_multiplier=entries.multiplier,
            exit_long=entries.exit_long,
            exit_short=entries.exit_short,
            atr=atr,
            volatility_ratio=volatility.ratio,
            normal_volatility=volatility.normal,
            volatility_alarm=volatility.alarm,
            swing_low=swing_low,
            swing_high=swing_high,
            volume_rule_effect=entries.volume_rule_effect,
        )


@dataclass(frozen=True, eq=False)
class EntriesAndExits:
    """The entry and exit rules' outputs per bar (see :class:`PreparedSymbol` for each array)."""

    direction: Int8Array
    strength: FloatArray
    multiplier: FloatArray
    exit_long: BoolArray
    exit_short: BoolArray
    volume_rule_effect: Int8Array


def fold_entries_and_exits(
    params: StrategyParams, signals: SignalFrame, mtf: MtfFrame, volume: VolumeFrame
) -> EntriesAndExits:
    """The entry and exit rules of the module docstring, bar by bar.

    Frames of any length (the whole history in :meth:`Strategy.prepare`, the newest bar in
    :class:`engine.analysis.strategy_live.IncrementalPreparer`), aligned with each other: the rules exist once.
    """
    p = params
    long_conf = volume.confirmation_for(SignalType.LONG)
    short_conf = volume.confirmation_for(SignalType.SHORT)
    raw = signals.signal
    is_long = raw == SIGNAL_LONG
    is_short = (raw == SIGNAL_SHORT) & p.allow_short
    volume_conf = np.where(is_long, long_conf, np.where(is_short, short_conf, 0.0))
    volume_conf = np.nan_to_num(volume_conf, nan=0.0)
    strength = signals.strength * (1.0 - p.volume_weight + p.volume_weight * volume_conf)
    multiplier = np.where(is_long, mtf.long_multiplier, np.where(is_short, mtf.short_multiplier, 0.0))
    candidate = (is_long | is_short) & (multiplier > 0.0) & (strength >= p.min_entry_strength)
    if p.require_volume_confirmation:
        candidate &= volume_conf >= p.min_volume_confirmation
    candidate_sign = np.where(candidate, np.where(is_long, 1, -1), 0).astype(np.int8)
    effect, downsizing = volume_rule_effects(p, candidate_sign, volume)
    allowed = candidate & ((effect & VETO_BITS) == 0)
    strength = strength * downsizing
    exit_long = signals.exit_long.copy()
    exit_short = signals.exit_short.copy()
    if p.exit_on_mtf_conflict:
        exit_long |= mtf.long_conflicting
        exit_short |= mtf.short_conflicting
    return EntriesAndExits(
        direction=np.where(allowed, np.where(is_long, 1, -1), 0).astype(np.int8),
        strength=np.clip(np.where(allowed, strength, 0.0), 0.0, 1.0),
        multiplier=np.where(allowed, multiplier, 0.0),
        exit_long=exit_long,
        exit_short=exit_short,
        volume_rule_effect=effect,
    )


@dataclass(frozen=True, eq=False)
class VolatilityInputs:
    """Sizing and breaker inputs derived from the ATR (see :class:`PreparedSymbol`)."""

    ratio: FloatArray
    normal: FloatArray
    alarm: BoolArray


def volatility_inputs(
    atr: FloatArray, sizing_median: FloatArray, normal: FloatArray, breaker: BreakerConfig
) -> VolatilityInputs:
    """The volatility rules, bar by bar, for arrays of any length.

    Args:
        atr: ATR per bar (quote currency).
        sizing_median: median ATR of the ``risk.volatility_median_lookback`` bars before each bar (NaN: unknown).
        normal: median ATR of the ``breaker.volatility_lookback`` bars before each bar (NaN: unknown).
        breaker: gives the alarm's ``volatility_multiplier``.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = atr / sizing_median
        alarm = np.isfinite(normal) & (atr >= breaker.volatility_multiplier * normal)
    return VolatilityInputs(np.where(np.isfinite(ratio), ratio, 1.0), normal, alarm)
