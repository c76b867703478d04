"""Provides the tamper-evident audit log: a hash chain over the ``audit_log`` table.

Each row's ``hash`` is ``sha256(prev_hash + canonical JSON of {seq, time_ms, actor, action, detail})``
and its ``prev_hash`` is the previous row's ``hash`` (64 zeros for the first row). ``seq`` counts
1, 2, 3... without gaps. The newest ``(seq, hash)`` is also kept in ``kv_state`` under
:data:`AUDIT_HEAD_KEY`, so deleting rows from the end is noticed too.

Limits: anyone who can write the file *and* knows this scheme can rebuild a consistent chain; the
chain makes edits evident, it does not make them impossible. Keeping backups elsewhere pins history.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from engine.store import AuditRow

GENESIS_HASH = "0" * 64
AUDIT_HEAD_KEY = "audit.head"
VERIFY_PAGE_ROWS = 1_000


class AuditAction(enum.StrEnum):
    """Action names written to the audit log; the runtime records one row per command."""

    HALT = "halt"
    RESUME = "resume"
    EMERGENCY_EXIT = "emergency_exit"
    CLOSE_POSITION = "close_position"
    PARAMETER_CHANGE = "parameter_change"
    PARAMETER_CHANGE_DENIED = "parameter_change_denied"
    BREAKER_OVERRIDE = "breaker_override"
    LOGIN_SUCCESS = "login_success"
    LOGIN_FAILURE = "login_failure"
    SECRETS_CHANGED = "secrets_changed"
    BACKUP_CREATED = "backup_created"
    DATABASE_RESTORED = "database_restored"
    ENGINE_STARTED = "engine_started"
    ENGINE_STOPPED = "engine_stopped"


class AuditStore(Protocol):
    """The part of ``engine.store.Store`` the audit log needs."""

    def transaction(self) -> Any: ...

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
    ) -> int: ...

    async def audit_rows(self, after_seq: int = 0, limit: int | None = None) -> list[AuditRow]: ...

    async def last_audit_row(self) -> AuditRow | None: ...

    async def get_state(self, key: str, default: Any = None) -> Any: ...

    async def set_state(self, key: str, value: Any, *, time_ms: int | None = None) -> None: ...


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking the chain.

    Attributes:
        ok: every row is intact and the chain is complete.
        first_broken_seq: the first row found broken (for a truncated log: the first missing seq).
        reason: what is wrong with that row, or "" when ok.
        rows_checked: how many rows were read.
        broken_row: the stored row at ``first_broken_seq`` when there is one.
    """

    ok: bool
    first_broken_seq: int | None = None
    reason: str = ""
    rows_checked: int = 0
    broken_row: AuditRow | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One audit row with its detail decoded, for display."""

    seq: int
    time_ms: int
    actor: str
    action: str
    detail: Any
    hash: str


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON with non-ASCII kept as is; numpy scalars, Decimals and enums become plain values.

    Raises:
        ValueError: the value holds NaN or infinity, or something that has no JSON form.
    """
    try:
        return json.dumps(
            value, default=_json_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except TypeError as error:
        raise ValueError(str(error)) from None


def row_hash(prev_hash: str, seq: int, time_ms: int, actor: str, action: str, detail: Any) -> str:
    """The hex sha256 that chains one row to its predecessor."""
    body = canonical_json({"seq": seq, "time_ms": time_ms, "actor": actor, "action": action, "detail": detail})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def verify_rows(rows: Iterable[AuditRow], head: Mapping[str, Any] | None = None) -> VerifyResult:
    """Checks a whole chain given in ``seq`` order.

    Args:
        rows: every audit row, ascending ``seq``.
        head: the recorded chain head ``{"seq": int, "hash": str}``, or None when none was recorded.
    """
    checker = ChainChecker()
    for row in rows:
        result = checker.check(row)
        if result is not None:
            return result
    return checker.finish(head)


class ChainChecker:
    """Incremental chain verification, so a long log can be checked page by page."""

    def __init__(self) -> None:
        self._expected_seq = 1
        self._prev_hash = GENESIS_HASH
        self._checked = 0

    def check(self, row: AuditRow) -> VerifyResult | None:
        """Checks the next row; returns the failure, or None when the row is intact."""
        self._checked += 1
        if row.seq != self._expected_seq:
            return self._broken(
                row, f"expected seq {self._expected_seq}, found {row.seq}: rows were deleted or reordered"
            )
        if row.prev_hash != self._prev_hash:
            previous = "the chain start" if row.seq == 1 else f"row {row.seq - 1}"
            return self._broken(row, f"prev_hash does not match {previous}: a row was replaced, removed or moved")
        try:
            detail = json.loads(row.detail_json)
            canonical = canonical_json(detail)
        except ValueError:
            return self._broken(row, "detail_json is not valid JSON: the row was edited")
        if canonical != row.detail_json:
            return self._broken(row, "detail_json was rewritten: the row was edited")
        expected = row_hash(row.prev_hash, row.seq, row.time_ms, row.actor, row.action, detail)
        if expected != row.hash:
            return self._broken(row, "content does not match its hash: the row was edited")
        self._expected_seq = row.seq + 1
        self._prev_hash = row.hash
        return None

    def finish(self, head: Mapping[str, Any] | None) -> VerifyResult:
        """The verdict after the last row, comparing the chain's end with the recorded head."""
        last_seq = self._expected_seq - 1
        if head is None:
            if last_seq > 0:
                return VerifyResult(False, last_seq, "the recorded chain head is missing", self._checked)
            return VerifyResult(True, rows_checked=self._checked)
        head_seq = head.get("seq")
        head_hash = head.get("hash")
        if not isinstance(head_seq, int) or head_seq > last_seq:
            return VerifyResult(
                False,
                last_seq + 1,
                f"the log ends at seq {last_seq} but the recorded head is seq {head_seq}: rows were deleted "
                "from the end",
                self._checked,
            )
        if head_seq < last_seq or head_hash != self._prev_hash:
            return VerifyResult(False, head_seq, "the recorded chain head does not match the log", self._checked)
        return VerifyResult(True, rows_checked=self._checked)

    def _broken(self, row: AuditRow, reason: str) -> VerifyResult:
        return VerifyResult(False, row.seq, reason, self._checked, row)


class AuditLog:
    """Appends to and verifies the hash-chained audit log in a store.

    Args:
        store: an open ``engine.store.Store`` (or anything with the same audit and kv methods).
    """

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def append(self, actor: str, action: str, detail: Mapping[str, Any] | None, now_ms: int) -> AuditEntry:
        """Appends one row, chained to the current head, in one transaction.

        Args:
            actor: who did it (``console``, ``telegram:<chat id>``, ``engine``, ``cli``).
            action: what was done, normally an :class:`AuditAction`.
            detail: JSON-serialisable facts (old and new values...); never secrets.
            now_ms: when, UTC ms.

        Raises:
            ValueError: ``detail`` cannot be written as JSON.
            StoreException: the row could not be written.
        """
        action_name = str(action.value if isinstance(action, enum.Enum) else action)
        detail_json = canonical_json(dict(detail or {}))
        decoded = json.loads(detail_json)
        async with self._store.transaction():
            last = await self._store.last_audit_row()
            seq = 1 if last is None else last.seq + 1
            prev_hash = GENESIS_HASH if last is None else last.hash
            digest = row_hash(prev_hash, seq, now_ms, actor, action_name, decoded)
            await self._store.append_audit_row(
                seq=seq,
                time_ms=now_ms,
                actor=actor,
                action=action_name,
                detail_json=detail_json,
                prev_hash=prev_hash,
                hash=digest,
            )
            await self._store.set_state(AUDIT_HEAD_KEY, {"seq": seq, "hash": digest}, time_ms=now_ms)
        return AuditEntry(seq, now_ms, actor, action_name, decoded, digest)

    async def verify(self) -> VerifyResult:
        """Checks every row and the recorded head; reports the first broken row."""
        checker = ChainChecker()
        after = 0
        while True:
            page = await self._store.audit_rows(after_seq=after, limit=VERIFY_PAGE_ROWS)
            for row in page:
                result = checker.check(row)
                if result is not None:
                    return result
            if len(page) < VERIFY_PAGE_ROWS:
                break
            after = page[-1].seq
        head = await self._store.get_state(AUDIT_HEAD_KEY)
        return checker.finish(head if isinstance(head, Mapping) else None)

    async def entries(self, limit: int | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries (all when None), oldest first."""
        after = 0
        if limit is not None:
            last = await self._store.last_audit_row()
            after = 0 if last is None else max(0, last.seq - limit)
        rows = await self._store.audit_rows(after_seq=after, limit=limit)
        return [_entry(row) for row in rows]


def _entry(row: AuditRow) -> AuditEntry:
    try:
        detail = json.loads(row.detail_json)
    except ValueError:
        detail = row.detail_json
    return AuditEntry(row.seq, row.time_ms, row.actor, row.action, detail, row.hash)


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} has no JSON form")
