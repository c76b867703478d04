"""Provides the dashboard's panes; each renders one part of an engine snapshot and computes nothing."""
