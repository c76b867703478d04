"""Provides persistence of the trading state: orders, fills, positions, closed trades, equity, breakers, kv."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from engine.domain.models import (
    ClosedTrade,
    EquityPoint,
    ExitKind,
    Fill,
    Order,
    OrderKind,
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    Side,
    TradingState,
)
from engine.store.base import StoreBase, from_json, now_ms, to_json

_ORDER_COLUMNS = (
    "client_order_id, symbol, side, type, quantity, price, stop_price, status, exchange_order_id,"
    " filled_quantity, average_price, reduce_only, reason, created_ms, updated_ms, kind, exit_kind"
)
_POSITION_COLUMNS = (
    "symbol, side, quantity, entry_price, opened_ms, stop_price, trailing_stop_price, last_price, entry_fee"
)
_TRADE_COLUMNS = "symbol, side, quantity, entry_price, exit_price, entry_ms, exit_ms, pnl, fees, reason, exit_kind"
_TERMINAL_STATUSES = tuple(status.value for status in OrderStatus if status.is_terminal)

TRADING_STATE_KEY = "trading_state"


def _order_from_row(row: Any) -> Order:
    return Order(
        client_order_id=row[0],
        symbol=row[1],
        side=Side(row[2]),
        type=OrderType(row[3]),
        quantity=row[4],
        price=row[5],
        stop_price=row[6],
        status=OrderStatus(row[7]),
        exchange_order_id=row[8],
        filled_quantity=row[9],
        average_price=row[10],
        reduce_only=bool(row[11]),
        reason=row[12],
        created_ms=row[13],
        kind=None if row[15] is None else OrderKind(row[15]),
        exit_kind=None if row[16] is None else ExitKind(row[16]),
    )


def _position_from_row(row: Any) -> Position:
    return Position(
        symbol=row[0],
        side=PositionSide(row[1]),
        quantity=row[2],
        entry_price=row[3],
        opened_ms=row[4],
        stop_price=row[5],
        trailing_stop_price=row[6],
        last_price=row[7],
        entry_fee=row[8],
    )


def _trade_from_row(row: Any) -> ClosedTrade:
    return ClosedTrade(
        symbol=row[0],
        side=PositionSide(row[1]),
        quantity=row[2],
        entry_price=row[3],
        exit_price=row[4],
        entry_ms=row[5],
        exit_ms=row[6],
        pnl=row[7],
        fees=row[8],
        reason=row[9],
        exit_kind=ExitKind(row[10]),
    )


def _plain(value: Any) -> dict[str, Any]:
    """A frozen dataclass as a JSON-ready dict (enums become their string values)."""
    return {key: (item.value if hasattr(item, "value") else item) for key, item in asdict(value).items()}


class TradingStoreMixin(StoreBase):
    """Trading-state methods of ``engine.store.Store``."""

    # --- orders -------------------------------------------------------------------------------------

    async def save_order(self, order: Order, *, updated_ms: int | None = None) -> None:
        """Inserts the order or replaces every field of the stored one (same ``client_order_id``).

        Args:
            updated_ms: when this state was reached (UTC ms); defaults to ``order.created_ms``.
        """
        await self._execute(
            f"INSERT INTO orders ({_ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (client_order_id) DO UPDATE SET"
            " symbol = excluded.symbol, side = excluded.side, type = excluded.type,"
            " quantity = excluded.quantity, price = excluded.price, stop_price = excluded.stop_price,"
            " status = excluded.status, exchange_order_id = excluded.exchange_order_id,"
            " filled_quantity = excluded.filled_quantity, average_price = excluded.average_price,"
            " reduce_only = excluded.reduce_only, reason = excluded.reason,"
            " created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,"
            " kind = excluded.kind, exit_kind = excluded.exit_kind",
            (
                order.client_order_id,
                order.symbol,
                order.side.value,
                order.type.value,
                order.quantity,
                order.price,
                order.stop_price,
                order.status.value,
                order.exchange_order_id,
                order.filled_quantity,
                order.average_price,
                int(order.reduce_only),
                order.reason,
                order.created_ms,
                order.created_ms if updated_ms is None else updated_ms,
                None if order.kind is None else order.kind.value,
                None if order.exit_kind is None else order.exit_kind.value,
            ),
        )

    async def get_order(self, client_order_id: str) -> Order | None:
        row = await self._fetchone(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", (client_order_id,))
        return None if row is None else _order_from_row(row)

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders not yet filled, canceled or rejected (intent included: it may have reached the
        exchange before a crash), oldest first."""
        placeholders = ", ".join("?" for _ in _TERMINAL_STATUSES)
        sql = f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status NOT IN ({placeholders})"
        params: tuple[Any, ...] = _TERMINAL_STATUSES
        if symbol is not None:
            sql += " AND symbol = ?"
            params += (symbol,)
        rows = await self._fetchall(sql + " ORDER BY created_ms, client_order_id", params)
        return [_order_from_row(row) for row in rows]

    # --- fills, positions, trades ---------------------------------------------------------------------

    async def record_fill(
        self,
        fill: Fill,
        position: Position | None,
        closed_trade: ClosedTrade | None = None,
        *,
        order: Order | None = None,
    ) -> bool:
        """Records a fill and its consequences atomically.

        Args:
            fill: the fill; its order must already be stored (write-ahead intent).
            position: the position of ``fill.symbol`` after the fill, or None when it is now flat.
            closed_trade: the round trip this fill completed, if any.
            order: the order's new state (filled quantity, average price, status), if it changed.

        Returns:
            True if recorded; False if a fill with the same non-empty ``trade_id`` for the same order
            was recorded before, in which case nothing is written (replaying a fill is harmless).
        """
        async with self.transaction():
            if fill.trade_id:
                seen = await self._fetchone(
                    "SELECT 1 FROM fills WHERE client_order_id = ? AND trade_id = ?",
                    (fill.client_order_id, fill.trade_id),
                )
                if seen is not None:
                    return False
            await self._execute(
                "INSERT INTO fills (client_order_id, symbol, side, quantity, price, fee, fee_asset,"
                " trade_id, time_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fill.client_order_id,
                    fill.symbol,
                    fill.side.value,
                    fill.quantity,
                    fill.price,
                    fill.fee,
                    fill.fee_asset,
                    fill.trade_id,
                    fill.time_ms,
                ),
            )
            if order is not None:
                await self.save_order(order, updated_ms=fill.time_ms)
            if position is None:
                await self.delete_position(fill.symbol)
            else:
                await self.save_position(position)
            if closed_trade is not None:
                await self.record_trade(closed_trade)
        return True

    async def fills(self, client_order_id: str | None = None) -> list[Fill]:
        """Recorded fills, oldest first, optionally of one order."""
        sql = "SELECT client_order_id, symbol, side, quantity, price, fee, time_ms, fee_asset, trade_id FROM fills"
        params: tuple[Any, ...] = ()
        if client_order_id is not None:
            sql += " WHERE client_order_id = ?"
            params = (client_order_id,)
        rows = await self._fetchall(sql + " ORDER BY time_ms, id", params)
        return [Fill(row[0], row[1], Side(row[2]), row[3], row[4], row[5], row[6], row[7], row[8]) for row in rows]

    async def save_position(self, position: Position) -> None:
        """Stores the open position of ``position.symbol``, replacing the previous one."""
        await self._execute(
            f"INSERT OR REPLACE INTO positions ({_POSITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                position.symbol,
                position.side.value,
                position.quantity,
                position.entry_price,
                position.opened_ms,
                position.stop_price,
                position.trailing_stop_price,
                position.last_price,
                position.entry_fee,
            ),
        )

    async def delete_position(self, symbol: str) -> bool:
        """Forgets the open position of ``symbol``; returns whether there was one."""
        return await self._execute_rowcount("DELETE FROM positions WHERE symbol = ?", (symbol,)) > 0

    async def open_positions(self) -> list[Position]:
        rows = await self._fetchall(f"SELECT {_POSITION_COLUMNS} FROM positions ORDER BY symbol")
        return [_position_from_row(row) for row in rows]

    async def record_trade(self, trade: ClosedTrade) -> int:
        """Appends a closed trade; returns its id. ``record_fill`` calls this in its transaction."""
        return await self._execute(
            f"INSERT INTO trades ({_TRADE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                trade.symbol,
                trade.side.value,
                trade.quantity,
                trade.entry_price,
                trade.exit_price,
                trade.entry_ms,
                trade.exit_ms,
                trade.pnl,
                trade.fees,
                trade.reason,
                trade.exit_kind.value,
            ),
        )

    async def trades(
        self, symbol: str | None = None, since_ms: int | None = None, limit: int | None = None
    ) -> list[ClosedTrade]:
        """Closed trades ordered by exit time, oldest first.

        Args:
            since_ms: only trades exited at or after this time (UTC ms).
            limit: at most this many of the newest matching trades.
        """
        where: list[str] = []
        params: list[Any] = []
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        if since_ms is not None:
            where.append("exit_ms >= ?")
            params.append(since_ms)
        sql = f"SELECT {_TRADE_COLUMNS}, id FROM trades"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY exit_ms DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._fetchall(sql, params)
        return [_trade_from_row(row) for row in reversed(rows)]

    # --- equity -------------------------------------------------------------------------------------

    async def append_equity(self, point: EquityPoint) -> None:
        """Stores an equity snapshot; a second snapshot at the same ``time_ms`` replaces the first."""
        await self._execute(
            "INSERT OR REPLACE INTO equity (time_ms, equity, cash, unrealized) VALUES (?, ?, ?, ?)",
            (point.time_ms, point.equity, point.cash, point.unrealized_pnl),
        )

    async def equity_history(self, limit: int | None = None, since_ms: int | None = None) -> list[EquityPoint]:
        """Equity snapshots oldest first: the newest ``limit`` of them, at or after ``since_ms``."""
        sql = "SELECT time_ms, equity, cash, unrealized FROM equity"
        params: list[Any] = []
        if since_ms is not None:
            sql += " WHERE time_ms >= ?"
            params.append(since_ms)
        sql += " ORDER BY time_ms DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._fetchall(sql, params)
        return [EquityPoint(row[0], row[1], row[2], row[3]) for row in reversed(rows)]

    # --- breakers -----------------------------------------------------------------------------------

    async def record_breaker_transition(
        self, name: str, state_json: Mapping[str, Any], event: str, *, time_ms: int | None = None
    ) -> None:
        """Appends a breaker transition and makes ``state_json`` the breaker's latest state, atomically.

        Args:
            name: breaker name, e.g. ``daily_loss``.
            state_json: the breaker's full state after the transition (JSON-serialisable mapping).
            event: what happened, e.g. ``tripped``, ``half_open``, ``reset``.
            time_ms: when (UTC ms); defaults to now.
        """
        when = now_ms() if time_ms is None else time_ms
        text = to_json(dict(state_json))
        async with self.transaction():
            await self._execute(
                "INSERT INTO breaker_events (name, time_ms, event, state_json) VALUES (?, ?, ?, ?)",
                (name, when, event, text),
            )
            await self._execute(
                "INSERT OR REPLACE INTO breaker_state (name, state_json, updated_ms) VALUES (?, ?, ?)",
                (name, text, when),
            )

    async def breaker_states(self) -> dict[str, dict[str, Any]]:
        """The latest state of every breaker that ever transitioned, by name."""
        rows = await self._fetchall("SELECT name, state_json FROM breaker_state ORDER BY name")
        return {row[0]: from_json(row[1]) for row in rows}

    async def breaker_events(self, name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Breaker transitions oldest first (the newest ``limit``): seq, name, time_ms, event, state."""
        sql = "SELECT seq, name, time_ms, event, state_json FROM breaker_events"
        params: list[Any] = []
        if name is not None:
            sql += " WHERE name = ?"
            params.append(name)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._fetchall(sql, params)
        return [
            {"seq": r[0], "name": r[1], "time_ms": r[2], "event": r[3], "state": from_json(r[4])}
            for r in reversed(rows)
        ]

    # --- key/value ----------------------------------------------------------------------------------

    async def get_state(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        row = await self._fetchone("SELECT value_json FROM kv_state WHERE key = ?", (key,))
        return default if row is None else from_json(row[0])

    async def set_state(self, key: str, value: Any, *, time_ms: int | None = None) -> None:
        """Stores a JSON-serialisable value under ``key`` (enums are stored as their value)."""
        if hasattr(value, "value") and isinstance(value.value, str | int):
            value = value.value
        await self._execute(
            "INSERT OR REPLACE INTO kv_state (key, value_json, updated_ms) VALUES (?, ?, ?)",
            (key, to_json(value), now_ms() if time_ms is None else time_ms),
        )

    # --- summary ------------------------------------------------------------------------------------

    async def status_summary(self) -> dict[str, Any]:
        """A JSON-serialisable view for ``tradebot status --json``.

        Keys: ``trading_state`` (str), ``positions`` and ``orders`` (lists of dicts, open ones only),
        ``equity`` (latest snapshot dict or None), ``breakers`` (latest state by name),
        ``schema_version``, ``path``.
        """
        async with self._reading():
            trading_state = await self.get_state(TRADING_STATE_KEY, TradingState.ACTIVE.value)
            positions = await self.open_positions()
            orders = await self.open_orders()
            latest = await self.equity_history(limit=1)
            breakers = await self.breaker_states()
            version = await self.schema_version()
        return {
            "trading_state": str(trading_state),
            "positions": [_plain(position) for position in positions],
            "orders": [_plain(order) for order in orders],
            "equity": _plain(latest[-1]) if latest else None,
            "breakers": breakers,
            "schema_version": version,
            "path": str(self.path),
        }
