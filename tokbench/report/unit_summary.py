"""One line per finished unit: its headline metrics with their confidence intervals.

``tokbench run`` prints it beside ``done <unit>``, so the first numbers reach the terminal as
soon as their unit is in the store, minutes before the leaderboard. The headline metrics are
the columns the suite's ``report.tables`` give the unit's task (the overview a reader looks at
first); a task no column names shows its metrics that have a direction (``↑``/``↓``) and are
estimates, not counts. Each interval is computed as the leaderboard computes it (the same
``Verdicts``, reading the replicates the unit stored): the line shows what a table cell holding
this result alone shows (a cell averaging several seeds' results has its own interval). Torch-free.
"""

from __future__ import annotations

import json
from typing import Any

from tokbench.report.metrics import METRICS, SPREADS, metric_info
from tokbench.report.table_model import Cell

#: metrics shown per line when the suite's tables name none for the task
FALLBACK_LIMIT = 3


def headline_metrics(record: dict[str, Any], report_config=None) -> list[str]:
    """The metrics to show for ``record``: the suite's table columns for its task (and dataset),
    in table order, else up to ``FALLBACK_LIMIT`` of its directed, estimated metrics."""
    metrics = record.get("metrics") or {}
    task = (record.get("task") or {}).get("name")
    dataset = (record.get("dataset") or {}).get("name")
    chosen: list[str] = []
    for table in (getattr(report_config, "tables", None) or []):
        for column in table.columns or []:
            if column.task == task and column.dataset in (None, dataset) and column.metric in metrics \
                    and column.metric not in chosen:
                chosen.append(column.metric)
    if chosen:
        return chosen
    order = {name: position for position, name in enumerate(METRICS)}  # the tables' column order
    directed = [name for name, value in metrics.items() if value is not None and name not in SPREADS
                and metric_info(name).higher_is_better is not None and not metric_info(name).exact]
    return sorted(directed, key=lambda name: order.get(name, len(order)))[:FALLBACK_LIMIT]


def summary(record: dict[str, Any], verdicts=None, report_config=None) -> str:
    """``rFID ↓ 168.24 ± 8.10 · PSNR (dB) ↑ 23.98 ± 0.31`` (``verdicts``: a
    ``tokbench.report.verdicts.Verdicts`` for the intervals; without it, values only). A metric
    the unit could not measure shows ``n/a``; one without stored evidence, its value alone."""
    metrics = record.get("metrics") or {}
    evidence = (record.get("details") or {}).get("evidence") or {}
    style = getattr(verdicts, "interval_style", "halfwidth")
    parts = []
    for name in headline_metrics(record, report_config):
        info = metric_info(name)
        spread = metrics.get(info.spread) if info.spread else None
        cell = Cell(value=metrics.get(name), spread=spread,
                    evidence=json.dumps(evidence[name], sort_keys=True) if name in evidence else None)
        if verdicts is not None:
            verdicts.interval(cell, info)
        parts.append(" ".join(part for part in (info.label, info.arrow, cell.text(info, style)) if part))
    return " · ".join(parts)
