"""Provides the numbered schema migrations of the SQLite store and the code that applies them.

Each step runs in its own ``BEGIN IMMEDIATE`` transaction together with the row that records it in
``schema_version``, so a crash mid-migration leaves the file at the previous version with every row intact.
Steps that have shipped are never edited: a schema change is always a new step at the end of ``MIGRATIONS``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import aiosqlite

from engine.domain.errors import StoreException


@dataclass(frozen=True)
class Migration:
    """One forward schema step.

    Attributes:
        version: the schema version the file is at after this step (1, 2, ...).
        description: what the step does, stored in ``schema_version``.
        statements: SQL statements run in order inside one transaction (no ``executescript``:
            it would commit the transaction halfway).
    """

    version: int
    description: str
    statements: tuple[str, ...]


SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL,"
    " applied_ms INTEGER NOT NULL)"
)

_V1_CORE = Migration(
    1,
    "core tables: candles, orders, fills, positions, trades, equity, breakers, kv_state",
    (
        """CREATE TABLE candles (
            symbol TEXT NOT NULL,
            timeframe TEXT NOT NULL,
            open_time_ms INTEGER NOT NULL,
            open REAL NOT NULL,
            high REAL NOT NULL,
            low REAL NOT NULL,
            close REAL NOT NULL,
            volume REAL NOT NULL,
            PRIMARY KEY (symbol, timeframe, open_time_ms)
        ) WITHOUT ROWID""",
        """CREATE TABLE orders (
            client_order_id TEXT PRIMARY KEY,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
            type TEXT NOT NULL,
            quantity REAL NOT NULL,
            price REAL,
            stop_price REAL,
            status TEXT NOT NULL,
            exchange_order_id TEXT,
            filled_quantity REAL NOT NULL DEFAULT 0,
            average_price REAL,
            reduce_only INTEGER NOT NULL DEFAULT 0,
            reason TEXT NOT NULL DEFAULT '',
            created_ms INTEGER NOT NULL
        )""",
        """CREATE TABLE fills (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            client_order_id TEXT NOT NULL REFERENCES orders (client_order_id),
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
            quantity REAL NOT NULL,
            price REAL NOT NULL,
            fee REAL NOT NULL DEFAULT 0,
            fee_asset TEXT NOT NULL DEFAULT '',
            trade_id TEXT NOT NULL DEFAULT '',
            time_ms INTEGER NOT NULL
        )""",
        "CREATE INDEX fills_by_order ON fills (client_order_id)",
        # A fill reported twice by the exchange (reconcile after a restart) must be recorded once.
        "CREATE UNIQUE INDEX fills_unique_trade ON fills (client_order_id, trade_id) WHERE trade_id <> ''",
        """CREATE TABLE positions (
            symbol TEXT PRIMARY KEY,
            side TEXT NOT NULL CHECK (side IN ('long', 'short')),
            quantity REAL NOT NULL,
            entry_price REAL NOT NULL,
            opened_ms INTEGER NOT NULL,
            stop_price REAL,
            trailing_stop_price REAL,
            last_price REAL,
            entry_fee REAL NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE trades (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('long', 'short')),
            quantity REAL NOT NULL,
            entry_price REAL NOT NULL,
            exit_price REAL NOT NULL,
            entry_ms INTEGER NOT NULL,
            exit_ms INTEGER NOT NULL,
            pnl REAL NOT NULL,
            fees REAL NOT NULL DEFAULT 0,
            reason TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX trades_by_exit ON trades (exit_ms)",
        """CREATE TABLE equity (
            time_ms INTEGER PRIMARY KEY,
            equity REAL NOT NULL,
            cash REAL NOT NULL,
            unrealized REAL NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE breaker_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            time_ms INTEGER NOT NULL,
            event TEXT NOT NULL,
            state_json TEXT NOT NULL
        )""",
        """CREATE TABLE breaker_state (
            name TEXT PRIMARY KEY,
            state_json TEXT NOT NULL,
            updated_ms INTEGER NOT NULL
        )""",
        """CREATE TABLE kv_state (
            key TEXT PRIMARY KEY,
            value_json TEXT NOT NULL,
            updated_ms INTEGER NOT NULL
        )""",
    ),
)

