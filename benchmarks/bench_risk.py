"""Benchmarks the full pre-trade check (breakers + loss limits + sizing + stop) per signal.

Run: ``.venv/bin/python benchmarks/bench_risk.py [calls]`` (default 100,000 calls).

Prints p50/p99 latency of one pre-trade check against the issue's target (p99 < 1 ms on this machine;
the design asks 100 ms), and, as a peer measured in the same run, lot-step rounding with
``engine.domain.precision.floor_to_step`` against ccxt's own ``decimal_to_precision`` (TRUNCATE, TICK_SIZE),
the string/Decimal routine ccxt's ``amount_to_precision`` uses.
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from ccxt.base.decimal_to_precision import TICK_SIZE, TRUNCATE, decimal_to_precision

from engine.config import BreakerConfig, RiskConfig
from engine.core.breaker import CircuitBreaker
from engine.core.risk import DynamicRiskManager, RiskAction
from engine.domain.models import MarketLimits, PositionSide
from engine.domain.precision import floor_to_step

TARGET_P99_NS = 1_000_000  # 1 ms
BAR_MS = 3_600_000
T0 = 1_700_000_000_000


def percentile(sorted_values: list[int], fraction: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))])


def make_inputs(calls: int) -> list[tuple[float, float, float, float, float, float]]:
    """Noisy equity and a price walk; volatility spikes (2 %) trip the breaker and exercise recovery."""
    rng = random.Random(42)
    price = 30_000.0
    rows = []
    for _ in range(calls):
        equity = 10_000.0 * (1.0 + rng.gauss(0.0, 0.012))  # daily-loss warnings now and then
        price *= 1.0 + rng.gauss(0.0, 0.01)
        atr = price * rng.uniform(0.002, 0.03)
        vol_ratio = rng.uniform(3.0, 4.0) if rng.random() < 0.02 else rng.uniform(0.5, 2.0)
        rows.append((equity, price, atr, vol_ratio, rng.random(), rng.uniform(0.5, 1.5)))
    return rows


def pre_trade_check(
    risk: DynamicRiskManager, breaker: CircuitBreaker, market: MarketLimits, now_ms: int,
    row: tuple[float, float, float, float, float, float],
) -> float:
    """What the decision path does for one entry signal; returns the approved quantity (0 = none)."""
    equity, price, atr, vol_ratio, strength, confluence = row
    breaker.check_volatility_circuit(vol_ratio, 1.0, now_ms)
    limit_check = risk.check_drawdown_limits(equity, now_ms)
    breaker.check_loss_circuit(breaker.consecutive_losses, limit_check.daily_loss_pct, now_ms)
    breaker.check_system_health(now_ms)
    allowed, size_multiplier, _ = breaker.allows_entry(now_ms)
    if not allowed or limit_check.action is not RiskAction.NONE:
        return 0.0
    decision = risk.calculate_position_size(
        equity, equity, price, atr, strength, confluence, market,
        volatility_ratio=vol_ratio, size_multiplier=size_multiplier, side=PositionSide.LONG,
    )
    return decision.quantity


def bench_pre_trade(calls: int) -> tuple[list[int], list[int]]:
    risk = DynamicRiskManager(RiskConfig())
    breaker = CircuitBreaker(BreakerConfig(latching=[]))
    market = MarketLimits("BTC/USDT", lot_step=0.00001, tick_size=0.01, min_qty=0.00001, min_notional=5.0)
    rows = make_inputs(calls)
    timings = [0] * calls
    approved: list[int] = []
    clock = time.perf_counter_ns
    for index, row in enumerate(rows):
        now_ms = T0 + index * BAR_MS
        start = clock()
        quantity = pre_trade_check(risk, breaker, market, now_ms, row)
        timings[index] = clock() - start
        if quantity > 0.0:
            approved.append(timings[index])
    return timings, approved


def bench_rounding(calls: int) -> tuple[float, float]:
    rng = random.Random(7)
    values = [rng.uniform(0.0, 5.0) for _ in range(calls)]
    step, step_text = 0.00001, "0.00001"
    start = time.perf_counter()
    for value in values:
        floor_to_step(value, step)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    for value in values:
        decimal_to_precision(value, TRUNCATE, step_text, TICK_SIZE)
    ccxt = time.perf_counter() - start
    return ours / calls * 1e9, ccxt / calls * 1e9


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    bench_pre_trade(min(calls, 2_000))  # warm-up
    timings, approved = bench_pre_trade(calls)
    timings.sort()
    approved.sort()
    p50, p99 = percentile(timings, 0.50), percentile(timings, 0.99)
    print(f"pre-trade check (breakers + limits + sizing + stop), {calls:,} calls")
    print(f"  all      p50 {p50 / 1e3:7.2f} us   p99 {p99 / 1e3:7.2f} us   max {timings[-1] / 1e3:8.2f} us   "
          f"mean {statistics.fmean(timings) / 1e3:6.2f} us")
    if approved:
        a50, a99 = percentile(approved, 0.5), percentile(approved, 0.99)
        print(f"  approved p50 {a50 / 1e3:7.2f} us   p99 {a99 / 1e3:7.2f} us   "
              f"({len(approved):,} calls sized an order; the rest were blocked by a breaker or refused)")
    print(f"  target p99 < {TARGET_P99_NS / 1e6:g} ms: p99 is {TARGET_P99_NS / p99:,.0f}x under target "
          f"({'PASS' if p99 < TARGET_P99_NS else 'FAIL'}); design budget 100 ms: {100e6 / p99:,.0f}x under")
    ours_ns, ccxt_ns = bench_rounding(calls)
    print(f"lot-step rounding, {calls:,} values: floor_to_step {ours_ns:.0f} ns/call, "
          f"ccxt decimal_to_precision {ccxt_ns:.0f} ns/call -> {ccxt_ns / ours_ns:.1f}x faster than ccxt")


if __name__ == "__main__":
    main()
