"""The store's low-level records: audit log rows, notification outbox, backtest runs and optimisations."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from engine.domain.errors import StoreException
from engine.store import OutboxStatus, Store

T0 = 1_700_000_000_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "records.sqlite") as opened:
        yield opened


async def test_audit_rows_are_appended_in_sequence_and_read_back_verbatim(store: Store) -> None:
    detail = '{"b":1, "a":[1.5]}'  # exact text is kept: the hash chain is computed over it
    first = await store.append_audit_row(
        time_ms=T0, actor="console", action="halt", detail_json=detail, prev_hash="0" * 64, hash="h1"
    )
    second = await store.append_audit_row(
        time_ms=T0 + 1, actor="telegram", action="resume", detail_json="{}", prev_hash="h1", hash="h2"
    )
    assert (first, second) == (1, 2)
    rows = await store.audit_rows()
    assert [r.seq for r in rows] == [1, 2]
    assert rows[0].detail_json == detail and rows[1].prev_hash == "h1"
    assert [r.seq for r in await store.audit_rows(after_seq=1)] == [2]
    head = await store.last_audit_row()
    assert head is not None and head.hash == "h2"


async def test_audit_seq_cannot_be_reused(store: Store) -> None:
    await store.append_audit_row(time_ms=T0, actor="a", action="x", detail_json="{}", prev_hash="", hash="1")
    with pytest.raises(StoreException):
        await store.append_audit_row(seq=1, time_ms=T0, actor="a", action="y", detail_json="{}", prev_hash="", hash="2")
    assert len(await store.audit_rows()) == 1


async def test_store_has_no_audit_update_or_delete_api(store: Store) -> None:
    names = [name for name in dir(store) if "audit" in name]
    assert not [name for name in names if any(verb in name for verb in ("update", "delete", "remove"))]


async def test_raw_tampering_with_audit_rows_is_visible_to_readers(store: Store) -> None:
    await store.append_audit_row(time_ms=T0, actor="a", action="x", detail_json="{}", prev_hash="", hash="1")
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("UPDATE audit_log SET action = 'tampered'")
    conn.close()
    assert (await store.audit_rows())[0].action == "tampered"


async def test_outbox_message_is_due_then_retried_then_sent(store: Store) -> None:
    message_id = await store.enqueue_notification("fill", "BUY 0.1 BTC", created_ms=T0)
    assert [m.id for m in await store.due_notifications(T0)] == [message_id]

    await store.mark_notification_failed(message_id, "timeout", next_attempt_ms=T0 + 2_000)
    assert await store.due_notifications(T0 + 1_999) == []
    [retry] = await store.due_notifications(T0 + 2_000)
    assert retry.attempts == 1 and retry.last_error == "timeout" and retry.status == OutboxStatus.PENDING

    await store.mark_notification_sent(message_id, sent_ms=T0 + 2_001)
    assert await store.due_notifications(T0 + 10_000) == []
    [sent] = await store.outbox_messages(OutboxStatus.SENT)
    assert sent.sent_ms == T0 + 2_001 and sent.attempts == 2 and sent.text == "BUY 0.1 BTC"


async def test_outbox_message_given_up_is_never_due_again(store: Store) -> None:
    message_id = await store.enqueue_notification("alert", "breaker tripped", created_ms=T0)
    await store.mark_notification_failed(message_id, "403 forbidden", next_attempt_ms=None, give_up=True)
    assert await store.due_notifications(T0 + 10**9) == []
    assert [m.status for m in await store.outbox_messages()] == [OutboxStatus.FAILED]


async def test_due_notifications_come_oldest_first_and_respect_limit(store: Store) -> None:
    ids = [await store.enqueue_notification("k", str(i), created_ms=T0 + 10 - i) for i in range(3)]
    due = await store.due_notifications(T0 + 100, limit=2)
    assert [m.id for m in due] == [ids[2], ids[1]]


async def test_backtest_run_round_trips_with_numpy_values(store: Store) -> None:
    metrics = {"sharpe": np.float64(1.25), "trades": np.int64(42), "curve": np.array([1.0, 2.0])}
    run_id = await store.save_backtest_run(
        "sma-cross", {"fast": 10, "slow": 50}, metrics, {"equity": [1.0, 1.1]}, created_ms=T0
    )
    run = await store.get_backtest_run(run_id)
    assert run is not None
    assert (run.id, run.created_ms, run.name) == (run_id, T0, "sma-cross")
    assert run.params == {"fast": 10, "slow": 50}
    assert run.metrics == {"sharpe": 1.25, "trades": 42, "curve": [1.0, 2.0]}
    assert run.result == {"equity": [1.0, 1.1]}
    assert await store.get_backtest_run(run_id + 1) is None


async def test_backtest_runs_are_listed_newest_first_without_results(store: Store) -> None:
    for name in ("a", "b", "c"):
        await store.save_backtest_run(name, {}, {"n": name}, {"big": [0] * 10})
    runs = await store.list_backtest_runs(limit=2)
    assert [run.name for run in runs] == ["c", "b"]
    assert all(run.result is None for run in runs)


async def test_optimization_results_are_ranked_by_score(store: Store) -> None:
    run_id = await store.save_backtest_run("opt", {"grid": "fast x slow"}, {})
    stored = await store.save_optimization_results(
        run_id,
        [({"fast": 5}, {"sharpe": 0.5}, 0.5), ({"fast": 9}, {"sharpe": 1.5}, 1.5), ({"fast": 7}, {}, None)],
    )
    assert stored == 3
    ranked = await store.optimization_results(run_id)
    assert [r.params["fast"] for r in ranked] == [9, 5, 7]
    assert [r.params["fast"] for r in await store.optimization_results(run_id, limit=1)] == [9]


async def test_optimization_results_need_an_existing_run(store: Store) -> None:
    with pytest.raises(StoreException, match="FOREIGN KEY"):
        await store.save_optimization_results(999, [({}, {}, 1.0)])
