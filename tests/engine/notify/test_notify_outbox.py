"""Specification of the outbox policy: backoff grows and is capped, jitter stays in bounds, chats are spaced."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.notify.outbox import ChatRateLimiter, RetryPolicy


@settings(max_examples=80, deadline=None)
@given(
    st.integers(min_value=1, max_value=100),
    st.floats(min_value=0.01, max_value=10.0),
    st.floats(min_value=0.0, max_value=1.0),
    st.integers(min_value=0, max_value=2**32),
)
def test_backoff_delay_stays_within_jitter_of_the_capped_exponential(
    attempts: int, base_delay_s: float, jitter_ratio: float, seed: int
) -> None:
    policy = RetryPolicy(base_delay_s=base_delay_s, max_delay_s=60.0, jitter_ratio=jitter_ratio)
    expected = min(60.0, base_delay_s * 2.0 ** (attempts - 1))
    delay = policy.delay_s(attempts, random.Random(seed))
    assert expected * (1 - jitter_ratio) - 1e-9 <= delay <= expected * (1 + jitter_ratio) + 1e-9


def test_backoff_doubles_per_failure_without_jitter() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0, jitter_ratio=0.0)
    assert [policy.delay_s(n, random.Random(0)) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_spreads_clients_that_failed_together() -> None:
    policy = RetryPolicy(base_delay_s=1.0, jitter_ratio=0.2)
    rng = random.Random(1)
    assert len({round(policy.delay_s(3, rng), 6) for _ in range(20)}) > 10


def test_giving_up_happens_at_max_attempts_and_never_when_unlimited() -> None:
    assert not RetryPolicy(max_attempts=3).gives_up_after(2)
    assert RetryPolicy(max_attempts=3).gives_up_after(3)
    assert not RetryPolicy(max_attempts=0).gives_up_after(10_000)


class ManualMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_private_chat_gets_one_message_per_interval_and_groups_are_slower() -> None:
    monotonic = ManualMonotonic()
    limiter = ChatRateLimiter(private_interval_s=1.0, group_interval_s=3.0, monotonic=monotonic)
    assert [limiter.reserve(111) for _ in range(3)] == [0.0, 1.0, 2.0]
    assert [limiter.reserve(-222) for _ in range(3)] == [0.0, 3.0, 6.0]
    monotonic.now += 10.0
    assert limiter.reserve(111) == 0.0


def test_flood_pause_delays_the_next_message_to_that_chat_only() -> None:
    monotonic = ManualMonotonic()
    limiter = ChatRateLimiter(private_interval_s=1.0, group_interval_s=3.0, monotonic=monotonic)
    limiter.pause(111, 7.0)
    assert limiter.reserve(111) == 7.0
    assert limiter.reserve(112) == 0.0
