"""Provides resolve_unknown_order: settle an order whose send outcome is unknown by asking, never by re-sending.

Binance says of a 5xx, a ``-1007`` or a lost reply: "execution status unknown; it could have been a
success". Worse, an order may become visible to queries only seconds later, and a client order id
is refused as a duplicate only while the first order is *open*: a filled market order's id can be
used again and buys a second time. So an unknown outcome is a state. It is resolved by looking the
client id up with backoff for a bounded window; only when the window has passed without a sighting
*and* the account shows no effect (the market's base asset unchanged since before the send, no trade
in the symbol since the send) is the order proven absent, and only then may it be sent again.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.domain.errors import ExchangeCallException
from engine.execution.broker import OrderAck
from engine.execution.retry import RandomSource

JITTER_LOW_RATIO = 0.5
"""Each wait is uniform in [JITTER_LOW_RATIO, 1] of its backoff step: spread, but never much shorter."""


@dataclass(frozen=True)
class Holding:
    """The base asset of one market as the account reports it (free and total, base units)."""

    free: float
    total: float


@dataclass(frozen=True)
class ResolutionPolicy:
    """How long an unknown outcome is looked up before absence may be concluded.

    Attributes:
        window_s: the lookups span at least this many seconds (the sum of the waits between them)
            before the order may be declared absent; longer than the exchange's visibility delay.
        first_delay_s: the first wait; each next one doubles, capped at ``max_delay_s``.
        max_delay_s: the longest single wait.
    """

    window_s: float = 10.0
    first_delay_s: float = 0.25
    max_delay_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("window_s", "first_delay_s", "max_delay_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ResolutionPolicy.{name} must be > 0, got {getattr(self, name)}")


class Outcome(enum.StrEnum):
    FOUND = "found"  # the exchange has the order: ``ack`` says what became of it
    ABSENT = "absent"  # proven never placed: it may be sent again
    UNKNOWN = "unknown"  # neither: keep the order as unknown and ask again later


@dataclass(frozen=True)
class Resolution:
    outcome: Outcome
    ack: OrderAck | None = None
    reason: str = ""


async def resolve_unknown_order(
    find: Callable[[], Awaitable[OrderAck | None]],
    holding: Callable[[], Awaitable[Holding]],
    trades_since_send: Callable[[], Awaitable[int]],
    *,
    before: Holding | None,
    policy: ResolutionPolicy,
    sleep: Callable[[float], Awaitable[None]],
    rng: RandomSource = random,
) -> Resolution:
    """Looks an order up until it is found, proven absent, or the window ends undecided.

    Args:
        find: one lookup by client id (None = the exchange does not know it now).
        holding: the market's base asset now.
        trades_since_send: how many trades the account made in the symbol since the send.
        before: the base asset just before the send, or None when unknown (after a restart), in
            which case only the trades can prove absence.
        policy: the window and backoff.
        sleep, rng: waiting and jitter (tests inject both).
    """
    waited, step, lookup_failed = 0.0, 0, False
    while True:
        try:
            ack = await find()
            lookup_failed = False
        except ExchangeCallException:
            ack, lookup_failed = None, True
        if ack is not None:
            return Resolution(Outcome.FOUND, ack)
        if waited >= policy.window_s:
            break
        delay = min(policy.max_delay_s, policy.first_delay_s * 2.0**step) * rng.uniform(JITTER_LOW_RATIO, 1.0)
        delay = max(min(delay, policy.window_s - waited), 0.0) or policy.first_delay_s
        await sleep(delay)
        waited += delay
        step += 1
    if lookup_failed:
        return Resolution(Outcome.UNKNOWN, reason="the exchange did not answer the last lookup")
    try:
        trades = await trades_since_send()
        now = await holding()
    except ExchangeCallException as exc:
        return Resolution(Outcome.UNKNOWN, reason=f"account not readable ({exc.reason})")
    if trades:
        return Resolution(Outcome.UNKNOWN, reason=f"{trades} trade(s) in the symbol since the send")
    if before is not None and now != before:
        return Resolution(Outcome.UNKNOWN, reason="the base balance changed since the send")
    return Resolution(Outcome.ABSENT, reason=f"not found in {waited:.1f} s of lookups; account unchanged")
