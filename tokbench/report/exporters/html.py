"""A self-contained static HTML leaderboard: one file, no server, no network.

Sortable tables (click a header), best and second-best cells highlighted, metric
descriptions on the headers and in a legend, provenance of every cell on hover and of
every result in an expandable list, plots inlined as images.
"""

from __future__ import annotations

import base64
import json
from html import escape

from tokbench.report.metrics import metric_info
from tokbench.report.report import Report
from tokbench.report.table_model import Table

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1d232a; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #5b6670; margin-top: 0; }
table.leaderboard { border-collapse: collapse; margin: .6rem 0; min-width: 28rem; }
table.leaderboard th, table.leaderboard td { padding: .35rem .7rem; border-bottom: 1px solid #dde3e8; }
table.leaderboard thead th { border-bottom: 2px solid #1d232a; text-align: right; cursor: pointer; user-select: none; white-space: nowrap; }
table.leaderboard thead th:first-child, table.leaderboard tbody th { text-align: left; }
table.leaderboard thead tr.groups th { text-align: center; cursor: default; border-bottom: 1px solid #8a949c; }
table.leaderboard tr.row-group th { text-align: left; font-style: italic; color: #5b6670; background: #f5f7f9; }
table.leaderboard thead th[aria-sort]::after { content: attr(data-arrow); color: #5b6670; padding-left: .25rem; }
table.leaderboard td { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; background: #d9f2e3; }
td.second { text-decoration: underline; background: #f0f8f3; }
td.na { color: #8a949c; }
sup.note { color: #a14b00; }
.legend, .footnotes { color: #5b6670; font-size: .9rem; }
span.best-key { font-weight: 700; background: #d9f2e3; padding: 0 .3rem; }
span.second-key { text-decoration: underline; background: #f0f8f3; padding: 0 .3rem; }
dl.metrics dt { font-weight: 600; } dl.metrics dd { margin: 0 0 .4rem 1rem; color: #3a444d; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #dde3e8; }
details.provenance pre { background: #f5f7f9; padding: .6rem; overflow-x: auto; font-size: .8rem; }
"""

SCRIPT = """
document.querySelectorAll('table.leaderboard').forEach(function (table) {
  var headers = table.querySelectorAll('thead tr.metrics th');
  headers.forEach(function (header, column) {
    header.addEventListener('click', function () {
      var ascending = header.getAttribute('aria-sort') !== 'ascending';
      headers.forEach(function (h) { h.removeAttribute('aria-sort'); });
      table.querySelectorAll('tr.row-group').forEach(function (g) { g.style.display = 'none'; });  // sorting ungroups
      header.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      header.setAttribute('data-arrow', ascending ? '\\u25B2' : '\\u25BC');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return !r.classList.contains('row-group'); });
      rows.sort(function (a, b) {
        var x = a.cells[column], y = b.cells[column];
        if (column === 0) { return (ascending ? 1 : -1) * x.textContent.localeCompare(y.textContent); }
        var u = x.dataset.value === undefined ? NaN : parseFloat(x.dataset.value);
        var v = y.dataset.value === undefined ? NaN : parseFloat(y.dataset.value);
        if (isNaN(u)) { return 1; } if (isNaN(v)) { return -1; }   // n/a always last
        return ascending ? u - v : v - u;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _cell_title(table: Table, row: int, column: int) -> str:
    cell, col = table.cell(row, column), table.columns[column]
    parts = [f"{col.task} / {col.dataset} / {col.metric}", f"protocol {col.protocol}, evaluator {col.evaluator_id}"]
    if cell.n is not None:
        parts.append(f"N = {cell.n}")
    if cell.count > 1:
        parts.append(f"mean ± std over {cell.count} runs")
    elif cell.spread is not None and cell.spread_count:
        parts.append(f"± std over {cell.spread_count} probe seeds")
    if cell.unavailable:
        parts.append(f"n/a: {cell.unavailable}")
    if cell.ci_method:
        parts.append(f"interval: {cell.ci_method}")
    if cell.test and cell.p_vs_best is not None:
        parts.append(f"vs best: {cell.test}, Holm-adjusted p = {cell.p_vs_best:.3g}")
    for key, provenance in zip(cell.unit_keys, cell.provenance):
        details = json.loads(provenance) if provenance else {}
        summary = ", ".join(f"{k} {details[k]}" for k in ("git_commit", "torch", "device") if details.get(k))
        parts.append(f"result {key[:10]}" + (f" ({summary})" if summary else ""))
        code = {(c.get("plugin"), c.get("version"), str(c.get("digest"))[:12]) for c in (details.get("code") or {}).values()}
        if code:  # the plugin versions and code digests that computed it (tokbench.storage.code_digest)
            parts.append("code: " + ", ".join(f"{p} {v} @{d}" for p, v, d in sorted(code)))
    return "\n".join(parts)


def html_table(table: Table) -> str:
    groups = table.column_groups()
    group_row = ""
    if groups:  # spanning task headers (not sortable), above the sortable metric headers
        spans = "".join(f'<th class="group" colspan="{width}">{escape(name)}</th>' for name, width in groups)
        group_row = f'<tr class="groups"><th class="group"></th>{spans}</tr>'
    headers = ['<th scope="col" title="tokenizer">Tokenizer</th>']
    for column in table.columns:
        description = column.info.description or column.metric
        text = column.short_header if groups else column.header
        headers.append(f'<th scope="col" title="{escape(description)}">{escape(text)}</th>')
    body = []
    starts = table.group_starts()
    for r, tokenizer in enumerate(table.rows):
        if r in starts:
            body.append(f'<tr class="row-group"><th colspan="{len(table.columns) + 1}">{escape(starts[r] or "(other)")}</th></tr>')
        cells = [f'<th scope="row">{escape(tokenizer)}</th>']
        for c, column in enumerate(table.columns):
            cell = table.cell(r, c)
            classes = {1: ["best"], 2: ["second"]}.get(table.emphasis(cell), [])
            if cell.value is None:
                classes.append("na")
            value_attr = "" if cell.value is None else f' data-value="{cell.value * column.info.scale!r}"'
            text = escape(cell.text(column.info, table.interval_style)) + (f" <small>(n={cell.count})</small>" if cell.count > 1 else "")
            if cell.rank_text():
                text += f' <small class="rank">#{escape(cell.rank_text())}</small>'
            notes = "".join(f'<sup class="note">{escape(m)}</sup>' for m in cell.notes)
            class_attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f'<td{class_attr}{value_attr} title="{escape(_cell_title(table, r, c))}">{text}{notes}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    footnotes = "".join(f"<li><sup>{escape(m)}</sup> {escape(t)}</li>" for m, t in table.footnotes.items())
    if table.verdict_note is not None:
        footnotes = f"<li>{escape(table.verdict_note)}</li>" + footnotes
    return "\n".join([
        f'<section class="table" id="table-{escape(table.name)}">',
        f"<h2>{escape(table.title)}</h2>",
        f'<table class="leaderboard" data-table="{escape(table.name)}">',
        "<thead>" + group_row + '<tr class="metrics">' + "".join(headers) + "</tr></thead>",
        "<tbody>", *body, "</tbody></table>",
        *( [f'<ul class="footnotes">{footnotes}</ul>'] if footnotes else []),
        "</section>",
    ])


def _metric_legend(report: Report) -> str:
    names = list(dict.fromkeys(c.metric for t in report.tables for c in t.columns))
    items = []
    for name in names:
        info = metric_info(name)
        direction = {True: "higher is better", False: "lower is better", None: "no direction"}[info.higher_is_better]
        items.append(f"<dt>{escape(info.label)} <code>{escape(name)}</code></dt>"
                     f"<dd>{escape(info.description or '(no description)')}; {direction}.</dd>")
    return '<section id="metrics"><h2>Metrics</h2><dl class="metrics">' + "".join(items) + "</dl></section>"


def _provenance(report: Report) -> str:
    frame = report.frame
    blocks = []
    for key, group in frame.groupby("unit_key", sort=True):
        first = group.iloc[0]
        summary = f"{first['task']} / {first['tokenizer']} / {first['dataset']} ({first['protocol']}, result {str(key)[:10]})"
        provenance = json.loads(first["provenance"]) if first["provenance"] else {}
        payload = {"unit_key": key, "tokenizer_fingerprint": first["tokenizer_fingerprint"], "run": first["run"],
                   "provenance": provenance}
        blocks.append(f'<details class="provenance"><summary>{escape(summary)}</summary>'
                      f"<pre>{escape(json.dumps(payload, indent=2, sort_keys=True, default=str))}</pre></details>")
    return '<section id="provenance"><h2>Provenance</h2>' + "".join(blocks) + "</section>"


def _plots(report: Report) -> str:
    if not report.plots and not report.skipped_plots:
        return ""
    figures = []
    for plot in report.plots:
        data = base64.b64encode(plot.png).decode("ascii")
        figures.append(f'<figure id="plot-{escape(plot.name)}"><img alt="{escape(plot.title)}" '
                       f'src="data:image/png;base64,{data}"><figcaption>{escape(plot.caption or plot.title)}</figcaption></figure>')
    skipped = "".join(f"<li>{escape(name)}: {escape(why)}</li>" for name, why in report.skipped_plots.items())
    return ('<section id="plots"><h2>Plots</h2>' + "".join(figures)
            + (f'<p class="legend">Not drawn:</p><ul class="legend">{skipped}</ul>' if skipped else "") + "</section>")


def export_html(report: Report) -> str:
    from tokbench import __version__

    count = report.frame["unit_key"].nunique() if len(report.frame) else 0
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report.title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(report.title)}</h1>",
        f'<p class="meta">{count} results · tokbench {escape(__version__)} · click a column header to sort · '
        "hover a value for its protocol and provenance</p>",
        ('<p class="legend"><span class="best-key">best, or tied with the best</span> per column (see each table\'s notes)</p>'
         if any(t.verdict_note is not None for t in report.tables) else
         '<p class="legend"><span class="best-key">best</span> <span class="second-key">second best</span> per column</p>'),
        *(html_table(t) for t in report.tables),
        _plots(report),
        _metric_legend(report),
        _provenance(report),
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]) + "\n"
