"""The simulation room of the engine (see DESIGN.md)."""
