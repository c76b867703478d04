"""Specification of the daily loss limit at the trading-day boundary, through the backtest's decision path.

The rule (``engine.domain.trading_day``): a bar closing at t belongs to the day containing t - 1 ms, and a day
starts at the equity marked at its reset instant (the previous day's last close), whether or not the
account was flat. A loss beyond the limit inside any bar - the last bar of a day, the entry bar after a
flat night, a 1d bar - is acted on at that bar's close: halt, and close everything at the next open.
"""

from __future__ import annotations

from datetime import time

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.analysis.strategy import PreparedSymbol
from engine.backtest.loop import LoopOutput, run_loop
from engine.backtest.metrics import daily_returns
from engine.config import BreakerConfig, RiskConfig
from engine.core.account_limits import AccountLimits, loss_pct
from engine.domain.events import Event
from engine.domain.models import Candles, ClosedTrade, PositionSide, TradingState
from engine.domain.precision import reaches
from engine.domain.timeframes import parse_timeframe
from engine.domain.trading_day import DAY_MS, day_of_close, day_start_ms, days_of_closes, reset_offset_ms
from engine.simulation.account import SimulatedAccount
from tests.engine.decision_fixtures import START_MS, account, prepared

HOUR_MS = 3_600_000
CAPITAL = 10_000.0
LIMIT_PCT = 5.0
ATR = 10.0  # stop 20 below a 100 entry: 50 % risk sizing is capped at 90 % of equity (90 units)


def _risk(reset_hour: int = 0) -> RiskConfig:
    return RiskConfig(
        max_notional_percent=90.0, max_position_size_percent=50.0, risk_per_trade_percent=50.0,
        max_daily_loss_percent=LIMIT_PCT,
        max_drawdown_percent=99.0, daily_reset_utc=time(reset_hour),
    )


def _bars(timeframe: str, closes: list[float], start_ms: int = START_MS) -> Candles:
    """Bars opening at the previous close (the first at 100), 0.5 of wick either side."""
    n = len(closes)
    opens = np.array([100.0, *closes[:-1]])
    close = np.array(closes, dtype=float)
    open_ms = start_ms + np.arange(n, dtype=np.int64) * parse_timeframe(timeframe)
    return Candles("TEST/USDT", timeframe, open_ms, opens, np.maximum(opens, close) + 0.5,
                   np.minimum(opens, close) - 0.5, close, np.ones(n))


def _run(item: PreparedSymbol, risk: RiskConfig) -> tuple[SimulatedAccount, LoopOutput]:
    """The backtest's loop (idle stretches jumped, quiet runs of the open position skipped at once)."""
    sim = account(risk=risk)
    return sim, run_loop([item], sim)


def _breaches(events: list[Event]) -> list[int]:
    return [e.time_ms for e in events if e.kind == "RiskLimitBreached" and e.data["limit"] == "daily_loss"]


def _halts(events: list[Event]) -> list[int]:
    return [e.time_ms for e in events if e.kind == "TradingStateChanged" and e.data["state"] == TradingState.HALTED]


def _assert_acted_on(sim: SimulatedAccount, close_ms: int) -> None:
    """The daily loss breached at the bar closing at ``close_ms``: halted then, everything closed next open."""
    assert _breaches(sim.log.events)[:1] == [close_ms]
    assert _halts(sim.log.events)[:1] == [close_ms]
    exits = [r for r in sim.log.trades if r.exit_kind == "risk_limit"]
    assert exits and exits[0].trade.exit_ms == close_ms  # filled at the open of the next bar


# ------------------------------------------------------------------------------------ the measured cases
def test_a_6_percent_loss_in_the_23h_bar_is_acted_on_at_midnight() -> None:
    """90 % of equity in one position; the 23:00 bar closes at the reset and loses 6 %: that day's loss."""
    closes = [100.0] * 23 + [93.3] + [93.3] * 3  # bar 23 = 23:00-24:00
    item = prepared(_bars("1h", closes), entries={7: 1}, atr=ATR)
    sim, output = _run(item, _risk())
    assert loss_pct(CAPITAL, float(output.equity[23])) > 6.0
    _assert_acted_on(sim, START_MS + DAY_MS)


