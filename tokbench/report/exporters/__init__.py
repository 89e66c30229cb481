"""Leaderboard exporters: each takes a ``Report`` and returns the file's text."""
