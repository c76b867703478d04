"""Provides trailing-stop policies (percent, ATR chandelier, swing) and the never-loosening update.

A trailing stop follows the best price reached since entry (the *extreme*: highest high for a long,
lowest low for a short) and only ever moves in the position's favour. Order of work per bar, which the
caller owns: first test the bar against the stop set on the previous bar, then call
:func:`update_trailing_stop` with the bar's extreme, so a stop never trails a price it was set from.

Rounding: a candidate stop is rounded to the tick *away from the market* (down for a long, up for a
short), the same rule as the initial stop, so rounding can only make a stop looser by less than one tick
and never pushes it across the price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from engine.config import RiskConfig
from engine.domain.models import MarketLimits, PositionSide
from engine.domain.precision import LIMIT_REL_EPS, STEP_EPS, ceil_to_step, floor_to_step, reaches

NAN = math.nan


class TrailingPolicy(Protocol):
    """Computes a raw (unrounded) trailing-stop candidate; NaN means "no candidate this bar"."""

    def candidate(
        self, side: PositionSide, entry_price: float, extreme_price: float, price: float, atr: float, swing: float
    ) -> float: ...


@dataclass(frozen=True, slots=True)
class PercentTrailing:
    """Trails ``distance_pct`` behind the extreme once the extreme is ``activation_pct`` past entry.

    Activation is inclusive: a gain of exactly ``activation_pct`` activates (see ``precision.reaches``).
    """

    activation_pct: float = 1.0
    distance_pct: float = 0.5

    def candidate(
        self, side: PositionSide, entry_price: float, extreme_price: float, price: float, atr: float, swing: float
    ) -> float:
        if side is PositionSide.LONG:
            gain_pct = (extreme_price / entry_price - 1.0) * 100.0
            trail = extreme_price * (1.0 - self.distance_pct / 100.0)
        else:
            gain_pct = (1.0 - extreme_price / entry_price) * 100.0
            trail = extreme_price * (1.0 + self.distance_pct / 100.0)
        return trail if reaches(gain_pct, self.activation_pct) else NAN

    def quiet_extreme_bound(self, side: PositionSide, entry_price: float, candidate_bound: float) -> float:
        """An extreme price up to which (long; down to which, short) the candidate stays quiet.

        Quiet means NaN (not activated) or on the quiet side of ``candidate_bound`` (see
        :func:`quiet_candidate_bound`). Activation and the trail are both monotone in the extreme, so the
        bound is verified with :meth:`candidate` itself at one point and holds on its whole side.
        ``-inf`` (long) / ``+inf`` (short) when no such point was found.
        """
        is_long = side is PositionSide.LONG
        # Activation uses reaches(), which counts a gain within LIMIT_REL_EPS of the threshold as reached.
        activation_pct = self.activation_pct - LIMIT_REL_EPS * max(1.0, abs(self.activation_pct))
        if is_long:
            level = max(entry_price * (1.0 + activation_pct / 100.0),
                        candidate_bound / (1.0 - self.distance_pct / 100.0) if self.distance_pct < 100.0 else math.inf)
        else:
            level = min(entry_price * (1.0 - activation_pct / 100.0),
                        candidate_bound / (1.0 + self.distance_pct / 100.0))
        if not math.isfinite(level):
            return -math.inf if is_long else math.inf
        sign = 1.0 if is_long else -1.0
        nudge = abs(level) * 1e-15  # a few ulps: the formulas' rounding scale
        for _ in range(_BOUND_SEARCH_STEPS):
            raw = self.candidate(side, entry_price, level, NAN, NAN, NAN)
            if not (raw > candidate_bound if is_long else raw < candidate_bound):
                return level
            level -= sign * nudge
            nudge *= 2.0
        return -math.inf if is_long else math.inf


@dataclass(frozen=True, slots=True)
class ChandelierTrailing:
    """Chandelier exit: ``atr_multiple`` x ATR behind the extreme, active from entry."""

    atr_multiple: float = 3.0

    def candidate(
        self, side: PositionSide, entry_price: float, extreme_price: float, price: float, atr: float, swing: float
    ) -> float:
        if not (atr > 0.0 and math.isfinite(atr)):
            return NAN
        offset = self.atr_multiple * atr
        return extreme_price - offset if side is PositionSide.LONG else extreme_price + offset


@dataclass(frozen=True, slots=True)
class SwingTrailing:
    """Stop at the last confirmed swing low (long) or swing high (short); see :func:`swing_levels`.

    A swing level on the wrong side of the current price (e.g. a swing low above the price after a
    drop) is broken support, not a stop, and is ignored.
    """

    lookback: int = 5

    def candidate(
        self, side: PositionSide, entry_price: float, extreme_price: float, price: float, atr: float, swing: float
    ) -> float:
        if not math.isfinite(swing):
            return NAN
        if math.isfinite(price) and (swing >= price if side is PositionSide.LONG else swing <= price):
            return NAN
        return swing


def trailing_policy_from_config(config: RiskConfig) -> TrailingPolicy:
    """The policy named by ``config.trailing_policy`` with its configured parameters."""
    if config.trailing_policy == "percent":
        return PercentTrailing(config.trailing_stop_activation_percent, config.trailing_stop_distance_percent)
    if config.trailing_policy == "atr":
        return ChandelierTrailing(config.chandelier_atr_multiple)
    return SwingTrailing(config.swing_lookback)


@dataclass(frozen=True, slots=True)
class TrailingUpdate:
    """Result of one trailing update.

    Attributes:
        stop_price: the stop to use from now on (quote currency); equals the old stop unless ``moved``.
        moved: whether the stop tightened on this update.
        active: whether the policy produced a candidate at all (e.g. percent trailing activated).
    """

    stop_price: float
    moved: bool
    active: bool


def update_trailing_stop(
    policy: TrailingPolicy,
    side: PositionSide,
    entry_price: float,
    current_stop: float,
    extreme_price: float,
    limits: MarketLimits,
    *,
    price: float = NAN,
    atr: float = NAN,
    swing_price: float = NAN,
) -> TrailingUpdate:
    """Tighten ``current_stop`` towards the policy's candidate; never loosen it.

    Args:
        policy: the trailing policy.
        side: position side.
        entry_price: average entry price (quote currency).
        current_stop: the stop in force now (quote currency).
        extreme_price: highest high (long) / lowest low (short) since entry, including this bar.
        limits: market rules; the candidate is rounded to ``tick_size`` away from the market.
        price: last price (close of this bar); used by the swing policy, NaN if unknown.
        atr: current ATR in quote currency (chandelier policy).
        swing_price: last confirmed swing low (long) / swing high (short), NaN if none.

    Returns:
        The new stop; ``stop_price == current_stop`` exactly whenever the candidate is not tighter by
        more than ``STEP_EPS`` ticks, so the stop is monotone (non-decreasing for a long).
    """
    raw = policy.candidate(side, entry_price, extreme_price, price, atr, swing_price)
    if not math.isfinite(raw) or raw <= 0.0:
        return TrailingUpdate(current_stop, False, False)
    tightened = _tightened_stop(side, raw, current_stop, limits.tick_size)
    if tightened is not None:
        return TrailingUpdate(tightened, True, True)
    return TrailingUpdate(current_stop, False, True)


def _tightened_stop(side: PositionSide, raw: float, current_stop: float, tick: float) -> float | None:
    """The tick-rounded candidate if it tightens ``current_stop`` by more than ``STEP_EPS`` ticks, else None.

    For a finite positive ``raw`` this is monotone: a long is tightened by every raw above one that
    tightens, a short by every (positive) raw below one; :func:`quiet_candidate_bound` relies on it.
    """
    if side is PositionSide.LONG:
        candidate = floor_to_step(raw, tick)
        improvement = candidate - current_stop
    else:
        candidate = ceil_to_step(raw, tick)
        improvement = current_stop - candidate
    if candidate > 0.0 and improvement > tick * STEP_EPS:
        return candidate
    return None


_BOUND_SEARCH_STEPS = 64


def quiet_candidate_bound(side: PositionSide, current_stop: float, tick: float) -> float:
    """A raw candidate level that provably leaves ``current_stop`` as it is.

    Long: every raw candidate ``<= bound`` (and NaN) makes :func:`update_trailing_stop` return
    ``moved=False``; short: every raw candidate ``>= bound`` (and NaN). The bound is a point at which the
    exact rounding rule was evaluated and does not tighten, so by monotonicity (see ``_tightened_stop``)
    the whole side of it does not. ``-inf`` (long) / ``+inf`` (short) when no such point was found.
    """
    is_long = side is PositionSide.LONG
    sign = 1.0 if is_long else -1.0
    level = current_stop + sign * 0.5 * tick  # inside the current tick: floors/ceils back onto the stop
    nudge = 0.5 * tick
    for _ in range(_BOUND_SEARCH_STEPS):
        # A short's bound must be positive: the rule's "candidate > 0" side is not monotone with the rest.
        if (is_long or level > 0.0) and _tightened_stop(side, level, current_stop, tick) is None:
            return level
        level -= sign * nudge
        nudge *= 2.0
    return -math.inf * sign


@dataclass(frozen=True, slots=True)
class QuietTrail:
    """Bounds within which the trailing update provably leaves a stop as it is (see :func:`quiet_trail`).

    Attributes:
        key: ``(side, entry_price, current_stop, policy, tick_size)`` the bounds were computed for.
        candidate_bound: raw candidates ``<=`` it (long) / ``>=`` it (short), and NaN, do not move the stop.
        extreme_bound: when the policy's candidate depends on the extreme only (percent), extremes ``<=`` it
            (long) / ``>=`` it (short) do not move the stop, without computing the candidate; else None.
    """

    key: tuple[object, ...]
    candidate_bound: float
    extreme_bound: float | None


def quiet_trail(
    policy: TrailingPolicy, side: PositionSide, entry_price: float, current_stop: float, tick: float
) -> QuietTrail:
    """The quiet bounds of :func:`update_trailing_stop` for one stop state (recomputed when it changes)."""
    bound = quiet_candidate_bound(side, current_stop, tick)
    extreme_bound = None
    if isinstance(policy, PercentTrailing):
        extreme_bound = policy.quiet_extreme_bound(side, entry_price, bound)
    return QuietTrail((side, entry_price, current_stop, policy, tick), bound, extreme_bound)


class QuietTrails:
    """Per symbol, the :class:`QuietTrail` of its current stop state, recomputed only when that changes."""

    def __init__(self) -> None:
        self._by_symbol: dict[str, QuietTrail] = {}

    def get(
        self, symbol: str, policy: TrailingPolicy, side: PositionSide, entry_price: float, current_stop: float,
        tick: float,
    ) -> QuietTrail:
        key = (side, entry_price, current_stop, policy, tick)
        guard = self._by_symbol.get(symbol)
        if guard is None or guard.key != key:
            guard = self._by_symbol[symbol] = quiet_trail(policy, side, entry_price, current_stop, tick)
        return guard
