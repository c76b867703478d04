"""Provides the compiled twins of ``engine.domain.precision``: step rounding and the limits' boundary rule.

The same float operations in the same order as the Python helpers, so every result is bit-identical.
Python's ``round(x, decimals)`` is correctly rounded (via a decimal string); :func:`round_decimals` gets
the same double without strings: the exact product ``x * 10**d``, rounded half to even, divided once by the
exact power of ten (see there).
"""

from __future__ import annotations

import numpy as np

from engine.core.jit import njit

STEP_EPS = 1e-9  # engine.domain.precision.STEP_EPS
QUOTIENT_ULPS = 8 * 2.220446049250313e-16  # engine.domain.precision._QUOTIENT_ULPS (8 * sys.float_info.epsilon)
LIMIT_REL_EPS = 1e-9  # engine.domain.precision.LIMIT_REL_EPS

POWERS_OF_TEN = np.array([10.0**k for k in range(23)])  # exact doubles up to 1e22


TWO_POW_53 = 9007199254740992.0
SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's split of a double into two 26-bit halves


@njit()
def _exact_product(a: float, b: float) -> tuple[float, float]:
    """``(p, e)`` with ``p = fl(a * b)`` and ``p + e == a * b`` exactly (Dekker's two-product, no FMA needed)."""
    p = a * b
    t = SPLITTER * a
    a_high = t - (t - a)
    a_low = a - a_high
    t = SPLITTER * b
    b_high = t - (t - b)
    b_low = b - b_high
    e = ((a_high * b_high - p) + a_high * b_low + a_low * b_high) + a_low * b_low
    return p, e


@njit()
def round_decimals(value: float, decimals: int) -> float:
    """Python's ``round(value, decimals)``: the nearest multiple of ``10**-decimals`` (ties to even), as a double.

    ``value * 10**d`` is taken exactly (``p + e``), rounded to an integer ``n``, and ``n / 10**d`` is one
    correctly rounded division: the double nearest to the decimal, as CPython returns. From 2**53 quanta up a
    double's spacing exceeds twice the quantum, so the nearest double to its rounding is the value itself.
    """
    scale = POWERS_OF_TEN[decimals]
    p, e = _exact_product(value, scale)
    if not abs(p) < TWO_POW_53:
        return value  # every double this large is within half a quantum of its rounding: it is its own result
    n = np.rint(p)
    rest = (p - n) + e
    if rest > 0.5 or (rest == 0.5 and n % 2.0 != 0.0):
        n += 1.0
    elif rest < -0.5 or (rest == -0.5 and n % 2.0 != 0.0):
        n -= 1.0
    return float(n / scale)


@njit()
def floor_to_step(value: float, step: float, decimals: int) -> float:
    """``engine.domain.precision.floor_to_step`` (``decimals`` = ``step_decimals(step)``)."""
    quotient = value / step
    steps = np.floor(quotient + (STEP_EPS + abs(quotient) * QUOTIENT_ULPS)) + 0.0  # a Python int: never -0.0
    return round_decimals(steps * step, decimals)


@njit()
def ceil_to_step(value: float, step: float, decimals: int) -> float:
    """``engine.domain.precision.ceil_to_step`` (``decimals`` = ``step_decimals(step)``)."""
    quotient = value / step
    steps = np.ceil(quotient - (STEP_EPS + abs(quotient) * QUOTIENT_ULPS)) + 0.0  # a Python int: never -0.0
    return round_decimals(steps * step, decimals)


@njit()
def reaches(value: float, limit: float) -> bool:
    """``engine.domain.precision.reaches``: ``value >= limit`` with ``LIMIT_REL_EPS`` relative tolerance; NaN never."""
    magnitude = abs(limit)
    return value >= limit - LIMIT_REL_EPS * (magnitude if magnitude > 1.0 else 1.0)


@njit()
def py_min(first: float, second: float) -> float:
    """Python's ``min(first, second)``: the first unless the second is smaller (NaN order included)."""
    return second if second < first else first


@njit()
def py_max(first: float, second: float) -> float:
    """Python's ``max(first, second)``: the first unless the second is larger (NaN order included)."""
    return second if second > first else first
