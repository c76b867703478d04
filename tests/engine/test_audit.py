"""Specification of the hash-chained audit log: appends chain, any edit, deletion or reordering is found."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.security.audit import (
    AUDIT_HEAD_KEY,
    GENESIS_HASH,
    AuditAction,
    AuditLog,
    canonical_json,
    row_hash,
    verify_rows,
)
from engine.store import AuditRow, Store

T0 = 1_700_000_000_000


@pytest.fixture
async def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.sqlite"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    async with Store.open(db_path) as opened:
        yield opened


async def fill(log: AuditLog, count: int) -> None:
    for i in range(count):
        await log.append(
            "console", AuditAction.PARAMETER_CHANGE, {"parameter": "risk.x", "old": i, "new": i + 1}, T0 + i
        )


def raw_sql(db_path: Path, *statements: str) -> None:
    """Tampers with the file behind the store's back, as an intruder with file access would."""
    connection = sqlite3.connect(db_path)
    with connection:
        for statement in statements:
            connection.execute(statement)
    connection.close()


def test_row_hash_is_sha256_of_prev_hash_and_canonical_row() -> None:
    body = '{"action":"halt","actor":"console","detail":{"why":"test"},"seq":1,"time_ms":5}'
    expected = hashlib.sha256((GENESIS_HASH + body).encode()).hexdigest()
    assert row_hash(GENESIS_HASH, 1, 5, "console", "halt", {"why": "test"}) == expected


def test_canonical_json_sorts_keys_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_canonical_json_refuses_values_without_a_json_form() -> None:
    with pytest.raises(ValueError, match="no JSON form"):
        canonical_json({"x": object()})


async def test_append_chains_each_row_to_the_previous(store: Store) -> None:
    log = AuditLog(store)
    first = await log.append("console", AuditAction.HALT, {"reason": "manual"}, T0)
    second = await log.append("telegram:42", AuditAction.RESUME, {}, T0 + 1)
    rows = await store.audit_rows()
    assert [row.seq for row in rows] == [1, 2]
    assert rows[0].prev_hash == GENESIS_HASH
    assert rows[1].prev_hash == first.hash
    assert rows[1].hash == second.hash


async def test_append_records_the_chain_head(store: Store) -> None:
    entry = await AuditLog(store).append("console", AuditAction.HALT, None, T0)
    assert await store.get_state(AUDIT_HEAD_KEY) == {"seq": 1, "hash": entry.hash}


async def test_intact_log_verifies(store: Store) -> None:
    log = AuditLog(store)
    await fill(log, 5)
    result = await log.verify()
    assert result.ok
    assert result.rows_checked == 5
    assert result.first_broken_seq is None


async def test_empty_log_verifies(store: Store) -> None:
    assert (await AuditLog(store).verify()).ok


