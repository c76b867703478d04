"""Provides candle data access: validated file import and the bundled sample data."""
