"""Markdown (tabulate, GitHub flavour) and LaTeX (booktabs) tables."""

from __future__ import annotations

from tokbench.report.report import Report
from tokbench.report.table_model import Table


def _cell_texts(table: Table, row: int) -> list[tuple[str, int | None, list[str]]]:
    """(text, emphasis, footnote marks) of each cell of a row. Emphasis 1 (bold): the best cell and
    every cell tied with it by the tests, when the table has verdicts; else the best value, and
    2 (second style) the second best."""
    out = []
    for index, column in enumerate(table.columns):
        cell = table.cell(row, index)
        text = cell.text(column.info, table.interval_style)
        if cell.count > 1:
            text += f" (n={cell.count})"
        if cell.rank_text():
            text += f" #{cell.rank_text()}"
        out.append((text, table.emphasis(cell), cell.notes))
    return out


def _legend(table: Table) -> list[str]:
    """The emphasis legend and, with verdicts, how intervals and ties were decided."""
    emphasised = any(_cell_texts(table, r)[c][1] for r in range(len(table.rows)) for c in range(len(table.columns)))
    if table.verdict_note is not None:
        return [table.verdict_note] if table.cells else []
    return ["**best**, _second best_ per column."] if emphasised else []


def markdown_table(table: Table, legend: bool = True) -> str:
    """The table, its legend (``legend=False``: left to the caller, see ``shared_legend``) and its footnotes."""
    from tabulate import tabulate

    rows = []
    starts = table.group_starts()
    for r, tokenizer in enumerate(table.rows):
        if r in starts:  # a row group: its name in bold, across an otherwise empty row
            rows.append([f"**{starts[r] or '(other)'}**", *([""] * len(table.columns))])
        row = [tokenizer]
        for text, rank, notes in _cell_texts(table, r):
            if rank == 1:
                text = f"**{text}**"
            elif rank == 2:
                text = f"_{text}_"
            row.append(text + "".join(f"<sup>{m}</sup>" for m in notes))
        rows.append(row)
    body = tabulate(rows, headers=["tokenizer", *(c.header for c in table.columns)], tablefmt="github",
                    disable_numparse=True)
    lines = [f"### {table.title}", "", body]
    shown = _legend(table) if legend else []
    notes = [f"<sup>{mark}</sup> {text}" for mark, text in table.footnotes.items()]
    if shown or notes:
        lines += ["", *shown, *notes]
    return "\n".join(lines)


def shared_legend(tables: list[Table]) -> list[str]:
    """The tables' legends once each, for several tables printed one after another (the terminal):
    a legend that another one extends (the same text plus a sentence) is left out."""
    legends = list(dict.fromkeys(line for table in tables for line in _legend(table)))
    return [line for line in legends if not any(other != line and other.startswith(line) for other in legends)]


def export_markdown(report: Report) -> str:
    if not report.tables:
        return "(no results)\n"
    return "\n\n".join([f"## {report.title}", *(markdown_table(t) for t in report.tables)]) + "\n"


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   "↑": r"$\uparrow$", "↓": r"$\downarrow$", "±": r"$\pm$", "×": r"$\times$", "·": r"$\cdot$",
                   "σ": r"$\sigma$", "α": r"$\alpha$", "–": "--", "≈": r"$\approx$", "³": r"\textsuperscript{3}", "é": r"\'e"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def latex_table(table: Table) -> str:
    spec = "l" + "r" * len(table.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
        rf"\label{{tab:{table.name}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
    ]
    groups = table.column_groups()
    if groups:  # a spanning header per task, rules under each
        spans, rules, start = [""], [], 2
        for name, width in groups:
            spans.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(name)}}}" if name else " & " * (width - 1))
            if name:
                rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        lines += [" & ".join(spans) + r" \\", " ".join(rules)]
        headers = [latex_escape(c.short_header) for c in table.columns]
    else:
        headers = [latex_escape(c.header) for c in table.columns]
    lines += [" & ".join(["Tokenizer", *headers]) + r" \\", r"\midrule"]
    starts = table.group_starts()
    for r, tokenizer in enumerate(table.rows):
        if r in starts:
            if r:
                lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{len(table.columns) + 1}}}{{l}}{{\textit{{{latex_escape(starts[r] or '(other)')}}}}} \\")
        cells = [latex_escape(tokenizer)]
        for text, rank, notes in _cell_texts(table, r):
            text = latex_escape(text)
            if rank == 1:
                text = rf"\textbf{{{text}}}"
            elif rank == 2:
                text = rf"\underline{{{text}}}"
            cells.append(text + "".join(rf"\textsuperscript{{{m}}}" for m in notes))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = [latex_escape(t) for t in _legend(table) if table.verdict_note is not None]
    notes += [rf"\textsuperscript{{{m}}}{latex_escape(t)}" for m, t in table.footnotes.items()]
    if notes:
        lines.append(r"\par\footnotesize " + " ".join(notes))
    lines.append(r"\end{table}")
    return "\n".join(lines)


def export_latex(report: Report) -> str:
    header = [f"% {latex_escape(report.title)} -- generated by tokbench; needs \\usepackage{{booktabs}}"]
    return "\n\n".join(header + [latex_table(t) for t in report.tables]) + "\n"
