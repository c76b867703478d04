"""The analysis room of the engine (see DESIGN.md)."""
