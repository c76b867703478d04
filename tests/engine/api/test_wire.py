"""Specification: the API's JSON wire format carries every snapshot, event and command unchanged, in strict JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.commands import Halt, SetRiskLimit
from engine.domain.events import Event, PositionOpened
from engine.domain.models import BreakerStatus, CircuitState, Position, PositionSide, TradingState
from engine.domain.snapshot import EngineSnapshot, FeedStatus, SymbolView
from engine.runtime.api import wire

JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8),
                        st.floats(allow_nan=False, allow_infinity=False))


def instances(cls: type) -> st.SearchStrategy[Any]:
    """Any instance of dataclass ``cls`` (free-form mappings hold JSON scalars)."""
    overrides: dict[str, st.SearchStrategy[Any]] = {}
    for name, hint in wire.field_types(cls).items():
        if typing.get_origin(hint) is Mapping:
            overrides[name] = st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3)
    return st.builds(cls, **overrides)


def strict_json(data: Any) -> str:
    return json.dumps(data, allow_nan=False, sort_keys=True)


def round_trip(value: Any, decode: Any) -> Any:
    return decode(json.loads(strict_json(wire.encode(value))))


@pytest.mark.parametrize("kind", sorted(wire.EVENT_TYPES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_event_kind_survives_the_wire(kind: str, data: st.DataObject) -> None:
    event = data.draw(instances(wire.EVENT_TYPES[kind]))
    again = round_trip(event, wire.decode_event)
    assert type(again) is type(event)
    assert strict_json(wire.encode(again)) == strict_json(wire.encode(event))


@pytest.mark.parametrize("kind", sorted(wire.COMMAND_TYPES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_command_survives_the_wire_grant_included(kind: str, data: st.DataObject) -> None:
    command = data.draw(instances(wire.COMMAND_TYPES[kind]))
    assert round_trip(command, wire.decode_command) == command


def a_snapshot() -> EngineSnapshot:
    return EngineSnapshot(
        time_ms=1_700_000_000_000, mode="paper", exchange="binance", trading_state=TradingState.HALTED,
        feed_healthy=False, equity=10_012.5, cash=8_000.0, realized_pnl_today=-3.25, unrealized_pnl=15.75,
        peak_equity=10_100.0, drawdown_pct=0.87, max_drawdown_pct=1.2, daily_loss_pct=0.0,
        max_drawdown_limit_pct=15.0, daily_loss_limit_pct=5.0,
        positions=(Position("BTC/USDT", PositionSide.LONG, 0.05, 40_000.0, 1_699_999_000_000, stop_price=39_000.0),),
        breakers=(BreakerStatus("volatility", CircuitState.OPEN, 3.1, 3.0, reason="atr x3.1"),),
        symbols=(SymbolView("BTC/USDT", 40_315.0, trends=(("1h", 1), ("4h", -1)), squeeze="on"),),
        equity_history=(10_000.0, math.nan, 10_012.5),
        recent_events=(PositionOpened(time_ms=1, message="opened", symbol="BTC/USDT", side=PositionSide.LONG,
                                      qty=0.05, price=40_000.0, stop=39_000.0),),
        failed_symbols=("ETH/USDT",), feed_status=(FeedStatus("BTC/USDT", "STALE", "no candle", 5),),
    )


def test_a_snapshot_survives_the_wire_with_its_nested_records_and_a_nan() -> None:
    snapshot = a_snapshot()
    again = round_trip(snapshot, wire.decode_snapshot)
    assert math.isnan(again.equity_history[1])
    assert dataclasses.replace(again, equity_history=()) == dataclasses.replace(snapshot, equity_history=())
    assert isinstance(again.recent_events[0], PositionOpened)


def test_an_event_on_the_wire_names_its_kind_and_its_fields() -> None:
    event = PositionOpened(time_ms=5, message="m", symbol="BTC/USDT", side=PositionSide.LONG, qty=1.0, price=2.0,
                           stop=1.0)
    data = wire.encode(event)
    assert data["kind"] == "PositionOpened"
    assert data["side"] == "long" and data["severity"] == "info"


def test_a_non_finite_number_travels_as_a_string() -> None:
    assert wire.encode([math.inf, -math.inf, math.nan, 1.5]) == ["Infinity", "-Infinity", "NaN", 1.5]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"kind": "Launch"}, "command.kind: unknown command 'Launch'"),
        ([], "command: expected an object, got an array"),
        ({"kind": "SetRiskLimit", "key": "risk.x", "value": "high"}, "command.value: expected a number"),
        ({"kind": "SetRiskLimit", "value": True}, "command.value: expected a number, got a boolean"),
        ({"kind": "Halt", "reasn": "typo"}, "command.reasn: no such field"),
        ({"kind": "Halt", "source": 7}, "command.source: expected a string, got the number 7"),
    ],
)
def test_a_bad_command_document_is_refused_naming_the_field(document: Any, message: str) -> None:
    with pytest.raises(wire.WireError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        wire.decode_command(document)


def test_a_snapshot_with_an_unknown_trading_state_names_the_allowed_ones() -> None:
    data = wire.encode(a_snapshot())
    data["trading_state"] = "PANIC"
    with pytest.raises(wire.WireError, match=r"^snapshot.trading_state: 'PANIC' is not one of "):
        wire.decode_snapshot(data)


def test_a_missing_required_field_is_named() -> None:
    data = wire.encode(a_snapshot())
    del data["equity"]
    with pytest.raises(wire.WireError, match=r"^snapshot.equity: missing$"):
        wire.decode_snapshot(data)


def test_the_registries_hold_every_concrete_kind() -> None:
    assert "Event" not in wire.EVENT_TYPES and "Command" not in wire.COMMAND_TYPES
    assert wire.COMMAND_TYPES["Halt"] is Halt and wire.COMMAND_TYPES["SetRiskLimit"] is SetRiskLimit
    assert all(issubclass(cls, Event) for cls in wire.EVENT_TYPES.values())
