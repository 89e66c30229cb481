"""What a leaderboard table holds: its cells (value, interval, rank, the tests' verdicts),
columns and footnotes. Built by :mod:`tokbench.report.tables`, judged by
:mod:`tokbench.report.verdicts`, written by the exporters. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tokbench.report.metrics import MetricInfo


@dataclass
class Cell:
    value: float | None
    spread: float | None = None
    count: int = 1  # results aggregated (seeds)
    spread_count: int | None = None
    n: int | None = None
    rank: int | None = None  # 1 best, 2 second best
    notes: list[str] = field(default_factory=list)  # footnote marks
    unavailable: str | None = None
    unit_keys: list[str] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)
    #: the confidence interval, in the value's units (None only without a value or evidence)
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str | None = None
    #: the best cell, or not significantly different from it (None: no test was possible)
    tied_with_best: bool | None = None
    #: (best, worst) rank this cell can hold given the pairwise tests of its column
    rank_range: tuple[int, int] | None = None
    #: Holm-adjusted p-value of the test against the column's best, and what test
    p_vs_best: float | None = None
    test: str | None = None
    #: the per-item evidence of a single result (JSON) and the values of a seed group
    evidence: str | None = None
    seed_values: list[float] | None = None

    def text(self, info: MetricInfo, interval_style: str = "halfwidth") -> str:
        if self.value is None:
            return "n/a"
        if info.exact:  # a count: its interval is the value itself, nothing to show
            return info.format(self.value)
        if self.ci_low is not None and self.ci_high is not None:
            return info.format_interval(self.value, self.ci_low, self.ci_high, interval_style)
        return info.format(self.value, self.spread)

    def rank_text(self) -> str:
        """``1–3`` where the tests leave the rank open, else empty."""
        if self.rank_range is None or self.rank_range[0] == self.rank_range[1]:
            return ""
        return f"{self.rank_range[0]}–{self.rank_range[1]}"


@dataclass
class Column:
    task: str
    dataset: str
    metric: str
    label: str  # the metric's label, or the spec's
    info: MetricInfo
    protocol: str
    evaluator_id: str
    #: the task (and dataset) this column belongs to, when the table spans several
    group: str = ""
    explicit_label: bool = False

    @property
    def short_header(self) -> str:
        """Under a group header row (LaTeX, HTML)."""
        return f"{self.label} {self.info.arrow}".rstrip()

    @property
    def header(self) -> str:
        """One-line header (Markdown): the group is spelled out unless the spec named the column."""
        prefix = f"{self.group}: " if self.group and not self.explicit_label else ""
        return f"{prefix}{self.short_header}"


@dataclass
class Table:
    name: str
    title: str
    rows: list[str]
    columns: list[Column]
    cells: dict[tuple[int, int], Cell]
    footnotes: dict[str, str]  # mark -> text
    highlight: bool = True
    row_groups: list[str] | None = None  # group of each row, when grouped
    #: how intervals and ties were computed (a footnote), None when they were not
    verdict_note: str | None = None
    interval_style: str = "halfwidth"

    def cell(self, row: int, column: int) -> Cell:
        return self.cells.get((row, column)) or Cell(None)

    def emphasis(self, cell: Cell) -> int | None:
        """1: shown as best (with verdicts: the best cell and every cell tied with it by the tests;
        without: the best value); 2: second best (only without verdicts); None: plain."""
        if not self.highlight:
            return None
        if self.verdict_note is not None:
            return 1 if cell.tied_with_best else None
        return cell.rank

    def column_groups(self) -> list[tuple[str, int]]:
        """(group, span) of consecutive columns; empty when the table has no groups."""
        if not any(c.group for c in self.columns):
            return []
        spans: list[tuple[str, int]] = []
        for column in self.columns:
            if spans and spans[-1][0] == column.group:
                spans[-1] = (column.group, spans[-1][1] + 1)
            else:
                spans.append((column.group, 1))
        return spans

    def group_starts(self) -> dict[int, str]:
        """Row index -> group name, at the first row of each row group."""
        if not self.row_groups:
            return {}
        return {r: g for r, g in enumerate(self.row_groups) if r == 0 or self.row_groups[r - 1] != g}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "columns": [{"task": c.task, "dataset": c.dataset, "metric": c.metric, "label": c.label, "group": c.group,
                         "higher_is_better": c.info.higher_is_better, "scale": c.info.scale,
                         "protocol": c.protocol, "evaluator_id": c.evaluator_id} for c in self.columns],
            "rows": [
                {"tokenizer": row, **({"group": self.row_groups[r]} if self.row_groups else {}), "cells": [
                    {"value": cell.value, "spread": cell.spread, "count": cell.count, "n": cell.n, "rank": cell.rank,
                     "ci_low": cell.ci_low, "ci_high": cell.ci_high, "ci_method": cell.ci_method,
                     "tied_with_best": cell.tied_with_best,
                     "rank_range": list(cell.rank_range) if cell.rank_range else None,
                     "p_vs_best": cell.p_vs_best, "test": cell.test,
                     "notes": cell.notes, "unavailable": cell.unavailable, "unit_keys": cell.unit_keys}
                    for cell in (self.cell(r, c) for c in range(len(self.columns)))
                ]}
                for r, row in enumerate(self.rows)
            ],
            "footnotes": self.footnotes,
            "verdicts": self.verdict_note,
        }
