"""Provides log redaction: known secret values and common credential shapes become ``***`` in log records.

:func:`install_secret_redaction` wraps the log-record factory, so every record is cleaned when it is
created, whichever logger or handler later sees it (a filter on the root logger alone would miss
records propagated from child loggers). The same logic is offered as a ``logging.Filter`` for handlers.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

MASK = "***"
# Shorter values would mask ordinary words and numbers all over the log; secrets are far longer.
MIN_SECRET_LENGTH = 6

_TOKEN_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Telegram bot token: "<bot id>:<35 url-safe chars>".
    # No word boundary before the id: in a Bot API URL it follows "/bot" directly.
    (re.compile(r"(?<![0-9])\d{6,12}:[A-Za-z0-9_-]{30,}"), MASK),
    # Exchange API keys and secrets are long runs of letters and digits (Binance: 64).
    (re.compile(r"\b[A-Za-z0-9]{48,}\b"), MASK),
    # key=value / key: value / "key": "value" for credential-like keys, keeping the key.
    (
        re.compile(
            r"(?i)(\b(?:api[_-]?key|api[_-]?secret|secret|token|signature|passphrase|password|x-mbx-apikey)"
            r"[\"']?\s*[:=]\s*[\"']?)(?!SecretStr\(|\*{3})([^\s\"'&,;}]+)"
        ),
        r"\1" + MASK,
    ),
)


class SecretRedactor:
    """Replaces known secret values and credential-shaped substrings with ``***``.

    Thread-safe: secrets may be added while other threads log.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Registers more secret values (blank or very short values are ignored)."""
        with self._lock:
            values = set(self._secrets)
            values.update(s for s in secrets if s and len(s.strip()) >= MIN_SECRET_LENGTH)
            self._secrets = frozenset(values)
            # Longest first, so a secret containing another is masked whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def redact(self, text: str) -> str:
        """``text`` with every secret and credential shape masked."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        for shape, replacement in _TOKEN_SHAPES:
            text = shape.sub(replacement, text)
        return text

    def redact_record(self, record: logging.LogRecord) -> None:
        """Formats the record's message and exception text now, masked; later formatting reuses them."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not break logging
            message = f"{record.msg!r} (unformattable arguments)"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = self.redact(text)
            # Formatters only print exc_text when it is set; dropping exc_info keeps them from
            # re-rendering the unmasked traceback (and the exception object from leaking via handlers).
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


class SecretRedactionFilter(logging.Filter):
    """A ``logging.Filter`` that masks secrets in every record it sees and never drops one."""

    def __init__(self, redactor: SecretRedactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        self.redactor.redact_record(record)
        return True


_installed: tuple[SecretRedactor, Callable[..., logging.LogRecord], SecretRedactionFilter] | None = None
_install_lock = threading.Lock()


def install_secret_redaction(secrets: Iterable[str] = ()) -> SecretRedactor:
    """Masks ``secrets`` (and credential shapes) in every log record from now on.

    Idempotent: a second call adds the new secrets to the redactor already installed.

    Returns:
        The installed redactor; call ``add`` on it when more secrets become known.
    """
    global _installed
    with _install_lock:
        if _installed is not None:
            _installed[0].add(secrets)
            return _installed[0]
        redactor = SecretRedactor(secrets)
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redactor.redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        record_filter = SecretRedactionFilter(redactor)
        # Handler filters also catch records built by code that bypasses the factory (logging.makeLogRecord).
        root = logging.getLogger()
        root.addFilter(record_filter)
        for handler in root.handlers:
            handler.addFilter(record_filter)
        _installed = (redactor, previous, record_filter)
        return redactor


def uninstall_secret_redaction() -> None:
    """Restores the previous record factory and removes the filters (for tests)."""
    global _installed
    with _install_lock:
        if _installed is None:
            return
        _redactor, previous, record_filter = _installed
        logging.setLogRecordFactory(previous)
        root = logging.getLogger()
        root.removeFilter(record_filter)
        for handler in root.handlers:
            handler.removeFilter(record_filter)
        _installed = None
