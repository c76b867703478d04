"""Provides money rounding to exchange steps (lot step, tick size) and toleranced limit comparisons.

Binary floats cannot represent most decimal steps (``0.1 + 0.2 != 0.3``), so ``value / step`` for a
value that *is* a whole number of steps can come out as ``2.9999999999999996``. Flooring that would
lose a whole step. Every helper here therefore works in whole steps: it divides, nudges by a named
tolerance (``STEP_EPS`` steps plus a few ulps of the quotient), takes floor or ceil, multiplies back and
rounds to the step's own number of decimals so the result prints and compares as the exchange expects.

These helpers are shared by the risk manager and the execution layer; they use plain floats because
they sit on the per-bar decision path.
"""

from __future__ import annotations

import math
import sys
from decimal import Decimal
from functools import lru_cache

STEP_EPS = 1e-9
"""Tolerance in units of one step: a value this close to a step boundary counts as on it."""

_QUOTIENT_ULPS = 8 * sys.float_info.epsilon
"""Relative float noise allowed in ``value / step`` (large quotients carry absolute error too)."""

LIMIT_REL_EPS = 1e-9
"""Relative tolerance of every "has the value reached the limit" test (see :func:`reaches`)."""


@lru_cache(maxsize=1024)
def step_decimals(step: float) -> int:
    """Number of decimals a multiple of ``step`` needs, e.g. 0.001 -> 3, 1e-8 -> 8, 0.5 -> 1, 10 -> 0.

    Raises:
        ValueError: if ``step`` is not a finite positive number.
    """
    if not (step > 0.0 and math.isfinite(step)):
        raise ValueError(f"step must be a finite positive number, got {step!r}")
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite steps only, checked above
    return max(0, -exponent)


def _tolerance(quotient: float) -> float:
    return STEP_EPS + abs(quotient) * _QUOTIENT_ULPS


def floor_to_step(value: float, step: float) -> float:
    """Largest multiple of ``step`` that is <= ``value`` (within ``STEP_EPS`` steps).

    Used for quantities (never buy more than sized) and for long stops (further from entry).
    """
    quotient = value / step
    steps = math.floor(quotient + (STEP_EPS + abs(quotient) * _QUOTIENT_ULPS))  # _tolerance, inlined
    return round(steps * step, step_decimals(step))


def ceil_to_step(value: float, step: float) -> float:
    """Smallest multiple of ``step`` that is >= ``value`` (within ``STEP_EPS`` steps)."""
    quotient = value / step
    steps = math.ceil(quotient - (STEP_EPS + abs(quotient) * _QUOTIENT_ULPS))  # _tolerance, inlined
    return round(steps * step, step_decimals(step))


def nearest_step(value: float, step: float) -> float:
    """Nearest multiple of ``step``; exact halves round up (towards +infinity)."""
    quotient = value / step
    steps = math.floor(quotient + 0.5 + _tolerance(quotient))
    return round(steps * step, step_decimals(step))


def is_step_multiple(value: float, step: float) -> bool:
    """Whether ``value`` is a whole number of steps, within ``STEP_EPS`` steps."""
    quotient = value / step
    return abs(quotient - round(quotient)) <= _tolerance(quotient)


def reaches(value: float, limit: float) -> bool:
    """Whether ``value`` has reached ``limit`` (>=), with ``LIMIT_REL_EPS`` relative tolerance.

    This is the single boundary rule of risk limits and breakers: a limit is the first value that is
    *not* allowed, so a value exactly at the limit trips. The tolerance makes a value computed as
    ``4.999999999999999`` for a true 5 count as 5. NaN never reaches anything.
    """
    magnitude = abs(limit)
    # max(1.0, magnitude) without the builtin call (a hot path): the same value, NaN included (-> 1.0).
    return value >= limit - LIMIT_REL_EPS * (magnitude if magnitude > 1.0 else 1.0)
