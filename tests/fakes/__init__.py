"""Provides loopback fakes of external services (Telegram Bot API, exchanges) for tests."""
