"""Specification of money rounding: whole exchange steps, no float drift, named tolerances."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.precision import (
    LIMIT_REL_EPS,
    ceil_to_step,
    floor_to_step,
    is_step_multiple,
    nearest_step,
    reaches,
    step_decimals,
)

STEPS = st.sampled_from([1e-8, 1e-6, 0.00001, 0.001, 0.01, 0.1, 0.5, 1.0, 10.0, 0.25])


def decimal_multiple(value: float, step: float, rounding: str) -> float:
    """Reference: the same rounding done in exact decimal arithmetic on the shortest decimal text."""
    d_value, d_step = Decimal(repr(value)), Decimal(repr(step))
    return float((d_value / d_step).to_integral_value(rounding=rounding) * d_step)


@pytest.mark.parametrize(
    ("step", "decimals"), [(1e-8, 8), (0.00001, 5), (0.001, 3), (0.01, 2), (0.5, 1), (1.0, 0), (10.0, 0)]
)
def test_step_decimals_counts_the_step_digits(step: float, decimals: int) -> None:
    assert step_decimals(step) == decimals


@pytest.mark.parametrize("step", [0.0, -0.1, float("nan"), float("inf")])
def test_step_decimals_rejects_a_step_that_is_not_finite_and_positive(step: float) -> None:
    with pytest.raises(ValueError, match="step"):
        step_decimals(step)


def test_floor_keeps_a_value_that_float_arithmetic_puts_just_under_a_step() -> None:
    drifted = 0.1 + 0.2  # 0.30000000000000004
    assert floor_to_step(drifted, 0.1) == 0.3
    assert floor_to_step(0.3, 0.1) == 0.3  # 0.3 / 0.1 == 2.9999999999999996
    assert floor_to_step(1.0 - 0.9, 0.1) == 0.1  # 0.09999999999999998


def test_floor_drops_a_real_fraction_of_a_step() -> None:
    assert floor_to_step(0.12345678, 0.001) == 0.123
    assert floor_to_step(0.0999, 0.1) == 0.0


def test_ceil_and_nearest_round_the_other_ways() -> None:
    assert ceil_to_step(0.1201, 0.01) == 0.13
    assert ceil_to_step(0.1 + 0.2, 0.1) == 0.3
    assert nearest_step(0.125, 0.01) == 0.13
    assert nearest_step(0.1249, 0.01) == 0.12


@settings(max_examples=200)
@given(units=st.integers(min_value=-10**9, max_value=10**9), step=STEPS)
def test_a_whole_number_of_steps_is_unchanged_by_floor_and_ceil(units: int, step: float) -> None:
    value = float(Decimal(units) * Decimal(repr(step)))
    assert floor_to_step(value, step) == value
    assert ceil_to_step(value, step) == value
    assert is_step_multiple(value, step)


@settings(max_examples=200)
@given(value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), step=STEPS)
def test_floor_and_ceil_match_exact_decimal_arithmetic(value: float, step: float) -> None:
    expected_floor = decimal_multiple(value, step, ROUND_FLOOR)
    expected_ceil = decimal_multiple(value, step, ROUND_CEILING)
    floored, ceiled = floor_to_step(value, step), ceil_to_step(value, step)
    # Within the documented tolerance a value may count as sitting on the boundary above/below it.
    assert floored in (expected_floor, expected_ceil)
    assert ceiled in (expected_floor, expected_ceil)
    assert floored <= value + abs(value) * 1e-12 + step * 1e-9
    assert ceiled >= value - abs(value) * 1e-12 - step * 1e-9
    assert is_step_multiple(floored, step) and is_step_multiple(ceiled, step)


def test_reaches_counts_a_value_at_the_limit_as_reached() -> None:
    assert reaches(5.0, 5.0)
    assert reaches(5.0 - LIMIT_REL_EPS, 5.0)  # float noise at the limit
    assert not reaches(4.99, 5.0)
    assert reaches(5.01, 5.0)
    assert not reaches(float("nan"), 5.0)