_V2_RECORDS = Migration(
    2,
    "orders.updated_ms (backfilled from created_ms), open-order index; audit_log, backtest_runs, "
    "optimization_results, notification_outbox",
    (
        "ALTER TABLE orders ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0",
        "UPDATE orders SET updated_ms = created_ms",
        "CREATE INDEX orders_by_status ON orders (status)",
        """CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            time_ms INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail_json TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        """CREATE TABLE backtest_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_ms INTEGER NOT NULL,
            name TEXT NOT NULL,
            params_json TEXT NOT NULL,
            metrics_json TEXT NOT NULL,
            result_json TEXT
        )""",
        """CREATE TABLE optimization_results (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES backtest_runs (id) ON DELETE CASCADE,
            params_json TEXT NOT NULL,
            metrics_json TEXT NOT NULL,
            score REAL
        )""",
        "CREATE INDEX optimization_results_by_run ON optimization_results (run_id, score)",
        """CREATE TABLE notification_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            text TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms INTEGER NOT NULL,
            sent_ms INTEGER,
            last_error TEXT,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed'))
        )""",
        "CREATE INDEX outbox_due ON notification_outbox (status, next_attempt_ms)",
    ),
)


def _exit_kind_from_reason(reason: str) -> str:
    """SQL of the exit kind that the code before version 3 read from an exit reason ``reason`` (an SQL expression).

    This is the only place that rule survives: version 3 applies it once to old rows. GLOB, not LIKE: it
    is case-sensitive, as the old ``str.startswith`` was.
    """
    kinds = "'stop', 'trailing_stop', 'target', 'signal', 'risk_limit', 'emergency_exit', 'manual', 'end_of_data'"
    return (
        f"CASE WHEN {reason} IN ({kinds}) THEN {reason}"
        f" WHEN {reason} = 'take_profit' THEN 'target'"
        f" WHEN {reason} GLOB 'signal*' THEN 'signal'"
        f" WHEN {reason} GLOB 'risk limit*' THEN 'risk_limit'"
        f" WHEN {reason} GLOB 'emergency exit*' THEN 'emergency_exit'"
        f" WHEN {reason} GLOB 'end of data*' THEN 'end_of_data'"
        " ELSE 'manual' END"
    )


_EXIT_KINDS_SQL = (
    "('signal', 'stop', 'trailing_stop', 'target', 'risk_limit', 'emergency_exit', 'manual', 'end_of_data')"
)
_ORDER_KINDS_SQL = "('entry', 'exit', 'stop', 'take_profit')"

_V3_KINDS = Migration(
    3,
    "trades.exit_kind, orders.kind and orders.exit_kind as their own columns, back-filled from the reason texts",
    (
        "ALTER TABLE trades ADD COLUMN exit_kind TEXT NOT NULL DEFAULT 'manual'"
        f" CHECK (exit_kind IN {_EXIT_KINDS_SQL})",
        f"UPDATE trades SET exit_kind = {_exit_kind_from_reason('reason')}",
        f"ALTER TABLE orders ADD COLUMN kind TEXT CHECK (kind IN {_ORDER_KINDS_SQL})",
        f"ALTER TABLE orders ADD COLUMN exit_kind TEXT CHECK (exit_kind IN {_EXIT_KINDS_SQL})",
        # The order manager wrote the kind as the reason's prefix; the paper recorder named fills -in / -out.
        "UPDATE orders SET kind = CASE"
        " WHEN reason GLOB 'entry:*' THEN 'entry'"
        " WHEN reason GLOB 'exit:*' THEN 'exit'"
        " WHEN reason GLOB 'stop:*' THEN 'stop'"
        " WHEN reason GLOB 'target:*' THEN 'take_profit'"
        " WHEN client_order_id GLOB 'sim-*-in' THEN 'entry'"
        " WHEN client_order_id GLOB 'sim-*-out' THEN 'exit'"
        " END",
        f"UPDATE orders SET exit_kind = {_exit_kind_from_reason('substr(reason, 7)')} WHERE reason GLOB 'exit: *'",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1_CORE, _V2_RECORDS, _V3_KINDS)
LATEST_VERSION: int = MIGRATIONS[-1].version


async def read_schema_version(conn: aiosqlite.Connection) -> int:
    """The version recorded in ``schema_version`` (0 for a file without that table or rows)."""
    rows = await conn.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    )
    if not list(rows):
        return 0
    rows = list(await conn.execute_fetchall("SELECT MAX(version) FROM schema_version"))
    value = rows[0][0] if rows else None
    return int(value) if value is not None else 0


async def apply_migrations(
    conn: aiosqlite.Connection, path: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> int:
    """Brings the file forward to the newest version in ``migrations``; returns that version.

    Args:
        conn: an open connection in autocommit mode (``isolation_level=None``).
        path: the file name, used in error messages.
        migrations: the steps, numbered 1..N without holes.

    Raises:
        StoreException: the file is newer than this code, or a step failed (that step is rolled back,
            earlier steps stay applied).
    """
    latest = migrations[-1].version if migrations else 0
    for step in migrations:
        # BEGIN IMMEDIATE takes the write lock first, so two processes opening the same old file
        # cannot both apply a step: the second re-reads the version after the first committed.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute(SCHEMA_VERSION_DDL)
            current = await read_schema_version(conn)
            if current > latest:
                raise StoreException(
                    f"{path}: database schema version {current} is newer than this code supports "
                    f"(version {latest}); upgrade tradebot or use another file"
                )
            if step.version <= current:
                await conn.execute("COMMIT")
                continue
            if step.version != current + 1:
                raise StoreException(f"{path}: schema version {current} has no step to {step.version}")
            for statement in step.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, description, applied_ms) VALUES (?, ?, ?)",
                (step.version, step.description, time.time_ns() // 1_000_000),
            )
            await conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            if isinstance(error, StoreException):
                raise
            if isinstance(error, sqlite3.Error):
                raise StoreException(f"{path}: migration to schema version {step.version} failed: {error}") from error
            raise
    return await read_schema_version(conn)
