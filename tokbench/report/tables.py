"""Table specs -> tables built from the long frame, with the comparability guard.

A column is one (task, dataset, metric). It merges results only when their protocol
version and evaluator identity agree; otherwise building the table fails and lists
every mismatch, unless mixing is allowed, in which case the odd cells get footnotes.
Results that differ only by seed (several units of the same measurement) become
mean ± std with their count. Torch-free.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tokbench.errors import TokbenchError
from tokbench.report.metrics import METRICS, MetricInfo, metric_info


class ComparabilityError(TokbenchError):
    """Results measured under different protocols or evaluators were asked to share a column."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "results that are not comparable would share a column:\n  " + "\n  ".join(problems)
            + "\nexport them separately (--suite), or allow mixing (--allow-mixing) to get footnotes"
        )


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="task name in the suite (its `name`, else its kind)")
    metric: str
    dataset: str | None = Field(None, description="only this dataset (default: every dataset of the task)")
    label: str | None = Field(None, description="header text (default: the metric's label)")


class TableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="file-safe name")
    title: str = ""
    columns: list[ColumnSpec] | None = Field(None, description="default: every metric of `tasks`")
    tasks: list[str] | None = Field(None, description="with columns unset: the tasks to show (default: all)")
    highlight: bool = Field(True, description="mark the best and second-best value of each column")
    group_rows_by: Literal["plugin"] | None = Field(None, description="group rows, e.g. by tokenizer family (plugin)")


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

    def text(self, info: MetricInfo) -> str:
        if self.value is None:
            return "n/a"
        spread = self.spread
        return info.format(self.value, spread)


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

    def cell(self, row: int, column: int) -> Cell:
        return self.cells.get((row, column)) or Cell(None)

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
                     "notes": cell.notes, "unavailable": cell.unavailable, "unit_keys": cell.unit_keys}
                    for cell in (self.cell(r, c) for c in range(len(self.columns)))
                ]}
                for r, row in enumerate(self.rows)
            ],
            "footnotes": self.footnotes,
        }


def default_specs(frame) -> list[TableSpec]:
    """One table per task, every metric of it."""
    return [TableSpec(name=_safe(task), title=task, tasks=[task]) for task in dict.fromkeys(frame["task"])]


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in text) or "table"


def _columns_for(frame, spec: TableSpec) -> list[tuple[str, str, str, str | None]]:
    """(task, dataset, metric, label) of every column the spec asks for, in order."""
    if spec.columns is not None:
        out = []
        for column in spec.columns:
            rows = frame[(frame["task"] == column.task) & (frame["metric"] == column.metric)]
            if column.dataset is not None:
                rows = rows[rows["dataset"] == column.dataset]
            datasets = list(dict.fromkeys(rows["dataset"])) or [column.dataset or ""]
            out += [(column.task, dataset, column.metric, column.label) for dataset in datasets]
        return out
    tasks = spec.tasks or list(dict.fromkeys(frame["task"]))
    order = {name: i for i, name in enumerate(METRICS)}
    out = []
    for task in tasks:
        rows = frame[frame["task"] == task]
        for dataset in dict.fromkeys(rows["dataset"]):
            metrics = dict.fromkeys(rows[rows["dataset"] == dataset]["metric"])
            for metric in sorted(metrics, key=lambda m: (order.get(m, len(order)), m)):
                out.append((task, dataset, metric, None))
    return out


