"""Provides the loss measure of the account limits and the equity levels at which it crosses a threshold.

The levels bound :meth:`engine.core.account_limits.AccountLimits.check_unless_quiet`'s quiet band: each is a point at
which the exact predicate ``reaches(loss_pct(reference, equity), threshold_pct)`` was evaluated.
"""

from __future__ import annotations

import math
from functools import lru_cache

from engine.domain.precision import LIMIT_REL_EPS, reaches


def loss_pct(reference: float, equity: float) -> float:
    """Loss of ``equity`` below ``reference`` (> 0) in pct of ``reference``, floored at 0."""
    loss = (reference - equity) / reference * 100.0
    return loss if loss > 0.0 else 0.0  # max(0.0, loss) without the builtin call: the same value, NaN -> 0.0


_SEARCH_STEPS = 64


def _boundary_guess(reference: float, threshold_pct: float) -> float:
    """Where ``reaches(loss_pct(reference, equity), threshold_pct)`` flips, up to rounding (a start point)."""
    effective = threshold_pct - LIMIT_REL_EPS * max(1.0, abs(threshold_pct))
    return reference * (1.0 - effective / 100.0)


@lru_cache(maxsize=64, typed=True)  # pure: the drawdown peak repeats across checks for days
def lowest_equity_not_reaching(reference: float, threshold_pct: float) -> float:
    """An equity level from which up ``loss_pct(reference, .)`` does not reach ``threshold_pct`` (inf: none)."""
    if reaches(0.0, threshold_pct):
        return math.inf  # the loss is never below the threshold
    level = _boundary_guess(reference, threshold_pct)
    nudge = reference * 1e-15  # a few ulps of the reference: the formula's rounding scale
    for _ in range(_SEARCH_STEPS):
        if level >= reference or not reaches(loss_pct(reference, level), threshold_pct):
            return min(level, reference)  # loss_pct(reference, reference) == 0: never reaches
        level += nudge
        nudge *= 2.0
    return reference


@lru_cache(maxsize=64, typed=True)  # pure: the drawdown peak repeats across checks for days
def highest_equity_reaching(reference: float, threshold_pct: float) -> float:
    """An equity level from which down ``loss_pct(reference, .)`` reaches ``threshold_pct`` (-inf: none)."""
    if reaches(0.0, threshold_pct):
        return math.inf
    level = _boundary_guess(reference, threshold_pct)
    nudge = reference * 1e-15  # a few ulps of the reference: the formula's rounding scale
    for _ in range(_SEARCH_STEPS):
        if reaches(loss_pct(reference, level), threshold_pct):
            return level
        level -= nudge
        nudge *= 2.0
    return -math.inf
