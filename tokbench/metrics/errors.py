"""Errors shared by the metric modules."""

from __future__ import annotations

from tokbench.errors import TokbenchError


class MetricUnavailable(TokbenchError):
    """A metric cannot be computed here (weights absent offline, layer not in the file, ...).

    The message names the reason and what to provide to make the metric available.
    Tasks catch it to mark a metric "unavailable" instead of failing the whole run.
    """
