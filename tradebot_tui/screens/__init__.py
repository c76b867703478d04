"""Provides the console's screens and dialogs (confirmations, help, backtest)."""
