"""Provides named parameter overrides over the strategy, risk and breaker settings (for sweeps and the CLI).

Names: ``risk.<field>`` (RiskConfig), ``breaker.<field>`` (BreakerConfig), ``signal.<field>``
(SignalParams) and any other ``StrategyParams`` field by its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from engine.analysis.strategy import StrategyParams
from engine.config import BreakerConfig, RiskConfig

SectionT = TypeVar("SectionT", bound=BaseModel)


def _validated(prefix: str, model: type[SectionT], current: SectionT, changes: Mapping[str, Any]) -> SectionT:
    """``current`` with ``changes``; an invalid value raises one ValueError line naming ``<prefix>.<field>``."""
    if not changes:
        return current
    try:
        return model.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = ".".join(str(part) for part in error["loc"])
        raise ValueError(f"{prefix}.{name}: {error['msg']} (got {error.get('input')!r})") from None


@dataclass(frozen=True)
class ParameterSet:
    """A complete configuration of the decision path."""

    strategy: StrategyParams
    risk: RiskConfig
    breaker: BreakerConfig

    def with_overrides(self, overrides: Mapping[str, Any]) -> ParameterSet:
        """A copy with named values changed; unknown names raise ValueError."""
        risk_changes = {k.removeprefix("risk."): v for k, v in overrides.items() if k.startswith("risk.")}
        breaker_changes = {k.removeprefix("breaker."): v for k, v in overrides.items() if k.startswith("breaker.")}
        strategy_changes = {
            k: v for k, v in overrides.items() if not k.startswith("risk.") and not k.startswith("breaker.")
        }
        for prefix, changes, model in (("risk", risk_changes, RiskConfig), ("breaker", breaker_changes, BreakerConfig)):
            unknown = set(changes) - set(model.model_fields)
            if unknown:
                raise ValueError(f"unknown {prefix} parameter(s): {', '.join(sorted(unknown))}")
        risk = _validated("risk", RiskConfig, self.risk, risk_changes)
        breaker = _validated("breaker", BreakerConfig, self.breaker, breaker_changes)
        strategy = self.strategy.with_overrides(**strategy_changes) if strategy_changes else self.strategy
        return ParameterSet(strategy, risk, breaker)

    def flat(self) -> dict[str, Any]:
        """Every parameter under its override name (JSON-able)."""
        values = dict(self.strategy.flat())
        values.update({f"risk.{k}": v for k, v in self.risk.model_dump(mode="json").items()})
        values.update({f"breaker.{k}": v for k, v in self.breaker.model_dump(mode="json").items()})
        return values


def parse_value(text: str) -> Any:
    """A CLI value: int, float, bool (true/false) or string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