def test_a_loss_in_the_entry_bar_after_a_flat_night_is_acted_on() -> None:
    """A trade on day 1 closes; flat over night; the entry bar of day 2 loses 6 % of the flat equity."""
    closes = [100.0] * 33 + [93.3] + [93.3] * 3  # entry signal at bar 32 (08:00 day 2), entry bar 33
    item = prepared(_bars("1h", closes), entries={1: 1, 32: 1}, exits=[4], atr=ATR)
    sim, output = _run(item, _risk())
    first = sim.log.trades[0]
    assert first.exit_kind == "signal" and first.trade.exit_ms < START_MS + DAY_MS
    assert loss_pct(float(output.equity[32]), float(output.equity[33])) > 6.0
    _assert_acted_on(sim, START_MS + 34 * HOUR_MS)


def test_a_loss_on_1d_bars_is_measured_from_the_previous_days_close() -> None:
    closes = [100.0, 100.0, 93.3, 93.3, 93.3]  # signal on day 0, entry on day 1, day 2 loses 6 %
    item = prepared(_bars("1d", closes), entries={0: 1}, atr=ATR)
    sim, output = _run(item, _risk())
    assert loss_pct(float(output.equity[1]), float(output.equity[2])) > 6.0
    _assert_acted_on(sim, START_MS + 3 * DAY_MS)


def test_a_loss_split_by_the_reset_is_two_days_within_the_limit() -> None:
    closes = [100.0] * 23 + [97.0, 94.1] + [94.1] * 3  # 3 % in the 23:00 bar, 3 % in the 00:00 bar
    item = prepared(_bars("1h", closes), entries={7: 1}, atr=ATR)
    sim, output = _run(item, _risk())
    assert loss_pct(CAPITAL, float(output.equity[24])) > LIMIT_PCT  # beyond the limit over the two days together
    assert _breaches(sim.log.events) == [] and _halts(sim.log.events) == []


# -------------------------------------------------------------------------------- properties: the oracle
def _expected_first_breach(time_ms: np.ndarray, equity: np.ndarray, offset_ms: int) -> int | None:
    """The plain rule on the equity at every close: the first close whose day's loss reaches the limit."""
    for i, (close_ms, value) in enumerate(zip(time_ms.tolist(), equity.tolist(), strict=True)):
        reset = day_start_ms(day_of_close(close_ms, offset_ms), offset_ms)
        before = [k for k in range(i) if time_ms[k] <= reset]  # the closes at or before the day's reset
        day_start = float(equity[before[-1]]) if before else CAPITAL
        if reaches(loss_pct(day_start, value), LIMIT_PCT):
            return int(close_ms)
    return None


TIMEFRAMES = ["1m", "5m", "1h", "4h", "1d"]
MOVES = [-0.07, -0.04, -0.03, -0.02, -0.01, 0.0, 0.0, 0.0, 0.01, 0.02]  # relative close-to-close moves


