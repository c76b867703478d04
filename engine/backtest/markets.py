"""Provides the default exchange trading rules (lot step, tick size, minimums) used by backtests.

Binance-like spot filters per symbol, kept in one place. A symbol not listed gets rules derived from its
price level (:func:`default_limits_for`), so that any imported file backtests with realistic rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from engine.domain.models import MarketLimits

# Binance spot LOT_SIZE / PRICE_FILTER / NOTIONAL filters (USDT pairs), as of 2025.
BINANCE_SPOT_LIMITS: dict[str, MarketLimits] = {
    "BTC/USDT": MarketLimits("BTC/USDT", lot_step=1e-5, tick_size=0.01, min_qty=1e-5, min_notional=5.0),
    "ETH/USDT": MarketLimits("ETH/USDT", lot_step=1e-4, tick_size=0.01, min_qty=1e-4, min_notional=5.0),
    "BNB/USDT": MarketLimits("BNB/USDT", lot_step=1e-3, tick_size=0.01, min_qty=1e-3, min_notional=5.0),
    "SOL/USDT": MarketLimits("SOL/USDT", lot_step=1e-3, tick_size=0.01, min_qty=1e-3, min_notional=5.0),
    "XRP/USDT": MarketLimits("XRP/USDT", lot_step=0.1, tick_size=1e-4, min_qty=0.1, min_notional=5.0),
    "ADA/USDT": MarketLimits("ADA/USDT", lot_step=0.1, tick_size=1e-4, min_qty=0.1, min_notional=5.0),
    "DOGE/USDT": MarketLimits("DOGE/USDT", lot_step=1.0, tick_size=1e-5, min_qty=1.0, min_notional=1.0),
    "ADA/BTC": MarketLimits("ADA/BTC", lot_step=0.1, tick_size=1e-8, min_qty=0.1, min_notional=1e-4),
}

DEFAULT_MIN_NOTIONAL = 5.0  # quote currency, Binance's USDT minimum


def default_limits_for(symbol: str, reference_price: float | None = None) -> MarketLimits:
    """Known Binance rules for ``symbol``, else rules scaled to its price level.

    Unknown symbols: tick = 10^(floor(log10(price)) - 5) (six significant digits), lot step such that one
    step is worth about 0.01..0.1 quote units, minimum notional 5 (or permissive when no price is known).

    Args:
        symbol: ``BASE/QUOTE``.
        reference_price: a typical price of the symbol (quote currency), e.g. its first close.
    """
    known = BINANCE_SPOT_LIMITS.get(symbol)
    if known is not None:
        return known
    if reference_price is None or not reference_price > 0 or not math.isfinite(reference_price):
        return MarketLimits(symbol)
    magnitude = math.floor(math.log10(reference_price))
    tick = 10.0 ** (magnitude - 5)
    lot = 10.0 ** min(0, -magnitude - 1)
    return MarketLimits(symbol, lot_step=lot, tick_size=tick, min_qty=lot, min_notional=DEFAULT_MIN_NOTIONAL)


def limits_for_symbols(
    symbols: Iterable[str],
    reference_prices: Mapping[str, float] | None = None,
    overrides: Mapping[str, MarketLimits] | None = None,
) -> dict[str, MarketLimits]:
    """Rules for every symbol: ``overrides`` first, then :func:`default_limits_for`."""
    prices = reference_prices or {}
    chosen = dict(overrides or {})
    return {s: chosen.get(s) or default_limits_for(s, prices.get(s)) for s in symbols}
