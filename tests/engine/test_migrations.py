"""Schema migrations: old files are brought forward without losing rows; newer files are refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.domain.errors import StoreException
from engine.domain.models import ExitKind, OrderKind, OrderStatus
from engine.store import LATEST_VERSION, MIGRATIONS, Store
from engine.store.migrations import SCHEMA_VERSION_DDL


def _create_v1_file(path: Path) -> None:
    """A file exactly as the version-1 code left it, written with plain sqlite3, with rows in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(SCHEMA_VERSION_DDL)
    for statement in MIGRATIONS[0].statements:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1, 'v1', 0)")
    conn.execute("INSERT INTO candles VALUES ('BTC/USDT', '1m', 60000, 1.5, 2.5, 1.0, 2.0, 10.25)")
    conn.execute(
        "INSERT INTO orders (client_order_id, symbol, side, type, quantity, price, status, created_ms)"
        " VALUES ('tb-1', 'BTC/USDT', 'buy', 'limit', 0.5, 30000.0, 'open', 1700000000000)"
    )
    conn.execute("INSERT INTO kv_state VALUES ('trading_state', '\"HALTED\"', 1)")
    conn.close()


def test_migration_steps_are_numbered_one_to_n_without_holes() -> None:
    assert [step.version for step in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST_VERSION == len(MIGRATIONS) >= 2


async def test_new_file_is_created_at_latest_version_with_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "store.sqlite"
    async with Store.open(path) as store:
        assert await store.schema_version() == LATEST_VERSION
        assert store.path == path
    assert path.is_file()


async def test_v1_file_is_migrated_forward_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _create_v1_file(path)

    async with Store.open(path) as store:
        assert await store.schema_version() == LATEST_VERSION
        candles = await store.read_candles("BTC/USDT", "1m")
        order = await store.get_order("tb-1")
        state = await store.get_state("trading_state")
        run_id = await store.save_backtest_run("after-migration", {"fast": 9}, {"sharpe": 1.0})

    assert candles.open_time_ms.tolist() == [60000]
    assert candles.volume.tolist() == [10.25]
    assert order is not None and order.status is OrderStatus.OPEN and order.price == 30000.0
    assert state == "HALTED"
    assert run_id >= 1


async def test_v2_backfills_order_updated_time_from_created_time(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _create_v1_file(path)
    async with Store.open(path):
        pass
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT created_ms, updated_ms FROM orders").fetchall() == [(1700000000000, 1700000000000)]
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    conn.close()
    assert versions == list(range(1, LATEST_VERSION + 1))


async def test_file_newer_than_the_code_is_refused_naming_file_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    async with Store.open(path):
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (LATEST_VERSION + 5,))
    conn.close()

    with pytest.raises(StoreException) as raised:
        await Store.open(path)

    message = str(raised.value)
    assert str(path) in message
    assert str(LATEST_VERSION + 5) in message and str(LATEST_VERSION) in message


async def test_refused_newer_file_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    async with Store.open(path) as store:
        await store.set_state("k", 1)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO schema_version VALUES (99, 'future', 0)")
    conn.close()
    with pytest.raises(StoreException):
        await Store.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value_json FROM kv_state WHERE key = 'k'").fetchall() == [("1",)]
    conn.close()


async def test_a_failing_step_is_rolled_back_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _create_v1_file(path)
    conn = sqlite3.connect(path, isolation_level=None)
    # Sabotage: v2 creates audit_log, so a pre-existing table of that name makes the step fail.
    conn.execute("CREATE TABLE audit_log (x INTEGER)")
    conn.close()

    with pytest.raises(StoreException, match="schema version 2") as raised:
        await Store.open(path)
    assert str(path) in str(raised.value)

    conn = sqlite3.connect(path)
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (1,)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(orders)")]
    assert "updated_ms" not in columns
    assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (1,)
    conn.close()


async def test_a_file_that_is_not_sqlite_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreException) as raised:
        await Store.open(path)
    assert str(path) in str(raised.value)


def _create_v2_file_with_reasons(path: Path) -> None:
    """A version-2 file whose trades and orders carry their kinds only in the reason texts."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(SCHEMA_VERSION_DDL)
    for step in MIGRATIONS[:2]:
        for statement in step.statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, 'old', 0)", (step.version,))
    reasons = ["stop", "trailing_stop", "take_profit", "signal: EMA cross down", "risk limit: daily_loss 5.1%",
               "emergency exit: console", "end of data", "manual close (telegram:7)", "reconciled: not held"]
    for i, reason in enumerate(reasons):
        conn.execute("INSERT INTO trades (symbol, side, quantity, entry_price, exit_price, entry_ms, exit_ms, pnl,"
                     " reason) VALUES ('BTC/USDT', 'long', 1, 100, 101, ?, ?, 1, ?)", (i, i + 1, reason))
    orders = [("tb-e", "entry: squeeze fired; risk 1%"), ("tb-x", "exit: signal: EMA cross down"),
              ("tb-t", "exit: take_profit"), ("tb-s", "stop: protective"), ("tb-s-tp", "target: take_profit"),
              ("sim-BTCUSDT-5-in", "paper"), ("sim-BTCUSDT-9-out", "paper"), ("tb-?", "")]
    for cid, reason in orders:
        conn.execute("INSERT INTO orders (client_order_id, symbol, side, type, quantity, status, reason, created_ms)"
                     " VALUES (?, 'BTC/USDT', 'sell', 'market', 1, 'filled', ?, 1)", (cid, reason))
    conn.close()


async def test_v3_back_fills_trade_exit_kinds_once_from_the_old_reason_rule(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _create_v2_file_with_reasons(path)
    async with Store.open(path) as store:
        kinds = [trade.exit_kind for trade in await store.trades()]
    assert kinds == [ExitKind.STOP, ExitKind.TRAILING_STOP, ExitKind.TARGET, ExitKind.SIGNAL, ExitKind.RISK_LIMIT,
                     ExitKind.EMERGENCY_EXIT, ExitKind.END_OF_DATA, ExitKind.MANUAL, ExitKind.MANUAL]


async def test_v3_back_fills_order_kinds_and_exit_kinds_from_the_reason_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _create_v2_file_with_reasons(path)
    async with Store.open(path) as store:
        orders = {cid: await store.get_order(cid) for cid in
                  ("tb-e", "tb-x", "tb-t", "tb-s", "tb-s-tp", "sim-BTCUSDT-5-in", "sim-BTCUSDT-9-out", "tb-?")}
    assert {cid: (o.kind, o.exit_kind) for cid, o in orders.items() if o is not None} == {
        "tb-e": (OrderKind.ENTRY, None),
        "tb-x": (OrderKind.EXIT, ExitKind.SIGNAL),
        "tb-t": (OrderKind.EXIT, ExitKind.TARGET),
        "tb-s": (OrderKind.STOP, None),
        "tb-s-tp": (OrderKind.TAKE_PROFIT, None),
        "sim-BTCUSDT-5-in": (OrderKind.ENTRY, None),
        "sim-BTCUSDT-9-out": (OrderKind.EXIT, None),
        "tb-?": (None, None),
    }


async def test_v3_columns_refuse_a_kind_that_is_not_one(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    async with Store.open(path):
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO trades (symbol, side, quantity, entry_price, exit_price, entry_ms, exit_ms, pnl,"
                     " exit_kind) VALUES ('BTC/USDT', 'long', 1, 100, 101, 0, 1, 1, 'take_profit')")
    conn.close()