@settings(max_examples=250, deadline=None)
@given(
    timeframe=st.sampled_from(TIMEFRAMES),
    reset_hour=st.integers(0, 23),
    flat_bars=st.integers(0, 5),
    moves=st.lists(st.sampled_from(MOVES), min_size=1, max_size=8),
    anchor=st.integers(0, 14),
    shift=st.sampled_from([-1, 0, 1]),
    day=st.integers(0, 400),
)
def test_a_loss_beyond_the_limit_inside_any_bar_is_acted_on_that_bar_and_one_within_never(
    timeframe: str, reset_hour: int, flat_bars: int, moves: list[float], anchor: int, shift: int, day: int
) -> None:
    """Flat bars, an entry signal, an entry bar and bars moving by ``moves`` (the first inside the entry
    bar), then flat bars; bar ``anchor`` closes at the first bar close at or after a reset, +- one bar."""
    bar_ms = parse_timeframe(timeframe)
    risk = _risk(reset_hour)
    offset = reset_offset_ms(risk.daily_reset_utc)
    reset = day_start_ms(START_MS // DAY_MS + day, offset)
    anchor_close = -(-reset // bar_ms) * bar_ms + shift * bar_ms
    signal = flat_bars
    closes = [100.0] * (signal + 1)
    for move in moves:
        closes.append(closes[-1] * (1.0 + move))
    closes += [closes[-1]] * 3
    anchor = min(anchor, len(closes) - 1)
    start_ms = anchor_close - (anchor + 1) * bar_ms
    item = prepared(_bars(timeframe, closes, start_ms), entries={signal: 1}, atr=ATR)
    sim, output = _run(item, risk)
    assert sim.log.fills, "the entry filled"
    expected = _expected_first_breach(output.time_ms, output.equity, offset)
    breaches, halts = _breaches(sim.log.events), _halts(sim.log.events)
    if expected is None:
        event("within the limit")
        assert breaches == [] and halts == []
        return
    assert breaches[:1] == [expected] and halts[:1] == [expected]
    at = int(np.searchsorted(output.time_ms, expected))
    reset_before = day_start_ms(day_of_close(expected, offset), offset)
    event("beyond: " + ("the last bar of a day" if expected - reset_before == DAY_MS else
                        "the entry bar" if at == signal + 1 else "another bar"))
    if output.in_market[at] and at + 1 < len(output.time_ms):  # everything closed at the next bar's open
        assert [(r.exit_kind, r.trade.exit_ms) for r in sim.log.trades][-1:] == [("risk_limit", expected)]


# ------------------------------------------------------------------------ one day rule: limits = metrics
@settings(max_examples=200, deadline=None)
@given(
    reset_hour=st.integers(0, 23),
    steps=st.lists(
        st.one_of(st.integers(1, 30 * HOUR_MS), st.sampled_from([("reset", -1), ("reset", 0), ("reset", 1)])),
        min_size=1, max_size=40,
    ),
)
def test_limits_and_metrics_attribute_every_close_to_the_same_day(
    reset_hour: int, steps: list[int | tuple[str, int]]
) -> None:
    risk = _risk(reset_hour)
    offset = reset_offset_ms(risk.daily_reset_utc)
    limits = AccountLimits(risk)
    now, times = START_MS, []
    for step in steps:
        if isinstance(step, int):
            now += step
        else:  # to the next reset, or 1 ms either side of it
            now = max(now + 1, day_start_ms((now - offset) // DAY_MS + 1, offset) + step[1])
        times.append(now)
    close_ms = np.array(times, dtype=np.int64)
    equity = CAPITAL + np.arange(1, len(times) + 1, dtype=float)  # distinct, rising: no limit fires
    days = days_of_closes(close_ms, offset)
    assert days.tolist() == [limits.trading_day_of_close(t) for t in times]
    # The limits start a new day exactly where the metrics do, from the previous day's last close.
    last_of_day: list[float] = []  # the previous day's last close, per day (the first: the capital)
    day_start = 0.0
    for k, (t, value) in enumerate(zip(times, equity.tolist(), strict=True)):
        check = limits.check(value, t)
        if k and days[k] == days[k - 1]:
            assert check.day_start_equity == day_start
        else:
            assert check.day_start_equity == (float(equity[k - 1]) if k else value)
            last_of_day.append(float(equity[k - 1]) if k else CAPITAL)
        day_start = check.day_start_equity
    closes = [float(equity[k]) for k in range(len(times)) if k == len(times) - 1 or days[k + 1] != days[k]]
    assert len(daily_returns(close_ms, equity, CAPITAL, offset)) == len(closes)
    np.testing.assert_allclose(
        daily_returns(close_ms, equity, CAPITAL, offset), np.array(closes) / np.array(last_of_day) - 1.0
    )


# ------------------------------------------------------------------------- the breaker reads the figure
def test_the_loss_breaker_reads_todays_daily_loss_not_one_kept_from_yesterday() -> None:
    sim = account(risk=_risk(), breaker=BreakerConfig(daily_loss_percent=3.0, max_consecutive_losses=99, latching=[]))
    core, day1 = sim.core, START_MS + 2 * HOUR_MS
    core.check_account(day1, CAPITAL)  # the day's start equity
    core.portfolio.cash = 9_600.0  # a 4 % loss, realised by this trade
    tripped = core.on_trade_closed(_losing_trade(day1 + HOUR_MS), day1 + HOUR_MS).events
    assert [e.kind for e in tripped] == ["BreakerTripped", "RiskLimitWarning"]
    core.breaker.manual_resume("loss", day1 + 2 * HOUR_MS)  # a person resets it the same day
    day2 = START_MS + DAY_MS + 2 * HOUR_MS
    core.portfolio.cash = 9_590.0  # a small loss the next day: 0.1 % of the day's start (9,600)
    outcome = core.on_trade_closed(_losing_trade(day2), day2)
    assert "BreakerTripped" not in [e.kind for e in outcome.events]
    assert core.breaker.status("loss").value == core.limits.check(9_590.0, day2).daily_loss_pct


def _losing_trade(exit_ms: int) -> ClosedTrade:
    return ClosedTrade("TEST/USDT", PositionSide.LONG, 1.0, 100.0, 99.0, exit_ms - HOUR_MS, exit_ms, -10.0, 0.1)
