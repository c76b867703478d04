"""Provides the fault catalogue of the fake Binance server: the misbehaviours, their queue and canned replies.

A test injects a :class:`Fault` for the next request(s) to one endpoint; :class:`FaultQueue` hands it
out, and the server asks this module what to answer before handling (refusals that leave no trace)
or after handling (the exchange did the work, the client learns nothing or something useless). The
one-way replies copy what Binance and its load balancers really send. :class:`LateBookings` keeps the
orders Binance took but books only later (``LATE_VISIBILITY``).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import json
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.binance_shapes import INSUFFICIENT_BALANCE, ExchangeRejection

UNKNOWN_SEND_STATUS = (
    -1007,
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
)
"""Binance's reply (with HTTP 503) when its matching engine did not answer the API gateway in time."""


class FaultKind(enum.StrEnum):
    TIMEOUT = "timeout"  # hang before handling: the request has no effect
    TIMEOUT_AFTER_PROCESSING = "timeout_after_processing"  # handled (order booked), reply never arrives
    SERVER_ERROR = "server_error"  # HTTP 5xx with an HTML body, as a load balancer sends
    RATE_LIMITED = "rate_limited"  # HTTP 429, code -1003, Retry-After
    IP_BANNED = "ip_banned"  # HTTP 418, code -1003, Retry-After
    MALFORMED_JSON = "malformed_json"  # handled (order booked), then HTTP 200 with a truncated JSON body
    PARTIAL_FILL = "partial_fill"  # the next market order fills only ``fill_ratio`` and expires
    REJECT_INSUFFICIENT = "reject_insufficient"  # -2010 insufficient balance
    REJECT_FILTER = "reject_filter"  # -1013 filter failure
    UNKNOWN_AFTER_BOOKING = "unknown_after_booking"  # handled (order booked), then HTTP 503 with -1007
    EMPTY_OBJECT_REPLY = "empty_object_reply"  # handled (order booked), then HTTP 200 with ``{}``
    EMPTY_BODY_REPLY = "empty_body_reply"  # handled (order booked), then HTTP 200 with no body at all
    LATE_VISIBILITY = "late_visibility"  # HTTP 503 -1007 now; the order is booked ``visible_after_s`` later


REPLIES_AFTER_HANDLING = frozenset(
    {
        FaultKind.MALFORMED_JSON,
        FaultKind.UNKNOWN_AFTER_BOOKING,
        FaultKind.EMPTY_OBJECT_REPLY,
        FaultKind.EMPTY_BODY_REPLY,
    }
)
"""Kinds whose request is handled in full before the misleading reply is sent."""

DEFERRABLE_ENDPOINTS = frozenset({("POST", "/api/v3/order"), ("POST", "/api/v3/orderList/oco")})
"""Where ``LATE_VISIBILITY`` means something: only a new order (or OCO list) can turn up on the books later."""


@dataclass(frozen=True)
class Fault:
    """One misbehaviour; fields other than ``kind`` apply to the kinds that name them.

    Args:
        kind: what goes wrong.
        status: HTTP status of ``SERVER_ERROR``.
        retry_after_s: Retry-After header of ``RATE_LIMITED`` / ``IP_BANNED`` (None: no header).
        hang_s: how long ``TIMEOUT`` / ``TIMEOUT_AFTER_PROCESSING`` hold the reply back, in seconds.
        fill_ratio: the part of the order ``PARTIAL_FILL`` fills, a decimal string in [0, 1].
        visible_after_s: delay in seconds before a ``LATE_VISIBILITY`` order is booked.
    """

    kind: FaultKind
    status: int = 503
    retry_after_s: int | None = 1
    hang_s: float = 5.0
    fill_ratio: str = "0.5"
    visible_after_s: float = 2.0


@dataclass
class _Injected:
    fault: Fault
    remaining: int
    symbol: str | None = None


