"""Provides the factory for the ccxt async Binance spot client the broker and live feed share.

The client is ccxt's own ``binance`` class with two narrow hardenings, both at points ccxt offers for
overriding:

* HTTP 418/429 raise :class:`ThrottledError` (a ``ccxt.DDoSProtection``) that carries the server's
  ``Retry-After`` in seconds, so the retry loop can honour it without reading shared mutable
  "last response headers" that concurrent calls overwrite.
* A body that claims to be JSON but does not parse raises ``ccxt.BadResponse`` instead of being handed
  to ccxt's parsers as a string (which fails later with an unrelated ``TypeError``, or worse, parses
  into an empty order).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import ccxt  # type: ignore[import-untyped]
import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]

_CCXT_WIRE_LOGGER = "ccxt.base.exchange"


class _DropWireDumps(logging.Filter):
    """Rejects ccxt's DEBUG request/response dumps: they hold X-MBX-APIKEY and signed URLs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_WIRE_FILTER = _DropWireDumps()


def _silence_wire_dumps() -> None:
    # A filter, not just a level: a later global DEBUG setting (basicConfig, pytest's caplog) lowers
    # effective levels, but a logger's own filters still run for every record it emits.
    wire_logger = logging.getLogger(_CCXT_WIRE_LOGGER)
    if _WIRE_FILTER not in wire_logger.filters:
        wire_logger.addFilter(_WIRE_FILTER)


class ThrottledError(ccxt.DDoSProtection):  # type: ignore[misc]
    """Binance answered 429 (rate limit) or 418 (IP ban); ``retry_after_s`` is its Retry-After, if sent."""

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _retry_after_s(headers: dict[str, Any] | None) -> float | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None  # an HTTP-date form; Binance sends seconds
    return None


class HardenedBinance(ccxt_async.binance):  # type: ignore[misc]
    """ccxt's binance with typed throttling and strict JSON (see the module docstring)."""

    def handle_errors(
        self,
        code: int,
        reason: str,
        url: str,
        method: str,
        headers: dict[str, Any],
        body: str,
        response: Any,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        if code in (418, 429):
            kind = "IP banned" if code == 418 else "rate limited"
            raise ThrottledError(f"binance {code} {kind}: {body[:200]}", _retry_after_s(headers))
        return super().handle_errors(code, reason, url, method, headers, body, response, request_headers, request_body)

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        result = await super().fetch(url, method, headers, body)
        if isinstance(result, str) and result.strip():
            # Every Binance REST endpoint answers JSON; text here means a truncated or garbled body.
            raise ccxt.BadResponse(f"binance {method} {urlsplit(url).path} returned a malformed JSON body")
        return result


def rewrite_api_hosts(urls_api: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Every ``urls["api"]`` entry with its scheme and host replaced by ``base_url`` (paths kept).

    Binance's spot, sapi and futures paths do not collide, so one loopback server can serve them all.
    """
    target = urlsplit(base_url)
    rewritten: dict[str, Any] = {}
    for name, url in urls_api.items():
        if isinstance(url, str):
            parts = urlsplit(url)
            rewritten[name] = parts._replace(scheme=target.scheme, netloc=target.netloc).geturl()
        else:
            rewritten[name] = url
    return rewritten


def create_binance_client(
    api_key: str | None = None,
    api_secret: str | None = None,
    *,
    timeout_s: float,
    base_url: str | None = None,
    enable_rate_limit: bool = True,
) -> HardenedBinance:
    """A ccxt async Binance client for spot trading only.

    Args:
        api_key: plain key string (``SecretStr.get_secret_value()``) or None for public data only.
        api_secret: plain secret string or None.
        timeout_s: per-request HTTP timeout in seconds (ccxt's own, below the retry loop's).
        base_url: when given (tests, a proxy), every API host is rewritten to it, e.g.
            ``http://127.0.0.1:8765``.
        enable_rate_limit: ccxt's client-side throttle; turn off only against a loopback fake.

    Returns:
        The client; the caller owns it and must ``await client.close()``.
    """
    _silence_wire_dumps()
    config: dict[str, Any] = {
        "enableRateLimit": enable_rate_limit,
        "timeout": int(timeout_s * 1000),
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
            "adjustForTimeDifference": False,
        },
    }
    if api_key is not None:
        config["apiKey"] = api_key
    if api_secret is not None:
        config["secret"] = api_secret
    client = HardenedBinance(config)
    if base_url is not None:
        client.urls["api"] = rewrite_api_hosts(client.urls["api"], base_url)
    return client
