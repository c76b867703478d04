"""Provides the volume rules of the entry decision: breakout volume, institutional activity and divergence.

:func:`engine.analysis.strategy.fold_entries_and_exits` calls :func:`volume_rule_effects` on the bars where the
signal, timeframe and strength rules would enter (the *candidates*); it is the rules' only implementation.
Each rule reads the volume frame's value at the candidate bar only (its windows look back, never forward):

- **Breakout volume** (``breakout_volume_rule``): every entry of the signal engine is a squeeze release, a
  breakout out of a low-volatility range, and a breakout on thin volume is the classic false one.
  ``"relative_volume"``: the entry bar's relative volume (volume / median of the previous ``volume_lookback``
  bars) must be >= ``breakout_min_relative_volume``; ``"volume_breakout"``: the volume analyser must see a
  breakout in the signal's direction on the entry bar (close beyond its range on heavy volume);
  ``"ignore"``: no requirement. A candidate failing the rule is vetoed (unknown volume in warm-up fails).
- **Institutional activity against the signal** (``institutional_against_action``): the latest volume spike
  within ``institutional_memory_bars`` bars was a selling bar (against a long) or a buying bar (against a short).
- **Divergence against the signal** (``divergence_against_action``): the latest price/volume divergence within
  ``divergence_memory_bars`` bars is bearish (against a long) or bullish (against a short).

The last two act by ``"veto"`` (no entry), ``"downsize"`` (entry strength times ``*_downsize_ratio``; the risk
manager scales the risk budget by the strength, after the ``min_entry_strength`` check, so a downsized entry
still enters, smaller) or ``"ignore"``. Every rule that holds against a candidate sets its bit in the per-bar
code (``PreparedSymbol.volume_rule_effect``): all veto bits that apply, and downsize bits only on candidates no
rule vetoed (those that really enter smaller). :func:`volume_rule_counts` counts them over the bars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import numpy.typing as npt

from engine.domain.models import FloatArray

if TYPE_CHECKING:
    from engine.analysis.strategy import PreparedSymbol, StrategyParams
    from engine.analysis.volume import VolumeFrame

Int8Array = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]

BreakoutVolumeRule = Literal["relative_volume", "volume_breakout", "ignore"]
AgainstAction = Literal["veto", "downsize", "ignore"]
BREAKOUT_VOLUME_RULES: tuple[str, ...] = get_args(BreakoutVolumeRule)
AGAINST_ACTIONS: tuple[str, ...] = get_args(AgainstAction)

# Bits of PreparedSymbol.volume_rule_effect (0: no volume rule acted on the bar).
VETOED_BREAKOUT_VOLUME = 1
VETOED_INSTITUTIONAL = 2
VETOED_DIVERGENCE = 4
DOWNSIZED_INSTITUTIONAL = 8
DOWNSIZED_DIVERGENCE = 16
CANDIDATE = 32  # the signal, timeframe and strength rules would enter here (before the volume rules)
VETO_BITS = VETOED_BREAKOUT_VOLUME | VETOED_INSTITUTIONAL | VETOED_DIVERGENCE
DOWNSIZE_BITS = DOWNSIZED_INSTITUTIONAL | DOWNSIZED_DIVERGENCE

_COUNTED: dict[str, int] = {
    "vetoed_breakout_volume": VETOED_BREAKOUT_VOLUME,
    "vetoed_institutional": VETOED_INSTITUTIONAL,
    "vetoed_divergence": VETOED_DIVERGENCE,
    "downsized_institutional": DOWNSIZED_INSTITUTIONAL,
    "downsized_divergence": DOWNSIZED_DIVERGENCE,
}
DOWNSIZE_RULES: dict[str, int] = {"institutional": DOWNSIZED_INSTITUTIONAL, "divergence": DOWNSIZED_DIVERGENCE}
_REASONS: dict[int, str] = {
    VETOED_BREAKOUT_VOLUME: "volume: breakout without volume, entry vetoed",
    VETOED_INSTITUTIONAL: "volume: institutional activity against the signal, entry vetoed",
    VETOED_DIVERGENCE: "volume: divergence against the signal, entry vetoed",
    DOWNSIZED_INSTITUTIONAL: "volume: institutional activity against the signal, entry downsized",
    DOWNSIZED_DIVERGENCE: "volume: divergence against the signal, entry downsized",
}


def validate_volume_rule_params(params: StrategyParams) -> None:
    """Raise one ValueError naming the first StrategyParams volume-rule field out of its range."""
    choices = (
        ("breakout_volume_rule", BREAKOUT_VOLUME_RULES),
        ("institutional_against_action", AGAINST_ACTIONS),
        ("divergence_against_action", AGAINST_ACTIONS),
    )
    for name, allowed in choices:
        value = getattr(params, name)
        if value not in allowed:
            raise ValueError(f"StrategyParams.{name} must be one of {', '.join(allowed)}; got {value!r}")
    if not (np.isfinite(params.breakout_min_relative_volume) and params.breakout_min_relative_volume > 0):
        raise ValueError(
            f"StrategyParams.breakout_min_relative_volume must be > 0, got {params.breakout_min_relative_volume}"
        )
    for name in ("institutional_downsize_ratio", "divergence_downsize_ratio"):
        value = getattr(params, name)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"StrategyParams.{name} must be a ratio in (0, 1], got {value}")
    for name in ("institutional_memory_bars", "divergence_memory_bars"):
        value = getattr(params, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"StrategyParams.{name} must be an integer >= 1, got {value!r}")


def volume_rule_effects(
    params: StrategyParams, candidate_sign: Int8Array, volume: VolumeFrame
) -> tuple[Int8Array, FloatArray]:
    """The volume rules on arrays of any length (aligned with ``volume``).

    Args:
        params: the rule settings (see the module docstring).
        candidate_sign: +1 a long candidate, -1 a short candidate, 0 no candidate, per bar.
        volume: the volume frame (its ``recent_*`` memories set from the same params by the Strategy).

    Returns:
        (effect code per bar, bit set of this module, 0 off candidates; strength factor per bar, 1 where no
        downsizing applies).
    """
    sign = np.asarray(candidate_sign, dtype=np.int8)
    candidate = sign != 0
    effect = np.where(candidate, CANDIDATE, 0).astype(np.int8)
    vetoed = _breakout_without_volume(params, sign, volume) & candidate
    effect |= np.where(vetoed, VETOED_BREAKOUT_VOLUME, 0).astype(np.int8)
    against_rules = (
        (params.institutional_against_action, volume.recent_spike_direction, params.institutional_downsize_ratio,
         VETOED_INSTITUTIONAL, DOWNSIZED_INSTITUTIONAL),
        (params.divergence_against_action, volume.recent_divergence_direction, params.divergence_downsize_ratio,
         VETOED_DIVERGENCE, DOWNSIZED_DIVERGENCE),
    )
    downsizing: list[tuple[BoolArray, float, int]] = []
    for action, direction, ratio, veto_bit, downsize_bit in against_rules:
        if action == "ignore":
            continue
        against = candidate & (np.asarray(direction) == -sign)
        if action == "veto":
            effect |= np.where(against, veto_bit, 0).astype(np.int8)
        else:
            downsizing.append((against, ratio, downsize_bit))
    entering = (effect & VETO_BITS) == 0
    factor = np.ones(len(sign))
    for against, ratio, downsize_bit in downsizing:
        applied = against & entering
        effect |= np.where(applied, downsize_bit, 0).astype(np.int8)
        factor = np.where(applied, factor * ratio, factor)
    return effect, factor


def _breakout_without_volume(params: StrategyParams, sign: Int8Array, volume: VolumeFrame) -> BoolArray:
    if params.breakout_volume_rule == "relative_volume":
        with np.errstate(invalid="ignore"):
            heavy = np.asarray(volume.relative_volume) >= params.breakout_min_relative_volume
        return np.asarray(~heavy, dtype=np.bool_)  # NaN (warm-up) compares False: unconfirmed
    if params.breakout_volume_rule == "volume_breakout":
        return np.asarray(np.asarray(volume.breakout_direction) != sign, dtype=np.bool_)
    return np.zeros(len(sign), dtype=np.bool_)


def volume_rule_counts(prepared: PreparedSymbol, start_ms: int | None = None) -> dict[str, int]:
    """Entry signals vetoed and downsized by each volume rule, over the bars opened at or after ``start_ms``.

    Keys: ``candidates`` (bars where the other entry rules would enter), one ``vetoed_<rule>`` /
    ``downsized_<rule>`` per rule (a bar two rules veto counts for both), ``vetoed_any`` and
    ``downsized_any`` (distinct bars). Reads only ``volume_rule_effect`` and the open times, so it works on
    the backtester's compacted symbols too.
    """
    codes = np.asarray(prepared.volume_rule_effect)
    if start_ms is not None:
        codes = codes[int(np.searchsorted(np.asarray(prepared.candles.open_time_ms), start_ms, "left")) :]
    counts = {"candidates": int(np.count_nonzero(codes & CANDIDATE))}
    counts.update({name: int(np.count_nonzero(codes & bit)) for name, bit in _COUNTED.items()})
    counts["vetoed_any"] = int(np.count_nonzero(codes & VETO_BITS))
    counts["downsized_any"] = int(np.count_nonzero(codes & DOWNSIZE_BITS))
    return counts


def volume_rule_reasons(code: int) -> tuple[str, ...]:
    """Human-readable text of one bar's volume rule code (empty when no rule acted)."""
    return tuple(text for bit, text in _REASONS.items() if code & bit)
