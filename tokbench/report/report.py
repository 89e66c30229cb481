"""A report: the long frame, the tables built from it and the plots beside them.

Exporters (registered through ``tokbench_register_exporters``) take a ``Report`` and
return text; ``write_leaderboard`` writes every format and the plots into a folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tokbench.config.suite import ReportConfig, TableSpec
from tokbench.report.figure import Plot
from tokbench.report.table_model import Cell, Table
from tokbench.report.tables import build_tables


@dataclass
class Report:
    title: str
    frame: Any  # the long pandas frame
    tables: list[Table]
    plots: list[Plot] = field(default_factory=list)
    skipped_plots: dict[str, str] = field(default_factory=dict)  # name -> why not drawn
    allow_mixing: bool = False
    timings: str = ""  # Markdown: wall time by phase per unit (tokbench.report.timings)
    predictions: str = ""  # Markdown: "PREDICTED at <budget>" tables from budget ladders (tokbench.report.ladders)


def build_report(records: Iterable[dict[str, Any]], *, suite: str | None = None, specs: list[TableSpec] | None = None,
                 allow_mixing: bool = False, title: str | None = None, store=None, plots: bool = False,
                 settings=None) -> Report:
    """``settings``: the suite's ``report:`` section (``ReportConfig``; defaults when None). With a
    ``store``, every cell and result gets its interval and every column its ties (see
    :mod:`tokbench.report.verdicts`), computed from the evidence the results point to."""
    from tokbench.report.frame import long_frame

    records = list(records)
    frame = long_frame(records, suite=suite)
    verdicts = None
    if store is not None:
        from tokbench.report.verdicts import Verdicts

        verdicts = Verdicts.from_config(store, settings or ReportConfig())
        _result_intervals(frame, verdicts)
    tables = build_tables(frame, specs, allow_mixing, verdicts) if len(frame) else []
    report = Report(title or (f"tokbench leaderboard: {suite}" if suite else "tokbench leaderboard"), frame, tables,
                    allow_mixing=allow_mixing)
    from tokbench.report.timings import timing_table

    report.timings = timing_table(r for r in records if suite is None or r.get("suite", {}).get("name") == suite)
    selected = [r for r in records if suite is None or r.get("suite", {}).get("name") == suite]
    ladders = None
    if store is not None and any(r.get("type") == "rung" for r in selected):
        from tokbench.report.ladders import ladder_groups, prediction_table
        from tokbench.stats import BootstrapSettings

        config = settings or ReportConfig()
        ladders = ladder_groups(selected, store, BootstrapSettings(config.confidence, config.resamples, config.seed),
                                target_flops=config.ladder_target_flops)
        report.predictions = prediction_table(ladders)
    if plots:
        from tokbench.report.plots import draw_plots

        report.plots, report.skipped_plots = draw_plots(selected, frame, store, ladders)
    return report


def _result_intervals(frame, verdicts) -> None:
    """``ci_low``, ``ci_high``, ``ci_method`` on every row of the long frame (one result each)."""
    from tokbench.report.metrics import metric_info

    lows, highs, methods = [], [], []
    for value, evidence, metric in zip(frame["value"], frame["evidence"], frame["metric"]):
        cell = Cell(None if value is None or value != value else float(value),
                    evidence=evidence if isinstance(evidence, str) else None)
        verdicts.interval(cell, metric_info(metric))
        lows.append(cell.ci_low)
        highs.append(cell.ci_high)
        methods.append(cell.ci_method)
    frame["ci_low"], frame["ci_high"], frame["ci_method"] = lows, highs, methods


#: format -> file name in a leaderboard folder
FILES = {"markdown": "leaderboard.md", "latex": "leaderboard.tex", "csv": "results.csv", "json": "results.json",
         "html": "index.html"}
TIMINGS_FILE = "timings.md"


def write_leaderboard(report: Report, directory: Path, formats: Iterable[str] = tuple(FILES)) -> dict[str, Path]:
    """Every format (and the plots as PNG and SVG) into ``directory``; returns what was written."""
    from tokbench.registry.plugins import get_registry, resolve

    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    registry = get_registry()
    for fmt in formats:
        exporter = resolve(registry.get("exporters", fmt).exporter)
        path = directory / FILES.get(fmt, f"leaderboard.{fmt}")
        path.write_text(exporter(report))
        written[fmt] = path
    if report.timings:
        path = directory / TIMINGS_FILE
        path.write_text(f"# Where the time went: {report.title}\n\nWall time of each unit by phase, slowest first "
                        f"(cached units keep the time of the run that computed them).\n\n{report.timings}\n")
        written["timings"] = path
    if report.predictions:
        from tokbench.report.ladders import TABLE_FILE

        path = directory / TABLE_FILE
        path.write_text(f"# Predictions from budget ladders: {report.title}\n\n{report.predictions}\n")
        written["predictions"] = path
    if report.plots:
        (directory / "plots").mkdir(exist_ok=True)
        for plot in report.plots:
            for suffix, data in (("png", plot.png), ("svg", plot.svg)):
                path = directory / "plots" / f"{plot.name}.{suffix}"
                path.write_bytes(data)
                written[f"plot:{plot.name}.{suffix}"] = path
    return written
