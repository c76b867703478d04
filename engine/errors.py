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


class ExchangeCallException(ExecutionException):
    """An exchange call failed; names the operation and a reason free of secrets and signed URLs.

    Attributes:
        operation: what was being done, e.g. ``submit_market_order BTC/USDT``.
        reason: the exchange's or network's explanation, query strings stripped.
        attempts: how many attempts were made before giving up.
    """

    def __init__(self, operation: str, reason: str, attempts: int = 1) -> None:
        self.operation = operation
        self.reason = reason
        self.attempts = attempts
        super().__init__(f"{operation} failed: {reason}")


class ExchangeUnavailableException(ExchangeCallException):
    """Network errors, timeouts or throttling outlasted every retry; the outcome may be unknown."""


class OrderRejectedException(ExchangeCallException):
    """The exchange refused the order (filters, invalid parameters); retrying cannot help."""


class InsufficientFundsException(OrderRejectedException):
    """The account balance does not cover the order."""


class StopWouldTriggerException(OrderRejectedException):
    """A stop price is already crossed by the market, so the exchange refused the stop order."""


class OrderNotFoundException(ExchangeCallException):
    """The exchange does not know the order (by client order id)."""


class ExchangeAuthException(ExchangeCallException):
    """API key rejected, lacks a permission, or the account may not trade."""
