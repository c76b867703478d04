"""Specification of the typed events: a class per kind, its kind text, its severity and its read-only data view."""

from __future__ import annotations

import dataclasses

import pytest

import engine.domain.events as events
from engine.domain.events import Event, PositionClosed, RiskLimitBreached, Severity
from engine.domain.models import ExitKind
from tests.event_samples import closed, opened

EVENT_CLASSES = [getattr(events, name) for name in events.__all__
                 if isinstance(getattr(events, name), type) and issubclass(getattr(events, name), Event)]


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.__name__)
def test_every_event_class_is_frozen_and_keyword_only(cls: type[Event]) -> None:
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen
    assert all(f.kw_only for f in dataclasses.fields(cls))


def test_an_event_s_kind_is_its_class_name_the_text_the_store_and_counts_keep() -> None:
    assert opened(1).kind == "PositionOpened" and closed(1, 5.0).kind == "PositionClosed"


def test_a_kind_s_usual_severity_is_its_default() -> None:
    breach = RiskLimitBreached(time_ms=1, message="m", limit="daily_loss", value_pct=5.0, limit_pct=5.0,
                               distance_pct=0.0, equity=9_500.0)
    assert breach.severity is Severity.CRITICAL and opened(1).severity is Severity.INFO


def test_the_data_view_holds_the_own_fields_leaves_out_none_and_is_read_only() -> None:
    event = closed(7, -3.0, exit_kind=ExitKind.STOP, reason="stop")
    assert isinstance(event, PositionClosed)
    assert event.data["exit_kind"] is ExitKind.STOP and event.data["pnl"] == -3.0
    assert "modelled_exit" not in event.data and "time_ms" not in event.data and "severity" not in event.data
    with pytest.raises(TypeError):
        event.data["pnl"] = 0.0  # type: ignore[index]