class FaultQueue:
    """The faults injected per endpoint, handed out first come first served."""

    def __init__(self) -> None:
        self._by_endpoint: dict[tuple[str, str], deque[_Injected]] = defaultdict(deque)

    def add(self, method: str, path: str, fault: Fault, times: int, market_id: str | None) -> None:
        """Queues ``fault`` for the next ``times`` requests to ``method path`` (for ``market_id`` only, if given)."""
        if fault.kind is FaultKind.LATE_VISIBILITY and (method, path) not in DEFERRABLE_ENDPOINTS:
            # Fail at inject time: a late "booking" of a query or a cancel would silently do nothing.
            raise ValueError(f"LATE_VISIBILITY applies to {sorted(DEFERRABLE_ENDPOINTS)}, not {method} {path}")
        self._by_endpoint[(method, path)].append(_Injected(fault, times, market_id))

    def take(self, method: str, path: str, params: dict[str, str]) -> Fault | None:
        """The fault this request meets, if any; uses up one of its ``times``."""
        queue = self._by_endpoint.get((method, path))
        if not queue:
            return None
        for injected in queue:
            if injected.symbol is None or injected.symbol == params.get("symbol"):
                injected.remaining -= 1
                if injected.remaining <= 0:
                    queue.remove(injected)
                return injected.fault
        return None

    def clear(self) -> None:
        self._by_endpoint.clear()


class LateBookings:
    """Orders the exchange accepted but books only later, each on a timer of the running loop.

    Args:
        book: books one order from the original request parameters (the exchange's ``new_order``);
            an :class:`ExchangeRejection` it raises then is dropped, as Binance drops such an order
            without telling anyone, and kept in :attr:`dropped` for the test to inspect.
    """

    def __init__(self, book: Callable[[dict[str, str]], object]) -> None:
        self._book = book
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._keys = itertools.count()
        self.dropped: list[tuple[dict[str, str], ExchangeRejection]] = []

    def __len__(self) -> int:
        return len(self._timers)

    def schedule(self, params: dict[str, str], delay_s: float) -> None:
        """Books ``params`` in ``delay_s`` seconds, at the price and balances current then."""
        key = next(self._keys)
        self._timers[key] = asyncio.get_running_loop().call_later(delay_s, self._run, key, dict(params))

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _run(self, key: int, params: dict[str, str]) -> None:
        del self._timers[key]
        try:
            self._book(params)
        except ExchangeRejection as rejection:
            self.dropped.append((params, rejection))


def error_response(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    """Binance's JSON error body ``{"code": ..., "msg": ...}`` with the given HTTP status."""
    return web.Response(
        status=status, text=json.dumps({"code": code, "msg": msg}), content_type="application/json", headers=headers
    )


def unknown_send_status() -> web.Response:
    return error_response(503, *UNKNOWN_SEND_STATUS)


def refusal_before_handling(fault: Fault) -> web.Response | None:
    """The reply of a fault that refuses the request untouched; None when ``fault`` is not such a kind.

    ``TIMEOUT`` is not answered here: hanging needs the server's shutdown signal.
    """
    kind = fault.kind
    if kind is FaultKind.SERVER_ERROR:
        return web.Response(status=fault.status, text="<html>Bad Gateway</html>", content_type="text/html")
    if kind in (FaultKind.RATE_LIMITED, FaultKind.IP_BANNED):
        status = 429 if kind is FaultKind.RATE_LIMITED else 418
        headers = {} if fault.retry_after_s is None else {"Retry-After": str(fault.retry_after_s)}
        message = "Too much request weight used; current limit is 6000 request weight per 1 MINUTE."
        return error_response(status, -1003, message, headers)
    if kind is FaultKind.REJECT_INSUFFICIENT:
        return error_response(400, *INSUFFICIENT_BALANCE)
    if kind is FaultKind.REJECT_FILTER:
        return error_response(400, -1013, "Filter failure: LOT_SIZE")
    return None


def reply_after_handling(fault: Fault) -> web.Response:
    """The misleading reply sent instead of the real one once the request was handled."""
    kind = fault.kind
    if kind is FaultKind.MALFORMED_JSON:
        return web.Response(status=200, text='{"symbol": "BTCUSDT", "orderId": 12', content_type="application/json")
    if kind is FaultKind.UNKNOWN_AFTER_BOOKING:
        return unknown_send_status()
    if kind is FaultKind.EMPTY_OBJECT_REPLY:
        return web.Response(status=200, text="{}", content_type="application/json")
    if kind is FaultKind.EMPTY_BODY_REPLY:
        return web.Response(status=200, body=b"", content_type="application/json")
    raise ValueError(f"{kind} is not answered after handling")
