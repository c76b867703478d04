"""Provides call_with_retry: per-attempt timeouts, backoff with full jitter, Retry-After, error classification.

What is retried: ccxt's ``OperationFailed`` branch, which holds every ``NetworkError``
(``RequestTimeout``, ``ExchangeNotAvailable``, ``DDoSProtection``, ``RateLimitExceeded``, ``InvalidNonce``)
plus ``BadResponse`` (a garbled body: the request's outcome is unknown, like a timeout), and
``asyncio.TimeoutError`` from our own per-attempt deadline. What is never retried: ccxt's
``ExchangeError`` branch (``InsufficientFunds``, ``InvalidOrder``, ``OrderNotFound``,
``AuthenticationError``, ...): the exchange understood the request and said no; asking again cannot
change the answer and, for orders, could only do harm.

Failures surface as :class:`engine.domain.errors.ExchangeCallException` subclasses whose text names the
operation and a reason with query strings removed: ccxt puts the full signed URL in its messages.
The module knows nothing about circuit breakers; callers pass ``on_error``/``on_success`` callbacks
(e.g. ``lambda exc: breaker.record_api_error(clock.now_ms())``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import ccxt  # type: ignore[import-untyped]

from engine.domain.backoff import exponential_ceiling_s
from engine.domain.errors import (
    ExchangeAuthException,
    ExchangeCallException,
    ExchangeUnavailableException,
    InsufficientFundsException,
    OrderNotFoundException,
    OrderRejectedException,
    StopWouldTriggerException,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

REQUESTS_PER_ATTEMPT = 2
"""An attempt may make two HTTP calls (look an order up, then send it), so its deadline spans two."""

_REASON_MAX_CHARS = 300
_QUERY_STRING = re.compile(r"\?[^\s\"']*")
_SIGNATURE = re.compile(r"signature=[0-9A-Za-z%]+")


class RandomSource(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one operation tries.

    Attributes:
        max_attempts: total attempts including the first (>= 1).
        attempt_timeout_s: deadline of one attempt in seconds (asyncio.timeout around it).
        base_delay_s: backoff base; attempt n waits uniform(0, min(max_delay_s, base * 2**(n-1))).
        max_delay_s: cap of the exponential backoff before jitter, seconds.
        max_retry_after_s: the longest server-requested wait (Retry-After) we sit out; a longer one
            (an IP ban) ends the call at once instead of blocking the engine.
    """

    max_attempts: int = 6
    attempt_timeout_s: float = 21.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("attempt_timeout_s", "base_delay_s", "max_delay_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RetryPolicy.{name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_settings(
        cls, request_timeout_s: float, max_retries: int, base_delay_s: float, max_delay_s: float
    ) -> RetryPolicy:
        """Policy from ``ExchangeConfig`` fields (``request_timeout_s``, ``max_retries``, ``retry_*``)."""
        return cls(
            max_attempts=max_retries + 1,
            attempt_timeout_s=request_timeout_s * REQUESTS_PER_ATTEMPT + 1.0,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
        )

    def backoff_s(self, attempt: int, rng: RandomSource) -> float:
        """Full-jitter delay in seconds after failed attempt number ``attempt`` (1-based)."""
        return rng.uniform(0.0, exponential_ceiling_s(attempt, self.base_delay_s, self.max_delay_s))


def sanitize_reason(text: str) -> str:
    """Error text safe to log: query strings (timestamps, signatures) removed, length capped."""
    cleaned = _SIGNATURE.sub("signature=<redacted>", _QUERY_STRING.sub("", text))
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > _REASON_MAX_CHARS:
        cleaned = cleaned[: _REASON_MAX_CHARS - 3] + "..."
    return cleaned or type(text).__name__


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` may be transient: a network-type ccxt error, a garbled reply, or a timeout."""
    if isinstance(exc, ccxt.ExchangeError):
        return False
    return isinstance(exc, ccxt.OperationFailed | TimeoutError)


def is_exchange_failure(exc: BaseException) -> bool:
    """Whether ``exc`` came from the exchange edge (ccxt or a timeout) rather than from a bug."""
    return isinstance(exc, ccxt.BaseError | TimeoutError)


def describe(exc: BaseException) -> str:
    """``ClassName: sanitized message`` for an exchange failure."""
    message = str(exc)
    if isinstance(exc, TimeoutError) and not message:
        message = "no reply within the attempt deadline"
    return f"{type(exc).__name__}: {sanitize_reason(message)}" if message else type(exc).__name__


def translate(operation: str, exc: BaseException, attempts: int) -> ExchangeCallException:
    """The engine exception for a failed exchange call (most specific ccxt class first)."""
    reason = describe(exc)
    if is_retryable(exc):
        return ExchangeUnavailableException(operation, reason, attempts)
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFundsException(operation, reason, attempts)
    if isinstance(exc, ccxt.OrderImmediatelyFillable):
        return StopWouldTriggerException(operation, reason, attempts)
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFoundException(operation, reason, attempts)
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return ExchangeAuthException(operation, reason, attempts)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.OperationRejected):
        return OrderRejectedException(operation, reason, attempts)
    return ExchangeCallException(operation, reason, attempts)


async def call_with_retry(
    operation_name: str,
    factory: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    on_error: Callable[[ExchangeCallException], None] | None = None,
    on_success: Callable[[], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: RandomSource = random,
) -> T:
    """Awaits ``factory()`` until it succeeds, retrying transient exchange failures.

    Args:
        operation_name: what is being done, used in errors and logs (no secrets), e.g.
            ``"fetch_ohlcv BTC/USDT 1h"``.
        factory: makes a fresh awaitable per attempt (a coroutine can be awaited only once).
        policy: attempts, deadlines and backoff.
        on_error: called once per failed attempt with the sanitized engine exception (so a
            system-health breaker can count it), retryable or not.
        on_success: called once when an attempt succeeds.
        sleep: awaited for backoff delays (tests pass a recorder).
        rng: source of jitter with ``uniform(a, b)``.

    Returns:
        What the successful attempt returned.

    Raises:
        ExchangeUnavailableException: transient failures outlasted ``policy.max_attempts`` or the
            server asked to wait longer than ``policy.max_retry_after_s``.
        ExchangeCallException: a subclass naming the refusal (insufficient funds, rejected order,
            unknown order, authentication) on the first non-retryable exchange error.
        Exception: any other error (a bug) propagates unchanged and is not counted.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            async with asyncio.timeout(policy.attempt_timeout_s):
                result = await factory()
        except Exception as exc:
            if not is_exchange_failure(exc):
                raise
            failure = translate(operation_name, exc, attempt)
            if on_error is not None:
                on_error(failure)
            if not is_retryable(exc):
                raise failure from None  # the ccxt cause carries the signed URL
            if attempt >= policy.max_attempts:
                raise failure from None
            delay = policy.backoff_s(attempt, rng)
            retry_after = getattr(exc, "retry_after_s", None)
            if retry_after is not None:
                if retry_after > policy.max_retry_after_s:
                    raise ExchangeUnavailableException(
                        operation_name,
                        f"{failure.reason} (server asks to wait {retry_after:g} s, "
                        f"longer than the {policy.max_retry_after_s:g} s we sit out)",
                        attempt,
                    ) from None
                delay = max(delay, float(retry_after))
            log.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.3f s",
                operation_name,
                attempt,
                policy.max_attempts,
                failure.reason,
                delay,
            )
            await sleep(delay)
            continue
        if on_success is not None:
            on_success()
        return result
