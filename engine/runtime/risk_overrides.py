"""Provides the persistence of accepted runtime risk changes: saved before they apply, restored at start-up.

An accepted ``SetRiskLimit`` (console ``l``, Telegram ``/set``) is written to the store's kv state under
:data:`RISK_OVERRIDES_KEY` before it takes effect (write-ahead: a change that cannot be saved is not
applied), as ``{"risk.max_daily_loss_percent": {"value": 3.0, "time_ms": ..., "source": "console"}, ...}``.
At start-up (:func:`engine.runtime.recovery.restore_engine_state`) :func:`restore_risk_overrides` applies them over
the settings loaded from config.toml, so a runtime change wins for its key until it is changed again.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

from engine.config import BreakerConfig, RiskConfig
from engine.domain.ports import RiskChangeRefused
from engine.runtime.risk_gate import risk_setting_change

log = logging.getLogger(__name__)

RISK_OVERRIDES_KEY = "risk_overrides"


class StateStore(Protocol):
    """The part of ``engine.store.Store`` this module needs."""

    def transaction(self) -> Any: ...

    async def get_state(self, key: str, default: Any = None) -> Any: ...

    async def set_state(self, key: str, value: Any, *, time_ms: int | None = None) -> None: ...


def apply_setting(core: Any, updated: RiskConfig | BreakerConfig) -> None:
    """Puts a whole validated settings section in force on the DecisionCore, keeping all its state."""
    if isinstance(updated, RiskConfig):
        core.risk.reconfigure(updated)  # the risk manager reconfigures the loss-limit tracker too
    else:
        core.breaker.reconfigure(updated)


async def save_risk_override(store: StateStore, key: str, value: float, source: str, now_ms: int) -> None:
    """Records ``key = value`` (asked by ``source``) among the saved runtime risk changes.

    Raises:
        Exception: whatever the store raises; the caller must then not apply the change.
    """
    async with store.transaction():
        saved = dict(await store.get_state(RISK_OVERRIDES_KEY) or {})
        saved[key] = {"value": value, "time_ms": now_ms, "source": source}
        await store.set_state(RISK_OVERRIDES_KEY, saved, time_ms=now_ms)


async def restore_risk_overrides(store: StateStore, core: Any) -> list[str]:
    """Applies the saved runtime risk changes to ``core``; returns a note per change, for the start-up log.

    A saved change the current settings model rejects (e.g. a setting renamed since) is skipped with a note.
    """
    saved = await store.get_state(RISK_OVERRIDES_KEY)
    notes: list[str] = []
    for key, entry in (saved or {}).items() if isinstance(saved, dict) else ():
        try:
            value = float(entry["value"])
            if not math.isfinite(value):
                raise ValueError(f"{value} is not a finite number")
            old_value, updated = risk_setting_change(core, str(key), value)
        except (RiskChangeRefused, KeyError, TypeError, ValueError) as problem:
            notes.append(f"saved risk change {key} ignored: {problem}")
            continue
        apply_setting(core, updated)
        notes.append(
            f"restored runtime risk change {key} = {value:g} (config value {old_value}; "
            f"set by {entry.get('source', '?')} at {entry.get('time_ms', '?')} ms)"
        )
    return notes
