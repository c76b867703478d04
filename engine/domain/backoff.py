"""Provides the exponential backoff curve shared by every retry loop (exchange calls, Telegram outbox)."""

from __future__ import annotations

# 2**60 times any sane base is far beyond any cap; bounding the exponent keeps the float finite.
MAX_BACKOFF_EXPONENT = 60


def exponential_ceiling_s(failed_attempts: int, base_delay_s: float, max_delay_s: float) -> float:
    """Un-jittered wait after the ``failed_attempts``-th consecutive failure (1-based): base * 2**(n-1), capped."""
    exponent = min(max(0, failed_attempts - 1), MAX_BACKOFF_EXPONENT)
    return min(max_delay_s, base_delay_s * 2.0**exponent)
