"""Specification of the shared exponential backoff curve."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from engine.domain.backoff import exponential_ceiling_s


def test_doubles_from_the_base_after_each_failure() -> None:
    assert [exponential_ceiling_s(n, 0.5, 100.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_is_capped_at_the_max_delay() -> None:
    assert exponential_ceiling_s(20, 0.5, 30.0) == 30.0


@given(attempts=st.integers(min_value=-5, max_value=10_000))
def test_stays_finite_and_within_base_and_cap_for_any_attempt_count(attempts: int) -> None:
    delay = exponential_ceiling_s(attempts, 0.5, 30.0)
    assert math.isfinite(delay) and 0.5 <= delay <= 30.0
