"""The runtime room of the engine (see DESIGN.md)."""
