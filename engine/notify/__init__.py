"""Provides Telegram alerts and remote control: the notifier, its outbox sender and command handlers.

Use :func:`create_notifier` (None when no token is configured) and ``await notifier.start()`` /
``await notifier.stop()`` inside the engine's loop. See :mod:`engine.notify.notifier`.
"""

from __future__ import annotations

from engine.notify.notifier import NotifierTuning, TelegramNotifier, create_notifier
from engine.notify.outbox import RetryPolicy

__all__ = ["NotifierTuning", "RetryPolicy", "TelegramNotifier", "create_notifier"]
