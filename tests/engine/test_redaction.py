"""Specification of log redaction: secrets and credential shapes never reach a log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from engine.security.redaction import (
    MASK,
    SecretRedactionFilter,
    SecretRedactor,
    install_secret_redaction,
    uninstall_secret_redaction,
)

API_KEY = "dummy-api-key-7f3a9c12"
API_SECRET = "dummy-api-secret-41be88"
TELEGRAM_TOKEN = "1234567890:AAH-dummy_token_value_for_tests_0123456"


@pytest.fixture
def installed() -> Iterator[SecretRedactor]:
    redactor = install_secret_redaction([API_KEY, API_SECRET])
    yield redactor
    uninstall_secret_redaction()


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Everything logged through a plain handler on the root logger while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_known_secret_is_masked_in_text() -> None:
    assert SecretRedactor([API_KEY]).redact(f"using key {API_KEY} now") == f"using key {MASK} now"


def test_a_secret_containing_another_is_masked_whole() -> None:
    redactor = SecretRedactor(["abcdef12", "abcdef12345678"])
    assert redactor.redact("x abcdef12345678 y") == f"x {MASK} y"


def test_very_short_values_are_not_treated_as_secrets() -> None:
    assert SecretRedactor(["abc"]).redact("abc abc") == "abc abc"


def test_telegram_token_shape_is_masked_without_being_registered() -> None:
    text = SecretRedactor().redact(f"POST https://api.telegram.org/bot{TELEGRAM_TOKEN}/getMe")
    assert TELEGRAM_TOKEN not in text
    assert "getMe" in text


def test_long_exchange_key_shape_is_masked_without_being_registered() -> None:
    key = "A1b2C3d4" * 8
    assert key not in SecretRedactor().redact(f"key {key}")


def test_credential_assignments_keep_the_name_and_hide_the_value() -> None:
    text = SecretRedactor().redact(
        'GET /api/v3/order?symbol=BTCUSDT&signature=9f8e7d6c5b4a&apiKey=zz "password": "hunter22"'
    )
    assert "symbol=BTCUSDT" in text
    assert f"signature={MASK}" in text
    assert "9f8e7d6c5b4a" not in text
    assert "hunter22" not in text


def test_ordinary_log_text_is_left_alone() -> None:
    line = "order 42 filled: BTC/USDT buy 0.015 @ 43210.5"
    assert SecretRedactor([API_KEY]).redact(line) == line


def test_filter_masks_message_arguments(log_text: io.StringIO) -> None:
    logger = logging.getLogger("tests.redaction.filter")
    handler = logging.StreamHandler(log_text)
    handler.addFilter(SecretRedactionFilter(SecretRedactor([API_KEY])))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting with %s", API_KEY)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert API_KEY not in log_text.getvalue()
    assert MASK in log_text.getvalue()


def test_installed_redaction_covers_records_from_child_loggers(
    installed: SecretRedactor, log_text: io.StringIO
) -> None:
    logging.getLogger("engine.execution.deep.child").info("key=%s secret %s", API_KEY, API_SECRET)
    output = log_text.getvalue()
    assert API_KEY not in output
    assert API_SECRET not in output
    assert "engine.execution.deep.child INFO" in output


def test_installed_redaction_masks_exception_tracebacks(installed: SecretRedactor, log_text: io.StringIO) -> None:
    try:
        raise RuntimeError(f"exchange rejected key {API_KEY}")
    except RuntimeError:
        logging.getLogger("engine.runtime.engine").exception("order failed")
    output = log_text.getvalue()
    assert "RuntimeError" in output
    assert "Traceback" in output
    assert API_KEY not in output


def test_secrets_added_after_install_are_masked_too(installed: SecretRedactor, log_text: io.StringIO) -> None:
    install_secret_redaction([TELEGRAM_TOKEN.replace(":", "-")])
    logging.getLogger("engine.notify").info("token %s", TELEGRAM_TOKEN.replace(":", "-"))
    assert TELEGRAM_TOKEN.replace(":", "-") not in log_text.getvalue()


def test_caplog_sees_only_masked_text(installed: SecretRedactor, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("engine.x").info("secret is %s", API_SECRET)
    assert API_SECRET not in caplog.text
    assert all(API_SECRET not in record.getMessage() for record in caplog.records)


def test_uninstall_restores_plain_logging(log_text: io.StringIO) -> None:
    install_secret_redaction([API_KEY])
    uninstall_secret_redaction()
    logging.getLogger("engine.y").info("value %s", API_KEY)
    assert API_KEY in log_text.getvalue()


def test_settings_repr_stays_readable() -> None:
    text = "ExchangeConfig(api_key=SecretStr('**********'), mode='paper')"
    assert SecretRedactor().redact(text) == text
