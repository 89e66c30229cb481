"""Table specs -> tables built from the long frame, with the comparability guard.

A column is one (task, dataset, metric). It merges results only when their protocol
version and evaluator identity agree; otherwise building the table fails and lists
every mismatch, unless mixing is allowed, in which case the odd cells get footnotes.
Results that differ only by seed (several units of the same measurement) become
mean ± std with their count. Torch-free.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any

from tokbench.config.suite import TableSpec
from tokbench.errors import TokbenchError
from tokbench.report.metrics import METRICS, metric_info
from tokbench.report.table_model import Cell, Column, Table

if TYPE_CHECKING:  # pragma: no cover
    from tokbench.report.verdicts import Verdicts


class ComparabilityError(TokbenchError):
    """Results measured under different protocols or evaluators were asked to share a column."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "results that are not comparable would share a column:\n  " + "\n  ".join(problems)
            + "\nexport them separately (--suite), or allow mixing (--allow-mixing) to get footnotes"
        )


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


def _row_labels(selected, column_keys) -> dict[Any, str]:
    """Frame index -> row label. A tokenizer whose results in one column are not one
    measurement (they differ in more than the seed) gets a row per measurement, labelled
    with what differs; unlike results are never averaged."""
    import json

    from tokbench.report.comparability import difference_label, differing_fields

    labels = {index: tokenizer for index, tokenizer in zip(selected.index, selected["tokenizer"])}
    for task, dataset, metric, _ in column_keys:
        part = selected[(selected["task"] == task) & (selected["dataset"] == dataset) & (selected["metric"] == metric)]
        for tokenizer, rows in part.groupby("tokenizer", sort=False):
            keys = list(dict.fromkeys(rows["comparability"]))
            if len(keys) < 2:
                continue
            identities = [json.loads(rows[rows["comparability"] == key]["identity"].iloc[0]) for key in keys]
            paths = differing_fields(identities)
            texts = [difference_label(identity, paths) for identity in identities]
            if len(set(texts)) < len(texts):  # truncated labels collide: name the measurement
                texts = [f"{text}, id {key[:6]}" for text, key in zip(texts, keys)]
            for key, text in zip(keys, texts):
                for index in rows.index[rows["comparability"] == key]:
                    labels[index] = f"{tokenizer} [{text}]"
    return labels


def build_table(frame, spec: TableSpec, allow_mixing: bool = False, verdicts: "Verdicts | None" = None) -> Table:
    """The table ``spec`` describes, from the long frame (see ``frame.long_frame``).

    ``verdicts``: intervals, ties and rank ranges (see :mod:`tokbench.report.verdicts`);
    without it cells carry only their values."""
    import math

    column_keys = _columns_for(frame, spec)
    several_datasets = len({(task, dataset) for task, dataset, _, _ in column_keys}) > len({t for t, *_ in column_keys})
    several_tasks = len({t for t, *_ in column_keys}) > 1
    columns: list[Column] = []
    cells: dict[tuple[int, int], Cell] = {}
    footnotes: dict[str, str] = {}
    problems: list[str] = []
    marks = iter(string.ascii_lowercase)

    wanted = {(ct, cd, cm) for ct, cd, cm, _ in column_keys}
    selected = frame[[(t, d, m) in wanted for t, d, m in zip(frame["task"], frame["dataset"], frame["metric"])]]
    selected = selected.assign(row=selected.index.map(_row_labels(selected, column_keys)))
    base_of = dict(zip(selected["row"], selected["tokenizer"]))
    row_groups = None
    if spec.group_rows_by:
        family = dict(zip(selected["tokenizer"], selected[spec.group_rows_by].fillna("")))
        rows = sorted(base_of, key=lambda r: (str(family[base_of[r]]).casefold(), r.casefold()))
        row_groups = [str(family[base_of[r]]) for r in rows]
    else:
        rows = sorted(base_of, key=str.casefold)

    for index, (task, dataset, metric, label) in enumerate(column_keys):
        info = metric_info(metric)
        part = selected[(selected["task"] == task) & (selected["dataset"] == dataset) & (selected["metric"] == metric)]
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
        for (row_label, protocol, evaluator), group in part.groupby(["row", "protocol", "evaluator_id"], sort=False):
            values = [v for v in group["value"] if v is not None and not (isinstance(v, float) and math.isnan(v))]
            cell = Cell(None, unavailable=next((u for u in group["unavailable"] if isinstance(u, str)), None))
            cell.unit_keys = [k for k in group["unit_key"] if isinstance(k, str)]
            cell.provenance = list(group["provenance"])
            n = [int(v) for v in group["n"].dropna()]
            cell.n = n[0] if n else None
            if len(values) > 1:  # several seeds of one measurement (the row's comparability key): mean ± sample std
                mean = sum(values) / len(values)
                cell.value = mean
                cell.spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                cell.count = len(values)
                cell.seed_values = values
            elif values:
                cell.value = values[0]
                spread = group["spread"].iloc[0]
                cell.spread = None if spread is None or (isinstance(spread, float) and math.isnan(spread)) else float(spread)
                counts = group["spread_count"].dropna()
                cell.spread_count = int(counts.iloc[0]) if len(counts) else None
                evidence = group["evidence"].iloc[0]
                cell.evidence = evidence if isinstance(evidence, str) else None
            if (protocol, evaluator) in odd_marks:
                cell.notes.append(odd_marks[(protocol, evaluator)])
            for note in dict.fromkeys(n for n in group["footnote"] if isinstance(n, str)):  # the result's own caveat
                mark = next((m for m, text in footnotes.items() if text == note), None) or next(marks)
                footnotes[mark] = note
                cell.notes.append(mark)
            key = (rows.index(row_label), index)
            if key in cells:  # the same row under two protocols: keep the column's own, note the other
                if not cell.notes:
                    cells[key], cell = cell, cells[key]
                continue
            cells[key] = cell
        if spec.highlight and info.higher_is_better is not None:
            _rank(cells, index, len(rows), info.higher_is_better)
        if verdicts is not None:
            verdicts.judge_column([cells.get((r, index)) for r in range(len(rows))], info, footnotes, marks)
    if problems and not allow_mixing:
        raise ComparabilityError(problems)
    if verdicts is not None:
        verdicts.annotate_table(columns, cells, footnotes, marks)
    table = Table(spec.name, spec.title or spec.name, rows, columns, cells, footnotes, spec.highlight, row_groups)
    if verdicts is not None:
        table.verdict_note, table.interval_style = verdicts.settings_text(), verdicts.interval_style
    return table


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


def build_tables(frame, specs: list[TableSpec] | None = None, allow_mixing: bool = False,
                 verdicts: "Verdicts | None" = None) -> list[Table]:
    """Every table; a ComparabilityError lists the problems of all of them."""
    specs = specs if specs is not None else default_specs(frame)
    tables, problems = [], []
    for spec in specs:
        try:
            tables.append(build_table(frame, spec, allow_mixing, verdicts))
        except ComparabilityError as error:
            problems += [f"table {spec.name}: {p}" for p in error.problems]
    if problems:
        raise ComparabilityError(problems)
    return tables
