"""Provides the typed settings of tradebot, loaded from config.toml and TRADEBOT_* env vars.

Precedence (highest first): explicit overrides passed to :func:`load_settings`, environment
variables ``TRADEBOT_<SECTION>__<KEY>``, a ``.env`` file, then the TOML file. The TOML path is
``--config`` if given, else ``TRADEBOT_CONFIG``, else ``./config.toml`` (missing = defaults).

Every problem is reported as one line naming the key path and the reason; secret values are
never echoed.
"""

from __future__ import annotations

import os
import tomllib
from datetime import time as dt_time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from engine.domain.errors import ConfigException

DEFAULT_CONFIG_FILE = "config.toml"
CONFIG_PATH_ENV = "TRADEBOT_CONFIG"
SECRET_FIELDS = frozenset({"exchange.api_key", "exchange.api_secret", "telegram.token", "api.token"})

Percent = float  # pct in [0, 100]
BreakerName = Literal["volatility", "loss", "system"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ExchangeConfig(_Section):
    """Where and how orders go. Live trading needs keys here *and* the ``--live`` CLI flag."""

    name: Literal["binance"] = "binance"
    mode: Literal["paper", "live"] = "paper"
    feed: Literal["replay", "live"] = "replay"
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT", "SOL/USDT"], min_length=1)
    base_timeframe: str = "1h"
    replay_speed: float = Field(default=20.0, gt=0, description="replayed bars per second")
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    allow_short: bool = False
    request_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    retry_base_delay_s: float = Field(default=0.5, gt=0)
    retry_max_delay_s: float = Field(default=30.0, gt=0)
    starting_balance: float = Field(default=10_000.0, gt=0, description="paper account, quote currency")
    unknown_order_window_s: float = Field(
        default=10.0, gt=0, le=600,
        description="an order whose outcome is unknown is looked up this long before it may be called absent",
    )
    max_orders_per_symbol_per_minute: int = Field(default=10, ge=1, le=1000)
    max_orders_per_minute: int = Field(default=30, ge=1, le=10_000, description="every symbol together")
    base_url: str = Field(
        default="",
        description="exchange REST base URL override (tests' loopback fake, a self-hosted gateway); empty = Binance",
    )

    @field_validator("symbols")
    @classmethod
    def _symbols_are_base_quote(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            base, sep, quote = symbol.partition("/")
            if not sep or not base or not quote or symbol != symbol.upper():
                raise ValueError(f"symbol {symbol!r} must look like BASE/QUOTE in upper case, e.g. BTC/USDT")
        return symbols

    @field_validator("base_timeframe")
    @classmethod
    def _timeframe_is_known(cls, timeframe: str) -> str:
        return _validate_timeframe(timeframe)

    @model_validator(mode="after")
    def _live_needs_keys(self) -> ExchangeConfig:
        if self.mode == "live":
            missing = [n for n in ("api_key", "api_secret") if not _secret_present(getattr(self, n))]
            if missing:
                raise ValueError(f"mode 'live' needs {' and '.join(missing)} (set TRADEBOT_EXCHANGE__API_KEY/SECRET)")
        return self


class RiskConfig(_Section):
    """Position sizing, stops and account limits (the seed's RiskConfig defaults)."""

    # The largest share of equity at risk per trade (lost if the initial stop is hit): caps the scaled risk.
    max_position_size_percent: Percent = Field(default=2.0, gt=0, le=100)
    # Base risk per trade before signal strength, confluence, volatility and half-open scaling.
    risk_per_trade_percent: Percent = Field(default=1.0, gt=0, le=100)
    # Cap on one position's notional (% of equity); 100 = no leverage on spot.
    max_notional_percent: Percent = Field(default=100.0, gt=0, le=100)
    max_daily_loss_percent: Percent = Field(default=5.0, gt=0, le=100)
    max_drawdown_percent: Percent = Field(default=10.0, gt=0, le=100)
    atr_lookback: int = Field(default=20, ge=1)
    stop_atr_multiple: float = Field(default=2.0, gt=0)
    trailing_policy: Literal["percent", "atr", "swing"] = "percent"
    trailing_stop_activation_percent: Percent = Field(default=1.0, ge=0, le=100)
    trailing_stop_distance_percent: Percent = Field(default=0.5, gt=0, le=100)
    chandelier_atr_multiple: float = Field(default=3.0, gt=0)
    swing_lookback: int = Field(default=5, ge=1)
    volatility_median_lookback: int = Field(default=100, ge=2)
    warning_threshold_ratio: float = Field(default=0.8, gt=0, lt=1)
    daily_reset_utc: dt_time = dt_time(0, 0)


class BreakerConfig(_Section):
    """Circuit breakers; names in ``latching`` stay open until a person resumes them."""

    volatility_multiplier: float = Field(default=3.0, gt=1)
    volatility_lookback: int = Field(default=100, ge=2)
    max_consecutive_losses: int = Field(default=5, ge=1)
    daily_loss_percent: Percent = Field(default=5.0, gt=0, le=100)
    api_error_threshold: int = Field(default=10, ge=1)
    api_error_window_s: float = Field(default=60.0, gt=0)
    cooldown_s: float = Field(default=900.0, ge=0)
    half_open_size_ratio: float = Field(default=0.5, gt=0, le=1)
    latching: list[BreakerName] = Field(default_factory=lambda: list[BreakerName](["loss"]))


class BacktestConfig(_Section):
    initial_capital: float = Field(default=10_000.0, gt=0)
    commission_percent: Percent = Field(default=0.1, ge=0, le=100)
    slippage_percent: Percent = Field(default=0.05, ge=0, le=100)
    timeframe: str = "1h"

    @field_validator("timeframe")
    @classmethod
    def _timeframe_is_known(cls, timeframe: str) -> str:
        return _validate_timeframe(timeframe)


class MtfConfig(_Section):
    timeframes: list[str] = Field(default_factory=lambda: ["1h", "4h", "1d"], min_length=1)

    @field_validator("timeframes")
    @classmethod
    def _timeframes_are_known(cls, timeframes: list[str]) -> list[str]:
        return [_validate_timeframe(tf) for tf in timeframes]


class DataConfig(_Section):
    """Checks on live candles (``engine.data.live_validation``): bad ones are quarantined, silence is STALE."""

    outlier_atr_multiple: float = Field(
        default=75.0, gt=1, le=100_000,
        description="a live bar whose range or close jump exceeds this many recent ATRs is quarantined",
    )
    stale_after_bars: float = Field(
        default=1.5, gt=1, le=100,
        description="a symbol without a new closed candle for this many bar lengths is STALE",
    )


class TelegramConfig(_Section):
    """Alerts and remote control. Without a token Telegram is off."""

    token: SecretStr | None = None
    allowed_chat_ids: list[int] = Field(default_factory=list)
    base_url: str = ""
    daily_report_utc: dt_time = dt_time(20, 0)
    request_timeout_s: float = Field(default=10.0, gt=0)

    @property
    def enabled(self) -> bool:
        return _secret_present(self.token)


class StorageConfig(_Section):
    database_path: Path = Path("./data/tradebot.sqlite3")
    log_dir: Path = Path("./logs")


class ApiConfig(_Section):
    """The engine service's control API. The Unix socket beside the database is always on (owner only); a
    loopback TCP listener is off unless ``tcp_port`` is set, and then needs ``token`` (a secret)."""

    tcp_port: int | None = Field(default=None, ge=1, le=65_535,
                                 description="also listen on 127.0.0.1:PORT (needs api.token)")
    token: SecretStr | None = None  # checked by the service once secrets are resolved (it may live there)


class UiConfig(_Section):
    max_redraws_per_second: float = Field(default=10.0, gt=0, le=60)


class DriftConfig(_Section):
    """The performance drift alert (``engine.runtime.drift_watch``): live decisions and expectancy against a re-run
    backtest."""

    enabled: bool = True
    check_every_bars: int = Field(
        default=24, ge=1, le=100_000,
        description="base bars between two background re-runs of the live window's backtest",
    )
    expectancy_std_errors: float = Field(
        default=2.0, ge=0, le=100,
        description="alert when realised expectancy < the backtest's minus this many standard errors of the "
        "realised mean",
    )
    min_trades: int = Field(
        default=10, ge=2, le=1_000_000,
        description="closed live trades needed before the expectancy is compared (2 at least: a spread)",
    )


class Settings(BaseSettings):
    """All tradebot settings. Sections mirror config.toml."""

    model_config = SettingsConfigDict(
        env_prefix="TRADEBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    exchange: ExchangeConfig = Field(default_factory=ExchangeConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    mtf: MtfConfig = Field(default_factory=MtfConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file is the lowest priority: an env var overrides one nested key and keeps its siblings.
        toml_source = TomlConfigSettingsSource(settings_cls)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings, toml_source)

    def redacted_dump(self) -> dict[str, Any]:
        """The settings as JSON-safe data with every secret replaced by ``**********`` or null."""
        return self.model_dump(mode="json")


def _settings_from_file(path: Path) -> type[Settings]:
    """Settings whose TOML source reads ``path`` (``toml_file`` is class configuration in pydantic-settings)."""

    class SettingsFromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    return SettingsFromFile


def resolve_config_path(config_path: str | os.PathLike[str] | None = None) -> Path:
    if config_path is not None:
        return Path(config_path)
    from_env = os.environ.get(CONFIG_PATH_ENV)
    return Path(from_env) if from_env else Path(DEFAULT_CONFIG_FILE)


def read_toml(path: Path, *, required: bool) -> dict[str, Any]:
    """Parse a TOML file; a missing optional file gives an empty document."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        if required:
            raise ConfigException([f"{path}: config file not found"]) from None
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigException([f"{path}: not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigException([f"{path}: cannot read config file: {exc.strerror or exc}"]) from None


def load_settings(config_path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings; raises ConfigException with one line per problem.

    A path given explicitly (argument or TRADEBOT_CONFIG) must exist; the default
    ``./config.toml`` may be absent, in which case built-in defaults apply.
    """
    explicit = config_path is not None or bool(os.environ.get(CONFIG_PATH_ENV))
    path = resolve_config_path(config_path)
    read_toml(path, required=explicit)  # one clear line for a missing, unreadable or malformed file
    try:
        loaded = _settings_from_file(path)(**overrides)
    except ValidationError as exc:
        raise ConfigException(format_validation_errors(exc, source=str(path))) from None
    # A plain Settings with exactly these values (model_validate reads no source again).
    return Settings.model_validate(dict(loaded))


def format_validation_errors(exc: ValidationError, source: str) -> list[str]:
    """One line per problem: ``<source>: <key.path>: <reason>``, never echoing secrets."""
    lines = []
    for error in exc.errors(include_url=False):
        key_path = ".".join(str(part) for part in error["loc"]) or "(root)"
        reason = _reason(error)
        show_input = error["type"] not in ("missing", "extra_forbidden") and not _is_secret_path(key_path)
        if show_input and "input" in error and not isinstance(error["input"], dict):
            reason += f" (got {_short(error['input'])})"
        lines.append(f"{source}: {key_path}: {reason}")
    return lines


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown setting"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _is_secret_path(key_path: str) -> bool:
    return any(key_path == secret or key_path.startswith(secret + ".") for secret in SECRET_FIELDS)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _secret_present(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value().strip())


def _validate_timeframe(timeframe: str) -> str:
    from engine.domain.timeframes import parse_timeframe

    try:
        parse_timeframe(timeframe)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return timeframe
