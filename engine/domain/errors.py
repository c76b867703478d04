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


class EngineAlreadyRunningException(TradingBotException):
    """Another engine holds this database's lock (:mod:`engine.runtime.instance_lock`); the message is one line
    naming it.

    Attributes:
        pid: the holder's process id, or None when its lock file could not be read.
    """

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        self.pid = pid
        super().__init__(message)


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


class OrderOutcomeUnknownException(ExchangeUnavailableException):
    """An order was sent but whether the exchange placed it is still unknown after the lookup window.

    The order must stay in the unknown state and be looked up again; it must never be re-sent blind.

    Attributes:
        client_order_id: the order's client id, to look it up by.
    """

    def __init__(self, operation: str, reason: str, client_order_id: str, attempts: int = 1) -> None:
        super().__init__(operation, reason, attempts)
        self.client_order_id = client_order_id


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


class EngineFailedException(TradingBotException):
    """One of the running engine's own tasks failed; the engine shut down after a critical ``EngineFailed`` alert.

    Attributes:
        task: the failed task's name (``commands``, ``snapshots``, ``store writer``, ``system health``, ``feed``).
        error: ``"<ExceptionType>: <text>"`` on one line, secrets masked.
    """

    def __init__(self, task: str, error: str) -> None:
        self.task = task
        self.error = error
        super().__init__(f"engine stopped: its {task} task failed: {error}")
