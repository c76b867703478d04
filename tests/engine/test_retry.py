"""Specification of call_with_retry: what is retried, how long it waits, and what it raises."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.errors import (
    ExchangeAuthException,
    ExchangeCallException,
    ExchangeUnavailableException,
    ExecutionException,
    InsufficientFundsException,
    OrderNotFoundException,
    OrderRejectedException,
    StopWouldTriggerException,
)
from engine.execution.ccxt_client import ThrottledError
from engine.execution.retry import RetryPolicy, call_with_retry, sanitize_reason

SIGNED_URL = (
    "binance GET http://127.0.0.1:5555/api/v3/account?timestamp=1795612462268&recvWindow=10000"
    "&signature=9806450747cf0ac2af39456c1e635507e7581d993240791a25df63e0b8c69bfa"
)

POLICY = RetryPolicy(max_attempts=4, attempt_timeout_s=0.2, base_delay_s=0.01, max_delay_s=0.05)


class UpperBound:
    """Jitter source that always picks the top of the range, so delays are predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def failing_then(failures: list[BaseException], result: Any = "ok") -> tuple[Callable[[], Awaitable[Any]], list[int]]:
    calls = [0]

    async def factory() -> Any:
        calls[0] += 1
        if calls[0] <= len(failures):
            raise failures[calls[0] - 1]
        return result

    return factory, calls


async def run(factory: Callable[[], Awaitable[Any]], policy: RetryPolicy = POLICY, **kwargs: Any) -> Any:
    errors: list[ExchangeCallException] = kwargs.pop("errors", [])
    return await call_with_retry(
        "test_op BTC/USDT",
        factory,
        policy=policy,
        on_error=errors.append,
        sleep=kwargs.pop("sleep", SleepRecorder()),
        rng=kwargs.pop("rng", UpperBound()),
        **kwargs,
    )


@pytest.mark.parametrize(
    "transient",
    [
        ccxt.RequestTimeout("binance GET x"),
        ccxt.ExchangeNotAvailable("binance 503"),
        ccxt.DDoSProtection("binance 429"),
        ccxt.RateLimitExceeded("binance -1003"),
        ccxt.BadResponse("binance malformed JSON"),
        TimeoutError(),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_transient_failures_are_retried_until_success(transient: BaseException) -> None:
    factory, calls = failing_then([transient, transient])
    errors: list[ExchangeCallException] = []
    successes: list[int] = []

    result = await run(factory, errors=errors, on_success=lambda: successes.append(1))

    assert result == "ok"
    assert calls[0] == 3
    assert len(errors) == 2
    assert all(isinstance(e, ExchangeUnavailableException) for e in errors)
    assert successes == [1]


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (ccxt.InsufficientFunds("binance Account has insufficient balance"), InsufficientFundsException),
        (ccxt.InvalidOrder("binance Filter failure: LOT_SIZE"), OrderRejectedException),
        (ccxt.BadRequest("binance -1013 Filter failure: NOTIONAL"), OrderRejectedException),
        (ccxt.OrderImmediatelyFillable("binance Stop price would trigger immediately."), StopWouldTriggerException),
        (ccxt.OrderNotFound("binance Order does not exist."), OrderNotFoundException),
        (ccxt.AuthenticationError("binance Invalid API-key"), ExchangeAuthException),
        (ccxt.PermissionDenied("binance not permitted"), ExchangeAuthException),
        (ccxt.ExchangeError("binance something else"), ExchangeCallException),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else type(value).__name__,
)
async def test_exchange_refusals_are_not_retried_and_raise_a_named_engine_error(
    refusal: BaseException, expected: type[ExchangeCallException]
) -> None:
    factory, calls = failing_then([refusal])
    errors: list[ExchangeCallException] = []

    with pytest.raises(expected) as raised:
        await run(factory, errors=errors)

    assert calls[0] == 1
    assert len(errors) == 1
    assert type(raised.value) is expected
    assert isinstance(raised.value, ExecutionException)
    assert raised.value.operation == "test_op BTC/USDT"
    assert type(refusal).__name__ in raised.value.reason


async def test_gives_up_after_max_attempts_with_exchange_unavailable() -> None:
    factory, calls = failing_then([ccxt.ExchangeNotAvailable("503")] * 10)
    errors: list[ExchangeCallException] = []

    with pytest.raises(ExchangeUnavailableException) as raised:
        await run(factory, errors=errors)

    assert calls[0] == POLICY.max_attempts
    assert len(errors) == POLICY.max_attempts
    assert raised.value.attempts == POLICY.max_attempts


async def test_a_hung_attempt_is_cut_by_the_attempt_timeout_and_retried() -> None:
    calls = [0]

    async def factory() -> str:
        calls[0] += 1
        if calls[0] == 1:
            await asyncio.Event().wait()  # never answers
        return "late but fine"

    errors: list[ExchangeCallException] = []
    assert await run(factory, errors=errors) == "late but fine"
    assert calls[0] == 2
    assert "TimeoutError" in errors[0].reason


async def test_backoff_doubles_from_the_base_and_is_capped_at_max_delay() -> None:
    factory, _ = failing_then([ccxt.RequestTimeout("t")] * 5)
    sleep = SleepRecorder()
    policy = RetryPolicy(max_attempts=6, attempt_timeout_s=1, base_delay_s=0.01, max_delay_s=0.05)

    await run(factory, policy, sleep=sleep)

    assert sleep.delays == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05])


