"""Provides the append-mostly records: audit log rows, the notification outbox and backtest runs.

These are deliberately low level. The audit hash chain and the outbox retry policy live in their own
modules and compose these calls inside ``store.transaction()``. The audit log has no update or delete
method on purpose.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.store.base import StoreBase, from_json, now_ms, to_json


@dataclass(frozen=True)
class AuditRow:
    """One audit log row; ``detail_json`` is kept as the exact text that was hashed."""

    seq: int
    time_ms: int
    actor: str
    action: str
    detail_json: str
    prev_hash: str
    hash: str


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up: will not be retried


@dataclass(frozen=True)
class OutboxMessage:
    """One queued notification; times in UTC ms."""

    id: int
    created_ms: int
    kind: str
    text: str
    attempts: int
    next_attempt_ms: int
    sent_ms: int | None
    last_error: str | None
    status: str


@dataclass(frozen=True)
class BacktestRunRecord:
    """A stored backtest run; ``result`` is None in listings (it can be large)."""

    id: int
    created_ms: int
    name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    result: Any = None


@dataclass(frozen=True)
class OptimizationResult:
    """One evaluated parameter set of an optimisation run."""

    run_id: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    score: float | None


_OUTBOX_COLUMNS = "id, created_ms, kind, text, attempts, next_attempt_ms, sent_ms, last_error, status"


class RecordStoreMixin(StoreBase):
    """Audit, outbox and backtest-run methods of ``engine.store.Store``."""

    # --- audit log ----------------------------------------------------------------------------------

    async def append_audit_row(
        self,
        *,
        time_ms: int,
        actor: str,
        action: str,
        detail_json: str,
        prev_hash: str,
        hash: str,
        seq: int | None = None,
    ) -> int:
        """Appends one audit row and returns its ``seq`` (next integer when ``seq`` is None).

        Raises:
            StoreException: ``seq`` is already taken.
        """
        return await self._execute(
            "INSERT INTO audit_log (seq, time_ms, actor, action, detail_json, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, time_ms, actor, action, detail_json, prev_hash, hash),
        )

    async def audit_rows(self, after_seq: int = 0, limit: int | None = None) -> list[AuditRow]:
        """Audit rows with ``seq > after_seq`` in ``seq`` order (at most ``limit``)."""
        sql = (
            "SELECT seq, time_ms, actor, action, detail_json, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq"
        )
        params: list[Any] = [after_seq]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [AuditRow(*row) for row in await self._fetchall(sql, params)]

    async def last_audit_row(self) -> AuditRow | None:
        """The row with the highest ``seq`` (the chain head), or None for an empty log."""
        row = await self._fetchone(
            "SELECT seq, time_ms, actor, action, detail_json, prev_hash, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        )
        return None if row is None else AuditRow(*row)

    # --- notification outbox ------------------------------------------------------------------------

    async def enqueue_notification(
        self, kind: str, text: str, *, created_ms: int | None = None, next_attempt_ms: int | None = None
    ) -> int:
        """Queues a message to send; returns its id. It is due at ``next_attempt_ms`` (default: now)."""
        created = now_ms() if created_ms is None else created_ms
        return await self._execute(
            "INSERT INTO notification_outbox (created_ms, kind, text, next_attempt_ms) VALUES (?, ?, ?, ?)",
            (created, kind, text, created if next_attempt_ms is None else next_attempt_ms),
        )

    async def due_notifications(self, now: int, limit: int = 50) -> list[OutboxMessage]:
        """Pending messages whose next attempt time has come, oldest first."""
        rows = await self._fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM notification_outbox"
            " WHERE status = 'pending' AND next_attempt_ms <= ? ORDER BY next_attempt_ms, id LIMIT ?",
            (now, limit),
        )
        return [OutboxMessage(*row) for row in rows]

    async def outbox_messages(self, status: str | None = None) -> list[OutboxMessage]:
        """Every outbox message (optionally of one status), by id."""
        sql = f"SELECT {_OUTBOX_COLUMNS} FROM notification_outbox"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        return [OutboxMessage(*row) for row in await self._fetchall(sql + " ORDER BY id", params)]

    async def mark_notification_sent(self, message_id: int, sent_ms: int) -> None:
        await self._execute(
            "UPDATE notification_outbox SET status = 'sent', sent_ms = ?, attempts = attempts + 1 WHERE id = ?",
            (sent_ms, message_id),
        )

    async def mark_notification_failed(
        self, message_id: int, error: str, *, next_attempt_ms: int | None, give_up: bool = False
    ) -> None:
        """Counts a failed attempt; retried at ``next_attempt_ms`` unless ``give_up`` (status failed)."""
        await self._execute(
            "UPDATE notification_outbox SET attempts = attempts + 1, last_error = ?,"
            " next_attempt_ms = COALESCE(?, next_attempt_ms), status = ? WHERE id = ?",
            (error, next_attempt_ms, (OutboxStatus.FAILED if give_up else OutboxStatus.PENDING).value, message_id),
        )

    # --- backtest runs and optimisation results -------------------------------------------------------

    async def save_backtest_run(
        self,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        result: Any = None,
        *,
        created_ms: int | None = None,
    ) -> int:
        """Stores a backtest run (numpy values are converted to plain JSON); returns its id."""
        return await self._execute(
            "INSERT INTO backtest_runs (created_ms, name, params_json, metrics_json, result_json)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                now_ms() if created_ms is None else created_ms,
                name,
                to_json(dict(params)),
                to_json(dict(metrics)),
                None if result is None else to_json(result),
            ),
        )

    async def get_backtest_run(self, run_id: int) -> BacktestRunRecord | None:
        row = await self._fetchone(
            "SELECT id, created_ms, name, params_json, metrics_json, result_json FROM backtest_runs WHERE id = ?",
            (run_id,),
        )
        if row is None:
            return None
        return BacktestRunRecord(row[0], row[1], row[2], from_json(row[3]), from_json(row[4]), from_json(row[5]))

    async def list_backtest_runs(self, limit: int | None = None) -> list[BacktestRunRecord]:
        """Runs newest first, without their (possibly large) ``result``."""
        sql = "SELECT id, created_ms, name, params_json, metrics_json FROM backtest_runs ORDER BY id DESC"
        params: tuple[Any, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (limit,)
        rows = await self._fetchall(sql, params)
        return [BacktestRunRecord(row[0], row[1], row[2], from_json(row[3]), from_json(row[4])) for row in rows]

    async def save_optimization_results(
        self, run_id: int, results: Iterable[tuple[Mapping[str, Any], Mapping[str, Any], float | None]]
    ) -> int:
        """Stores (params, metrics, score) rows of one optimisation run in one transaction; returns count."""
        rows = [(run_id, to_json(dict(p)), to_json(dict(m)), s) for p, m, s in results]
        await self._executemany(
            "INSERT INTO optimization_results (run_id, params_json, metrics_json, score) VALUES (?, ?, ?, ?)",
            rows,
        )
        return len(rows)

    async def optimization_results(self, run_id: int, limit: int | None = None) -> list[OptimizationResult]:
        """Results of one run, best score first (rows without a score last)."""
        sql = (
            "SELECT run_id, params_json, metrics_json, score FROM optimization_results WHERE run_id = ?"
            " ORDER BY score IS NULL, score DESC, id"
        )
        params: list[Any] = [run_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._fetchall(sql, params)
        return [OptimizationResult(row[0], from_json(row[1]), from_json(row[2]), row[3]) for row in rows]