async def test_verify_reads_a_log_longer_than_one_page(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.security.audit.VERIFY_PAGE_ROWS", 3)
    log = AuditLog(store)
    await fill(log, 7)
    result = await log.verify()
    assert result.ok
    assert result.rows_checked == 7


async def test_concurrent_appends_keep_one_unbroken_chain(store: Store) -> None:
    import asyncio

    log = AuditLog(store)
    await asyncio.gather(*(log.append("engine", AuditAction.CLOSE_POSITION, {"n": i}, T0 + i) for i in range(20)))
    assert (await log.verify()).ok


async def test_edited_detail_is_found_at_that_row(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 5)
    raw_sql(db_path, """UPDATE audit_log SET detail_json = '{"new":99,"old":2,"parameter":"risk.x"}' WHERE seq = 3""")
    result = await log.verify()
    assert not result.ok
    assert result.first_broken_seq == 3
    assert "edited" in result.reason
    assert result.broken_row is not None and result.broken_row.seq == 3


async def test_edited_actor_is_found(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 3)
    raw_sql(db_path, "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
    assert (await log.verify()).first_broken_seq == 2


async def test_whitespace_rewrite_of_detail_is_found(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 3)
    raw_sql(
        db_path, """UPDATE audit_log SET detail_json = '{"new": 2, "old": 1, "parameter": "risk.x"}' WHERE seq = 2"""
    )
    result = await log.verify()
    assert result.first_broken_seq == 2
    assert "rewritten" in result.reason


async def test_edit_with_recomputed_hash_breaks_the_next_row(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 4)
    rows = await store.audit_rows()
    forged_detail = {"parameter": "risk.x", "old": 1, "new": 50}
    forged_hash = row_hash(rows[1].prev_hash, 2, rows[1].time_ms, rows[1].actor, rows[1].action, forged_detail)
    raw_sql(
        db_path,
        f"UPDATE audit_log SET detail_json = '{canonical_json(forged_detail)}', hash = '{forged_hash}' WHERE seq = 2",
    )
    result = await log.verify()
    assert result.first_broken_seq == 3
    assert "prev_hash" in result.reason


async def test_deleted_middle_row_is_found_as_a_gap(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 5)
    raw_sql(db_path, "DELETE FROM audit_log WHERE seq = 3")
    result = await log.verify()
    assert result.first_broken_seq == 4
    assert "expected seq 3" in result.reason


async def test_deleted_first_row_is_found(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 3)
    raw_sql(db_path, "DELETE FROM audit_log WHERE seq = 1")
    assert (await log.verify()).first_broken_seq == 2


async def test_deleted_middle_row_with_renumbering_is_found_by_prev_hash(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 5)
    raw_sql(db_path, "DELETE FROM audit_log WHERE seq = 3", "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")
    result = await log.verify()
    assert not result.ok
    assert result.first_broken_seq == 3


async def test_deleted_last_rows_are_found_through_the_recorded_head(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 5)
    raw_sql(db_path, "DELETE FROM audit_log WHERE seq >= 4")
    result = await log.verify()
    assert not result.ok
    assert result.first_broken_seq == 4
    assert "deleted from the end" in result.reason


async def test_deleted_head_record_is_found(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 2)
    raw_sql(db_path, f"DELETE FROM kv_state WHERE key = '{AUDIT_HEAD_KEY}'")
    result = await log.verify()
    assert not result.ok
    assert "head is missing" in result.reason


async def test_swapped_rows_are_found(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 5)
    raw_sql(
        db_path,
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    )
    result = await log.verify()
    assert result.first_broken_seq == 2
    assert "prev_hash" in result.reason


async def test_inserted_row_is_found(store: Store, db_path: Path) -> None:
    log = AuditLog(store)
    await fill(log, 3)
    raw_sql(
        db_path,
        "UPDATE audit_log SET seq = -seq WHERE seq >= 2",
        "UPDATE audit_log SET seq = 1 - seq WHERE seq < 0",
        f"INSERT INTO audit_log VALUES (2, {T0}, 'x', 'halt', '{{}}', '{GENESIS_HASH}', '{GENESIS_HASH}')",
    )
    assert (await log.verify()).first_broken_seq == 2


async def test_entries_returns_the_newest_rows_oldest_first(store: Store) -> None:
    log = AuditLog(store)
    await fill(log, 6)
    entries = await log.entries(limit=2)
    assert [e.seq for e in entries] == [5, 6]
    assert entries[0].detail == {"parameter": "risk.x", "old": 4, "new": 5}


async def test_append_after_verify_keeps_the_chain_intact(store: Store) -> None:
    log = AuditLog(store)
    await fill(log, 2)
    assert (await log.verify()).ok
    await log.append("cli", AuditAction.BACKUP_CREATED, {"file": "b.enc"}, T0 + 10)
    assert (await log.verify()).ok


def chain(details: list[dict[str, int]]) -> list[AuditRow]:
    rows, prev = [], GENESIS_HASH
    for i, detail in enumerate(details, start=1):
        digest = row_hash(prev, i, T0 + i, "a", "halt", detail)
        rows.append(AuditRow(i, T0 + i, "a", "halt", canonical_json(detail), prev, digest))
        prev = digest
    return rows


@settings(max_examples=40, deadline=None)
@given(
    details=st.lists(st.dictionaries(st.sampled_from("abc"), st.integers(-5, 5)), min_size=2, max_size=8),
    data=st.data(),
)
def test_any_single_field_edit_is_found_at_or_before_the_next_row(
    details: list[dict[str, int]], data: st.DataObject
) -> None:
    rows = chain(details)
    head = {"seq": rows[-1].seq, "hash": rows[-1].hash}
    assert verify_rows(rows, head).ok
    index = data.draw(st.integers(0, len(rows) - 1))
    field = data.draw(st.sampled_from(["time_ms", "actor", "action", "detail_json"]))
    original = rows[index]
    changed = {
        "time_ms": original.time_ms + 1,
        "actor": original.actor + "x",
        "action": "resume",
        "detail_json": json.dumps({"tampered": True}, separators=(",", ":")),
    }[field]
    tampered = list(rows)
    tampered[index] = AuditRow(**{**original.__dict__, field: changed})
    result = verify_rows(tampered, head)
    assert not result.ok
    assert result.first_broken_seq == original.seq
