"""The store never wedges: cancelled and failing writes, loud repeated failures, reported shutdown saves.

Every test runs on a real SQLite file. Cancellation points are stepped deterministically: one step lets
aiosqlite's thread finish everything queued so far (the test blocks on it), then runs the event loop once,
so a given ``k`` always cancels at the same await of the write path.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.config import Settings
from engine.core.decision import DecisionCore
from engine.core.portfolio import Portfolio
from engine.domain.errors import StoreException
from engine.domain.models import Candles, CircuitState
from engine.runtime.persistence import STORE_DEGRADED_AFTER_FAILURES, EngineRecorder
from engine.store import Store
from tests.engine.runtime_helpers import btc_window, finish, paper_engine, start, wait_for_event

WAIT_S = 30.0  # hang guard only: every wait below ends on a condition
MAX_STEPS = 40  # more than any write path below needs (each test asserts its largest k completed)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "store.sqlite") as opened:
        yield opened


def _drain_db_thread(store: Store) -> None:
    """Blocks until aiosqlite's thread has run everything queued before this call (its queue is FIFO)."""
    done = threading.Event()
    store._conn._tx.put_nowait((None, done.set))  # aiosqlite 0.22 internals, as Store._in_db_thread
    assert done.wait(WAIT_S), "the DB thread is stuck"


async def _step(store: Store, steps: int) -> None:
    for _ in range(steps):
        _drain_db_thread(store)
        await asyncio.sleep(0)


async def _cancel_after(store: Store, steps: int, operation: Callable[[], Awaitable[Any]],
                        cancellations: int = 1) -> bool:
    """Runs ``operation`` as a task, cancels it after ``steps`` steps (again one step later for each further
    cancellation) and waits for it; True when it completed instead of being cancelled."""
    task = asyncio.ensure_future(operation())
    await _step(store, steps)
    for _ in range(cancellations):
        task.cancel()
        await _step(store, 1)
    await asyncio.wait_for(asyncio.wait([task]), WAIT_S)
    if task.cancelled():
        return False
    task.result()  # any other failure fails the test
    return True


def _candles(count: int, value: float = 1.5) -> Candles:
    times = np.arange(count, dtype=np.int64) * 60_000
    return Candles("BTC/USDT", "1m", times, *(np.full(count, value) for _ in range(5)))


async def _multi_statement_write(store: Store, k: int) -> None:
    async with store.transaction():
        await store.set_state("first", k)
        await store.upsert_candles(_candles(3, float(k)))
        await store.set_state("second", k)


async def _assert_writable(store: Store, k: int) -> None:
    assert not store._conn.in_transaction  # read after the cancelled task ended: its statements have all run
    await asyncio.wait_for(store.set_state("after", k), WAIT_S)
    assert await store.get_state("after") == k


# --- cancellation ------------------------------------------------------------------------------------


async def test_cancelling_set_state_at_any_await_leaves_the_store_writable(store: Store) -> None:
    outcomes = []
    for k in range(MAX_STEPS + 1):
        outcomes.append(await _cancel_after(store, k, lambda k=k: store.set_state("key", k)))
        await _assert_writable(store, k)
    assert not outcomes[1], "k=1 must cancel the write mid-way"
    assert outcomes[-1], "the largest k must let the write complete, or the loop missed part of the path"


async def test_cancelling_a_multi_statement_transaction_at_any_await_leaves_the_store_writable(
    store: Store,
) -> None:
    outcomes = []
    for k in range(MAX_STEPS + 1):
        outcomes.append(await _cancel_after(store, k, lambda k=k: _multi_statement_write(store, k)))
        await _assert_writable(store, k)
    assert not outcomes[1]
    assert outcomes[-1], "the largest k must let the transaction complete"


async def test_a_transaction_cancelled_at_any_await_is_all_or_nothing(store: Store) -> None:
    for k in range(MAX_STEPS + 1):
        completed = await _cancel_after(store, k, lambda k=k: _multi_statement_write(store, k))
        first, second = await store.get_state("first"), await store.get_state("second")
        assert first == second, f"k={k}: half a transaction was committed"
        if completed:
            assert first == k and float((await store.read_candles("BTC/USDT", "1m")).close[0]) == k


async def test_a_second_cancellation_during_the_rollback_still_leaves_no_transaction_open(store: Store) -> None:
    for k in range(MAX_STEPS + 1):
        await _cancel_after(store, k, lambda k=k: _multi_statement_write(store, k), cancellations=2)
        await _assert_writable(store, k)


@pytest.mark.parametrize("read", ["get_state", "read_candles", "open_positions"])
async def test_a_cancelled_read_releases_the_lock(store: Store, read: str) -> None:
    await store.upsert_candles(_candles(1000))
    reads: dict[str, Callable[[], Awaitable[Any]]] = {
        "get_state": lambda: store.get_state("key"),
        "read_candles": lambda: store.read_candles("BTC/USDT", "1m"),
        "open_positions": store.open_positions,
    }
    outcomes = []
    for k in range(12):
        outcomes.append(await _cancel_after(store, k, reads[read]))
        await _assert_writable(store, k)  # the write would wait forever on a lock the read kept
    assert not outcomes[0] and outcomes[-1]


async def test_a_read_cancelled_while_waiting_for_a_transaction_releases_the_lock(store: Store) -> None:
    inside, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with store.transaction():
            await store.set_state("held", 1)
            inside.set()
            await release.wait()

    holding = asyncio.create_task(holder())
    await inside.wait()
    reader = asyncio.create_task(store.get_state("held"))
    await asyncio.sleep(0)
    reader.cancel()
    release.set()
    await holding
    await asyncio.wait([reader])
    assert reader.cancelled()
    await _assert_writable(store, 1)


