"""Provides the override latches as breaker rows: the emergency-exit latch and the loss-limit halt.

Besides the three circuit breakers (:mod:`engine.core.breaker`) two latches block new entries:

* ``emergency`` - an emergency exit, from its trigger until a person clears it (after it completed);
* ``loss_limit`` - a breached daily-loss or max-drawdown limit (:mod:`engine.core.account_limits`). A daily-loss halt
  lifts by itself on the next trading day; a drawdown halt only by a person.

Both are rows of the breakers pane (:func:`breaker_rows`, same :class:`engine.domain.models.BreakerStatus` shape) and
both are lifted early only with the same grant as a breaker reset: ``ResumeBreaker("emergency")`` /
``ResumeBreaker("loss_limit")``, or a ``Resume`` with a grant, which lifts every latch at once
(:func:`latched_overrides` says which; see :mod:`engine.runtime.command_handler`). Pure reads of the core.
"""

from __future__ import annotations

from typing import Any

from engine.core.breaker import EMERGENCY
from engine.domain.models import BreakerStatus, CircuitState

__all__ = [
    "EMERGENCY",
    "LATCH_NAMES",
    "LOSS_LIMIT",
    "breaker_rows",
    "emergency_status",
    "latched_overrides",
    "loss_limit_status",
]

LOSS_LIMIT = "loss_limit"
LATCH_NAMES: tuple[str, ...] = (EMERGENCY, LOSS_LIMIT)


def emergency_status(core: Any) -> BreakerStatus:
    """The emergency-exit latch: OPEN (value 1 of 1) from its trigger until a person clears it."""
    breaker = core.breaker
    phase = breaker.emergency_phase
    if phase is None:
        return BreakerStatus(EMERGENCY, CircuitState.CLOSED, 0.0, 1.0, latching=True)
    state = breaker.to_state()["emergency"]
    wait = "closing every position" if phase == "in_progress" else "entries blocked until a person clears it"
    reason = f"emergency exit {phase.replace('_', ' ')} ({state['reason']}); {wait}"
    return BreakerStatus(EMERGENCY, CircuitState.OPEN, 1.0, 1.0, reason, int(state["since_ms"]), None, True)


def loss_limit_status(core: Any) -> BreakerStatus:
    """The loss-limit halt: the latched limit (else the one nearer its limit) as value / limit in pct.

    Latching (manual only) when the drawdown limit is latched; a daily-loss halt alone lifts by itself at the
    next trading day, so it is shown as auto-recovering.
    """
    limits, config, check = core.limits, core.risk.config, core.last_limit_check
    values = {
        "daily_loss": (check.daily_loss_pct if check else 0.0, config.max_daily_loss_percent),
        "drawdown": (check.drawdown_pct if check else 0.0, config.max_drawdown_percent),
    }
    latched: tuple[str, ...] = limits.halt_reasons
    if not latched:
        name = max(values, key=lambda n: values[n][0] / values[n][1])
        value, limit = values[name]
        return BreakerStatus(LOSS_LIMIT, CircuitState.CLOSED, value, limit, latching=False)
    name = "drawdown" if "drawdown" in latched else latched[0]
    value, limit = values[name]
    since_ms = min(int(ms) for ms in limits.to_state()["latched"].values())
    until = "a person resumes" if name == "drawdown" else "the next trading day (or a person resumes)"
    reason = f"{' and '.join(n.replace('_', ' ') for n in latched)} limit breached: halted until {until}"
    return BreakerStatus(LOSS_LIMIT, CircuitState.OPEN, value, limit, reason, since_ms, None, name == "drawdown")


def breaker_rows(core: Any) -> tuple[BreakerStatus, ...]:
    """Every row of the breakers pane: the circuit breakers, then the emergency and loss-limit latches."""
    return (*core.breaker.statuses(), emergency_status(core), loss_limit_status(core))


def latched_overrides(core: Any) -> tuple[str, ...]:
    """What a ``Resume`` would lift that needs a grant: ``"emergency (<phase>)"``, ``"loss_limit (<limits>)"``.

    Empty when the resume ends a plain manual halt (or nothing): that needs no grant.
    """
    latched: list[str] = []
    phase = core.breaker.emergency_phase
    if phase is not None:
        latched.append(f"{EMERGENCY} ({phase.replace('_', ' ')})")
    if core.limits.halted:
        latched.append(f"{LOSS_LIMIT} ({', '.join(core.limits.halt_reasons)})")
    return tuple(latched)
