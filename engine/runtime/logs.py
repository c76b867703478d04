"""Provides logging set-up for the engine: a rotating file log, optional stdout, quiet HTTP clients."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_FILE_NAME = "tradebot.log"
# Loggers of HTTP clients write request URLs at DEBUG/INFO, and a Telegram URL carries the bot token.
NOISY_LOGGERS = ("httpx", "httpcore", "telegram", "telegram.ext", "aiohttp.access", "ccxt", "asyncio")


def configure_logging(log_dir: Path, *, to_stdout: bool, level: int = logging.INFO) -> Path:
    """Send engine logs to ``log_dir/tradebot.log`` (rotated) and optionally stdout; returns the file path."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / LOG_FILE_NAME
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_tradebot", False):
            root.removeHandler(handler)
            handler.close()
    file_handler = logging.handlers.RotatingFileHandler(log_path, maxBytes=10_000_000, backupCount=5)
    handlers: list[logging.Handler] = [file_handler]
    if to_stdout:
        handlers.append(logging.StreamHandler(sys.stdout))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._tradebot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return log_path
