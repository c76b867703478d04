"""Provides the base of every typed engine event and its :class:`Severity`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


_BASE_FIELDS = frozenset({"time_ms", "message", "severity"})


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something that happened. Subclasses add typed fields; this base is never emitted itself.

    Attributes:
        time_ms: when it happened (UTC ms).
        message: one line for people (the console's event pane, the log, a critical alert).
        severity: info, warning or critical (a critical event is always sent as an alert).
    """

    time_ms: int
    message: str
    severity: Severity = Severity.INFO

    @property
    def kind(self) -> str:
        """The event's kind as text (its class name), for the store, the outbox and event counts."""
        return type(self).__name__

    @property
    def data(self) -> Mapping[str, Any]:
        """The event's own fields by name, None-valued ones left out (read-only).

        Only for rendering and serialising an event generically (alert texts, tests that compare
        payloads); code that reacts to an event reads its typed fields.
        """
        return MappingProxyType({f.name: getattr(self, f.name) for f in fields(self)
                                 if f.name not in _BASE_FIELDS and getattr(self, f.name) is not None})
