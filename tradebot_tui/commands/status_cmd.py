"""Provides ``tradebot status``: the persisted engine state from the store."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from engine.config import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="show the persisted engine state (positions, orders, breakers)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    summary = asyncio.run(_load_summary(settings))
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
        return 0
    print(f"trading state: {summary.get('trading_state')}")
    equity = summary.get("equity")
    print(f"equity:        {equity if equity is not None else 'no snapshot yet'}")
    positions = summary.get("positions") or []
    print(f"positions:     {len(positions)}")
    for position in positions:
        print(f"  {position}")
    print(f"open orders:   {len(summary.get('orders') or [])}")
    breakers = summary.get("breakers") or {}
    print(f"breakers:      {', '.join(f'{k}={v}' for k, v in breakers.items()) or 'none recorded'}")
    return 0


async def _load_summary(settings: Settings) -> dict[str, Any]:
    from engine.store import Store

    async with await Store.open(settings.storage.database_path) as store:
        return await store.status_summary()