@settings(max_examples=50, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0.001, max_value=5),
    cap=st.floats(min_value=0.001, max_value=60),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_full_jitter_delay_lies_between_zero_and_the_capped_exponential(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    import random

    policy = RetryPolicy(base_delay_s=base, max_delay_s=cap)
    delay = policy.backoff_s(attempt, random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2 ** (attempt - 1))


async def test_retry_after_from_the_server_is_honoured_over_a_shorter_backoff() -> None:
    factory, calls = failing_then([ThrottledError("binance 429 rate limited", retry_after_s=0.3)])
    sleep = SleepRecorder()

    assert await run(factory, sleep=sleep) == "ok"

    assert calls[0] == 2
    assert sleep.delays == [0.3]


async def test_retry_after_longer_than_we_sit_out_ends_the_call_at_once() -> None:
    factory, calls = failing_then([ThrottledError("binance 418 IP banned", retry_after_s=3600)])
    sleep = SleepRecorder()
    errors: list[ExchangeCallException] = []

    with pytest.raises(ExchangeUnavailableException, match="3600"):
        await run(factory, sleep=sleep, errors=errors)

    assert calls[0] == 1
    assert sleep.delays == []
    assert len(errors) == 1


async def test_errors_never_carry_query_strings_or_signatures() -> None:
    factory, _ = failing_then([ccxt.RequestTimeout(SIGNED_URL)] * 10)
    errors: list[ExchangeCallException] = []

    with pytest.raises(ExchangeUnavailableException) as raised:
        await run(factory, errors=errors)

    for text in [str(raised.value), *(str(e) for e in errors)]:
        assert "signature" not in text
        assert "timestamp=" not in text
        assert "/api/v3/account" in text  # the path stays: it says what failed
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_sanitize_reason_redacts_a_signature_outside_a_url() -> None:
    assert "9806450747" not in sanitize_reason("body timestamp=1&signature=9806450747cf0ac2")


async def test_bugs_propagate_unchanged_and_are_not_counted_as_api_errors() -> None:
    factory, calls = failing_then([KeyError("symbol")])
    errors: list[ExchangeCallException] = []

    with pytest.raises(KeyError):
        await run(factory, errors=errors)

    assert calls[0] == 1
    assert errors == []


async def test_cancellation_is_not_swallowed() -> None:
    started = asyncio.Event()

    async def factory() -> None:
        started.set()
        await asyncio.Event().wait()

    policy = RetryPolicy(max_attempts=3, attempt_timeout_s=30)
    task = asyncio.create_task(run(factory, policy))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_policy_from_settings_counts_the_first_attempt_and_spans_two_requests() -> None:
    policy = RetryPolicy.from_settings(request_timeout_s=10, max_retries=5, base_delay_s=0.5, max_delay_s=30)
    assert policy.max_attempts == 6
    assert policy.attempt_timeout_s > 2 * 10


def test_policy_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