def build_table(frame, spec: TableSpec, allow_mixing: bool = False) -> Table:
    """The table ``spec`` describes, from the long frame (see ``frame.long_frame``)."""
    import math

    column_keys = _columns_for(frame, spec)
    several_datasets = len({(task, dataset) for task, dataset, _, _ in column_keys}) > len({t for t, *_ in column_keys})
    several_tasks = len({t for t, *_ in column_keys}) > 1
    rows: list[str] = []
    columns: list[Column] = []
    cells: dict[tuple[int, int], Cell] = {}
    footnotes: dict[str, str] = {}
    problems: list[str] = []
    marks = iter(string.ascii_lowercase)

    selected = frame[[(t, d, m) in {(ct, cd, cm) for ct, cd, cm, _ in column_keys}
                      for t, d, m in zip(frame["task"], frame["dataset"], frame["metric"])]]
    row_groups = None
    if spec.group_rows_by:
        family = dict(zip(selected["tokenizer"], selected[spec.group_rows_by].fillna("")))
        rows = sorted(family, key=lambda t: (str(family[t]).casefold(), t.casefold()))
        row_groups = [str(family[t]) for t in rows]
    else:
        rows = sorted(set(selected["tokenizer"]), key=str.casefold)

    for index, (task, dataset, metric, label) in enumerate(column_keys):
        info = metric_info(metric)
        part = frame[(frame["task"] == task) & (frame["dataset"] == dataset) & (frame["metric"] == metric)]
        combos = part.groupby(["protocol", "evaluator_id"], sort=False).size().sort_values(ascending=False, kind="stable")
        main_protocol, main_evaluator = combos.index[0] if len(combos) else ("", "")
        group = " · ".join(p for p in (task if several_tasks else "", dataset if several_datasets else "") if p)
        columns.append(Column(task, dataset, metric, label or info.label, info, main_protocol, main_evaluator,
                              group=group, explicit_label=label is not None))
        odd_marks: dict[tuple[str, str], str] = {}
        for (protocol, evaluator), _ in list(combos.items())[1:]:
            who = sorted(set(part[(part["protocol"] == protocol) & (part["evaluator_id"] == evaluator)]["tokenizer"]))
            problems.append(
                f"{columns[-1].label} ({task} / {dataset}): protocol {protocol} evaluator {evaluator} for "
                f"{', '.join(who)}, but protocol {main_protocol} evaluator {main_evaluator} for the others"
            )
            mark = next(marks)
            odd_marks[(protocol, evaluator)] = mark
            footnotes[mark] = (f"{columns[-1].label}: measured with protocol {protocol}, evaluator {evaluator} "
                               f"(the column's other cells: {main_protocol}, {main_evaluator})")
        for (tokenizer, protocol, evaluator), group in part.groupby(["tokenizer", "protocol", "evaluator_id"], sort=False):
            values = [v for v in group["value"] if v is not None and not (isinstance(v, float) and math.isnan(v))]
            cell = Cell(None, unavailable=next((u for u in group["unavailable"] if isinstance(u, str)), None))
            cell.unit_keys = [k for k in group["unit_key"] if isinstance(k, str)]
            cell.provenance = list(group["provenance"])
            n = [int(v) for v in group["n"].dropna()]
            cell.n = n[0] if n else None
            if len(values) > 1:  # several units of one measurement (seeds): mean ± sample std
                mean = sum(values) / len(values)
                cell.value = mean
                cell.spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                cell.count = len(values)
            elif values:
                cell.value = values[0]
                spread = group["spread"].iloc[0]
                cell.spread = None if spread is None or (isinstance(spread, float) and math.isnan(spread)) else float(spread)
                counts = group["spread_count"].dropna()
                cell.spread_count = int(counts.iloc[0]) if len(counts) else None
            if (protocol, evaluator) in odd_marks:
                cell.notes.append(odd_marks[(protocol, evaluator)])
            key = (rows.index(tokenizer), index)
            if key in cells:  # the same tokenizer under two protocols: keep the column's own, note the other
                if not cell.notes:
                    cells[key], cell = cell, cells[key]
                continue
            cells[key] = cell
        if spec.highlight and info.higher_is_better is not None:
            _rank(cells, index, len(rows), info.higher_is_better)
    if problems and not allow_mixing:
        raise ComparabilityError(problems)
    return Table(spec.name, spec.title or spec.name, rows, columns, cells, footnotes, spec.highlight, row_groups)


def _rank(cells: dict[tuple[int, int], Cell], column: int, num_rows: int, higher: bool) -> None:
    """Rank 1 = best value (ties share it), 2 = the next distinct value; footnoted cells do not compete."""
    scored = [(cells[(r, column)].value, r) for r in range(num_rows)
              if (r, column) in cells and cells[(r, column)].value is not None and not cells[(r, column)].notes]
    distinct = sorted({v for v, _ in scored}, reverse=higher)
    if len(distinct) < 2:  # nothing to compare
        return
    for value, row in scored:  # a second best only among three or more: of two, it is just the worst
        position = distinct.index(value)
        if position == 0 or (position == 1 and len(distinct) > 2):
            cells[(row, column)].rank = position + 1


def build_tables(frame, specs: list[TableSpec] | None = None, allow_mixing: bool = False) -> list[Table]:
    """Every table; a ComparabilityError lists the problems of all of them."""
    specs = specs if specs is not None else default_specs(frame)
    tables, problems = [], []
    for spec in specs:
        try:
            tables.append(build_table(frame, spec, allow_mixing))
        except ComparabilityError as error:
            problems += [f"table {spec.name}: {p}" for p in error.problems]
    if problems:
        raise ComparabilityError(problems)
    return tables