# --- failures surface as StoreException ----------------------------------------------------------------


async def test_a_failing_write_raises_store_exception_naming_the_file(store: Store) -> None:
    with pytest.raises(StoreException) as raised:  # no backtest run 424242: the foreign key refuses the row
        await store.save_optimization_results(424242, [({"fast": 1}, {"sharpe": 1.0}, 1.0)])
    assert not isinstance(raised.value, sqlite3.Error)
    assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)
    assert str(store.path) in str(raised.value)
    await _assert_writable(store, 1)


async def test_a_failing_read_raises_store_exception_naming_the_file(store: Store) -> None:
    with sqlite3.connect(store.path) as other:
        other.execute("DROP TABLE kv_state")
    with pytest.raises(StoreException) as raised:
        await store.get_state("key")
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert str(store.path) in str(raised.value)


async def test_a_closed_store_raises_store_exception(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreException, match="closed"):
        await store.set_state("key", 1)
    with pytest.raises(StoreException, match="closed"):
        await store.get_state("key")


# --- repeated write failures are loud --------------------------------------------------------------------


def _recorder(store: Store, reports: list[tuple[int, str]]) -> EngineRecorder:
    settings = Settings()
    core = DecisionCore(settings.risk, settings.breaker, Portfolio(cash=10_000.0))
    return EngineRecorder(store, core, on_degraded=lambda failures, error: reports.append((failures, error)))


async def _failing_write(store: Store) -> None:
    await store.save_optimization_results(424242, [({}, {}, None)])  # foreign key violation


async def test_recorder_reports_degraded_once_per_streak_of_consecutive_failures(store: Store) -> None:
    reports: list[tuple[int, str]] = []
    recorder = _recorder(store, reports)
    writer = asyncio.create_task(recorder.run())
    for _ in range(STORE_DEGRADED_AFTER_FAILURES + 2):
        recorder.enqueue(lambda: _failing_write(store))
    await asyncio.wait_for(recorder.flush(), WAIT_S)
    assert len(reports) == 1
    assert reports[0][0] == STORE_DEGRADED_AFTER_FAILURES and "FOREIGN KEY" in reports[0][1]

    recorder.enqueue(lambda: store.set_state("ok", 1))  # a success resets the streak
    for _ in range(STORE_DEGRADED_AFTER_FAILURES - 1):
        recorder.enqueue(lambda: _failing_write(store))
    await asyncio.wait_for(recorder.flush(), WAIT_S)
    assert len(reports) == 1, "not reported again before the new streak reaches the threshold"

    recorder.enqueue(lambda: _failing_write(store))
    await asyncio.wait_for(recorder.flush(), WAIT_S)
    assert len(reports) == 2
    assert recorder.failures == 2 * STORE_DEGRADED_AFTER_FAILURES + 2
    writer.cancel()
    await asyncio.wait([writer])


async def test_drain_now_counts_failed_writes(store: Store) -> None:
    reports: list[tuple[int, str]] = []
    recorder = _recorder(store, reports)
    outcomes = [recorder.enqueue(lambda: _failing_write(store)) for _ in range(STORE_DEGRADED_AFTER_FAILURES)]
    await recorder.drain_now()
    assert recorder.failures == STORE_DEGRADED_AFTER_FAILURES and len(reports) == 1
    assert all(o.done and isinstance(o.error, StoreException) for o in outcomes)


# --- the engine ----------------------------------------------------------------------------------------


def _schema_change(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as other:
        other.execute(sql)


async def _break_state_writes(path: Path) -> None:
    """Every later write of engine state fails inside SQLite (as a full disk or a corrupt page would).

    On a thread: waiting for SQLite's write lock on the loop's thread would block the engine's own writer.
    """
    await asyncio.to_thread(_schema_change, path, "CREATE TRIGGER refuse_state BEFORE INSERT ON kv_state "
                            "BEGIN SELECT RAISE(ABORT, 'state writes refused by the test'); END")


async def _repair_state_writes(path: Path) -> None:
    await asyncio.to_thread(_schema_change, path, "DROP TRIGGER refuse_state")


async def test_engine_reports_a_degraded_store_and_trips_the_system_breaker(tmp_path: Path) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=510)})
    events = engine.bus.subscribe("test")
    task = start(engine)
    await engine.replay_done.wait()
    await engine.wait_idle()
    await _break_state_writes(engine.database_path)
    assert engine.recorder is not None
    for _ in range(STORE_DEGRADED_AFTER_FAILURES):
        engine.recorder.save_core_state(engine.clock.now_ms())

    degraded = await wait_for_event(events, "StoreDegraded")
    assert degraded.severity == "critical"
    assert degraded.data["failures"] == STORE_DEGRADED_AFTER_FAILURES
    assert "refused by the test" in degraded.data["error"]
    tripped = await wait_for_event(events, "BreakerTripped", lambda e: e.data["breaker"] == "system")
    assert "store writes failing" in tripped.data["reason"]
    assert engine.core.breaker.status("system").state is CircuitState.OPEN
    await _repair_state_writes(engine.database_path)
    await finish(engine, task)


async def test_engine_whose_final_saves_fail_ends_in_error_and_says_what_was_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = paper_engine(tmp_path, {"BTC/USDT": btc_window(length=510)})
    task = start(engine)
    await engine.replay_done.wait()
    await engine.wait_idle()
    await _break_state_writes(engine.database_path)

    with caplog.at_level(logging.CRITICAL, logger="engine.runtime.engine"), pytest.raises(StoreException) as raised:
        await finish(engine, task)

    assert engine.engine_state == "error"
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1
    assert "final state NOT saved" in critical[0]
    assert "decision core state" in critical[0] and "portfolio" in critical[0]
    assert str(engine.database_path) in str(raised.value)
