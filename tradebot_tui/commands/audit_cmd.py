"""Provides ``tradebot audit verify`` and ``tradebot audit show``: the hash-chained audit log."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.security.audit import AuditEntry, AuditLog, VerifyResult
from engine.store import AuditRow, Store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("audit", help="verify or list the tamper-evident audit log")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    verifier = actions.add_parser("verify", help="check the hash chain; exit 1 and show the first broken row")
    verifier.set_defaults(handler=handle_verify)

    shower = actions.add_parser("show", help="list audit entries, oldest first")
    shower.add_argument("--limit", type=int, default=50, help="newest N entries (default 50; 0 = all)")
    shower.add_argument("--json", action="store_true", help="one JSON object per line")
    shower.set_defaults(handler=handle_show)


def format_time(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _database(settings: Settings) -> Path | None:
    path = Path(settings.storage.database_path)
    if not path.is_file():
        print(f"no database at {path}", file=sys.stderr)
        return None
    return path


def handle_verify(args: argparse.Namespace, settings: Settings) -> int:
    path = _database(settings)
    if path is None:
        return 1
    result = asyncio.run(_verify(path))
    if result.ok:
        print(f"audit log intact: {result.rows_checked} rows")
        return 0
    print(f"audit log BROKEN at seq {result.first_broken_seq}: {result.reason}")
    if result.broken_row is not None:
        print(f"  {_row_line(result.broken_row)}")
    return 1


def handle_show(args: argparse.Namespace, settings: Settings) -> int:
    path = _database(settings)
    if path is None:
        return 1
    entries = asyncio.run(_entries(path, args.limit if args.limit > 0 else None))
    for entry in entries:
        if args.json:
            print(json.dumps(entry.__dict__, sort_keys=True, default=str))
        else:
            print(_entry_line(entry))
    if not entries and not args.json:
        print("audit log is empty")
    return 0


def _entry_line(entry: AuditEntry) -> str:
    detail = json.dumps(entry.detail, sort_keys=True, separators=(",", ":"))
    return f"{entry.seq:>6}  {format_time(entry.time_ms)}  {entry.actor:<16} {entry.action:<24} {detail}"


def _row_line(row: AuditRow) -> str:
    return (
        f"seq={row.seq} time={format_time(row.time_ms)} actor={row.actor} action={row.action} "
        f"detail={row.detail_json} prev_hash={row.prev_hash[:16]}... hash={row.hash[:16]}..."
    )


async def _verify(path: Path) -> VerifyResult:
    async with Store.open(path) as store:
        return await AuditLog(store).verify()


async def _entries(path: Path, limit: int | None) -> list[AuditEntry]:
    async with Store.open(path) as store:
        return await AuditLog(store).entries(limit)
