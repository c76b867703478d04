"""Provides the exception hierarchy every engine failure is expressed in."""

from __future__ import annotations


class TradingBotException(Exception):
    """Root of every error the engine raises on purpose."""


class ConfigException(TradingBotException):
    """Settings could not be loaded; carries one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class RiskManagementException(TradingBotException):
    """A risk rule refused an action or could not be evaluated."""


class CircuitBreakerException(TradingBotException):
    """A circuit breaker is open and blocks the requested action."""


class BacktestException(TradingBotException):
    """A backtest or optimisation could not run on the given inputs."""


class DataException(TradingBotException):
    """Candle data is missing, malformed or inconsistent."""


class DataValidationError(DataException):
    """A candle file broke a validation rule; names the file, the row and the rule."""

    def __init__(self, file: str, row: int | None, rule: str, detail: str = "") -> None:
        self.file = file
        self.row = row
        self.rule = rule
        self.detail = detail
        where = f"{file}, row {row}" if row is not None else file
        message = f"{where}: {rule}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class StoreException(TradingBotException):
    """The SQLite store could not be opened, migrated or written."""


class ExecutionException(TradingBotException):
    """An order could not be placed, queried or cancelled."""


class SecurityException(TradingBotException):
    """A secret, permission or authentication check failed."""
