"""The domain room of the engine (see DESIGN.md)."""
