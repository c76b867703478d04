"""Provides the imperative commands the console and Telegram send to the engine.

Both front-ends call ``engine.submit(command)``; the engine processes commands one at a
time from a queue and reports the outcome as events. ``source`` names who asked
(``console``, ``telegram:<chat_id>``, ``cli``) so the audit log can say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    source: str = "console"


@dataclass(frozen=True)
class Halt(Command):
    """Stop opening new positions; open positions stay protected by their stops."""

    reason: str = "manual halt"


@dataclass(frozen=True)
class Resume(Command):
    """Allow new entries again (does not reset a circuit breaker; see ResumeBreaker).

    Ending a manual halt needs nothing more. Lifting a latched loss-limit halt or the emergency-exit latch
    (``engine.runtime.latches``) needs ``grant`` from :class:`engine.runtime.risk_gate.RiskChangeGate`, like a breaker
    reset; without it the engine refuses the command.
    """

    grant: str = field(default="", repr=False)


@dataclass(frozen=True)
class EmergencyExit(Command):
    """Cancel every open order, close every position at market, then halt."""

    reason: str = "manual emergency exit"


@dataclass(frozen=True)
class ClosePosition(Command):
    symbol: str = ""


@dataclass(frozen=True)
class ResumeBreaker(Command):
    """Manually reset one tripped breaker (the only way out of a latching breaker).

    Needs ``grant`` from :class:`engine.runtime.risk_gate.RiskChangeGate` (an authentication step); without it
    the engine refuses the command.
    """

    breaker: str = ""
    grant: str = field(default="", repr=False)


@dataclass(frozen=True)
class SetRiskLimit(Command):
    """Change one risk or breaker setting at runtime, e.g. ``risk.max_daily_loss_percent``.

    Needs ``grant`` from :class:`engine.runtime.risk_gate.RiskChangeGate` (an authentication step); without it
    the engine refuses the command.
    """

    key: str = ""
    value: float = 0.0
    grant: str = field(default="", repr=False)


@dataclass(frozen=True)
class StopEngine(Command):
    """Stop the engine service (an attached console's "quit and stop").

    Open live positions stay on the exchange with their exchange-side stop orders, but trailing and exit
    signals stop until an engine runs again; paper positions of a replay end with the session.
    """

    reason: str = "stopped by request"
