"""Leaderboard exports: golden files for every format, the comparability guard, seed
aggregation and highlighting. ``TOKBENCH_UPDATE_GOLDEN=1`` rewrites the golden files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from report_fixtures import golden_records, record
from tokbench.config.suite import ColumnSpec, TableSpec
from tokbench.report.frame import long_frame
from tokbench.report.report import FILES, build_report, write_leaderboard
from tokbench.report.tables import ComparabilityError, build_table

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_every_format_matches_its_golden_file(fmt, tmp_path):
    report = build_report(golden_records(), title="tokbench leaderboard: golden")
    written = write_leaderboard(report, tmp_path, formats=[fmt])
    text = written[fmt].read_text()
    golden = GOLDEN / FILES[fmt]
    if os.environ.get("TOKBENCH_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"{fmt} export changed; if intended, rerun with TOKBENCH_UPDATE_GOLDEN=1"


def test_markdown_highlights_best_and_second_by_direction():
    report = build_report(golden_records())
    table = next(t for t in report.tables if t.name == "reconstruction")
    rows = {name: i for i, name in enumerate(table.rows)}
    rfid = [c.metric for c in table.columns].index("rfid")
    psnr = [c.metric for c in table.columns].index("psnr")
    assert table.cell(rows["bicubic f4 & co_1"], rfid).rank == 1  # lowest rFID
    assert table.cell(rows["VTP tiny"], rfid).rank == 2
    assert table.cell(rows["VAE tiny"], rfid).rank is None
    assert table.cell(rows["bicubic f4 & co_1"], psnr).rank == 1  # highest PSNR
    assert table.cell(rows["VAE tiny"], psnr).rank == 2
    lpips = [c.metric for c in table.columns].index("lpips")
    assert table.cell(0, lpips).value is None and "VGG16" in table.cell(0, lpips).unavailable


def test_seeds_of_one_unit_become_mean_std_and_count():
    report = build_report(golden_records())
    table = next(t for t in report.tables if t.name == "generation")
    cell = table.cell(table.rows.index("VTP tiny"), 0)
    assert cell.count == 3 and cell.value == pytest.approx(42.1666666)
    assert cell.spread == pytest.approx(1.0408330, rel=1e-6)  # sample std of 41, 43, 42.5
    assert table.cell(table.rows.index("VAE tiny"), 0).count == 1
    probe = next(t for t in report.tables if t.name == "probe")  # an in-record spread over probe seeds
    top1 = probe.cell(probe.rows.index("VTP tiny"), [c.metric for c in probe.columns].index("top1"))
    assert top1.spread == pytest.approx(0.012) and top1.spread_count == 3


def test_guard_refuses_two_protocol_versions_in_one_column():
    records = golden_records()
    records[1]["task"]["protocol_version"] = "rfid-v2"  # VTP measured under another protocol
    with pytest.raises(ComparabilityError) as raised:
        build_report(records)
    problems = raised.value.problems
    assert any("protocol rfid-v2" in p and "VTP tiny" in p and "protocol rfid-v1" in p for p in problems)
    assert all(p.startswith("table reconstruction:") for p in problems)
    assert "--allow-mixing" in str(raised.value)


def test_guard_refuses_other_evaluators_and_mixing_adds_footnotes():
    records = golden_records()
    records[0]["evaluator"]["fid"] = {"weights_sha256": "pytorch-fid"}  # other FID weights for the VAE
    with pytest.raises(ComparabilityError, match="rFID"):
        build_report(records)
    report = build_report(records, allow_mixing=True)
    table = next(t for t in report.tables if t.name == "reconstruction")
    rfid = [c.metric for c in table.columns].index("rfid")
    vae = table.cell(table.rows.index("VAE tiny"), rfid)
    assert vae.notes == ["a"] and vae.rank is None  # a footnoted cell does not compete
    assert "measured with protocol rfid-v1, evaluator" in table.footnotes["a"]
    ssim = [c.metric for c in table.columns].index("ssim")  # other metrics' evaluators are unaffected
    assert table.cell(table.rows.index("VAE tiny"), ssim).notes == []
    markdown = write_leaderboard(report, Path(os.environ.get("TMPDIR", "/tmp")) / "mixing", ["markdown"])["markdown"].read_text()
    assert "171.46<sup>a</sup>" in markdown and "<sup>a</sup> rFID: measured with protocol" in markdown


def test_explicit_columns_and_labels():
    frame = long_frame(golden_records())
    spec = TableSpec(name="headline", title="Headline", columns=[
        ColumnSpec(task="reconstruction", metric="rfid"), ColumnSpec(task="probe", metric="top1", label="probe top-1"),
        ColumnSpec(task="generation", metric="gfid")])
    table = build_table(frame, spec)
    assert [c.header for c in table.columns] == ["reconstruction: rFID ↓", "probe top-1 ↑", "generation: gFID ↓"]
    assert table.rows == ["bicubic f4 & co_1", "VAE tiny", "VTP tiny"]  # sorted, case-insensitively
    assert table.cell(0, 2).value is None  # bicubic has no generation result: n/a, not a gap in the table


def test_long_frame_keeps_full_precision_and_provenance():
    frame = long_frame([record("t", "reconstruction", "rfid-v1", "a", "A", {"psnr": 26.123456789012345})])
    assert frame.loc[0, "value"] == 26.123456789012345
    assert json.loads(frame.loc[0, "provenance"])["git_commit"] == "0123456789ab"
    assert list(frame["metric"]) == ["psnr"] and bool(frame.loc[0, "higher_is_better"]) is True


def test_suite_report_section_is_validated():
    from tokbench.config.suite import validate_suite
    from tokbench.errors import SuiteError

    suite = {
        "name": "s",
        "datasets": {"val": {"kind": "shapes", "params": {"num_images": 4, "resolution": 16}}},
        "tokenizers": {"b": {"plugin": "resample", "params": {"factor": 4}}},
        "tasks": [{"kind": "reconstruction", "dataset": "val"}],
        "report": {"formats": ["markdown", "pdf"],
                   "tables": [{"name": "x", "columns": [{"task": "recon", "metric": "rfid"}]},
                              {"name": "y", "tasks": ["reconstruction", "zero_shot"]}]},
    }
    with pytest.raises(SuiteError) as raised:
        validate_suite(suite, source="s.yaml")
    assert raised.value.problems == [
        "s.yaml: report.formats.1: unknown exporter 'pdf'; allowed: csv, html, json, latex, markdown",
        "s.yaml: report.tables.0.columns.0.task: unknown task 'recon'; allowed: reconstruction",
        "s.yaml: report.tables.1.tasks.1: unknown task 'zero_shot'; allowed: reconstruction",
    ]


def test_column_and_row_groups_in_every_renderer():
    from tokbench.report.exporters.html import html_table
    from tokbench.report.exporters.text import latex_table, markdown_table

    frame = long_frame(golden_records())
    spec = TableSpec(name="overview", title="Overview", group_rows_by="plugin", columns=[
        ColumnSpec(task="reconstruction", metric="rfid"), ColumnSpec(task="reconstruction", metric="psnr"),
        ColumnSpec(task="probe", metric="top1")])
    table = build_table(frame, spec)
    assert table.rows == ["bicubic f4 & co_1", "VAE tiny", "VTP tiny"]  # resample < vae < vtp
    assert table.row_groups == ["resample", "vae", "vtp"]
    assert table.column_groups() == [("reconstruction", 2), ("probe", 1)]
    latex = latex_table(table)
    assert r"\multicolumn{2}{c}{reconstruction} & \multicolumn{1}{c}{probe} \\" in latex
    assert r"\cmidrule(lr){2-3} \cmidrule(lr){4-4}" in latex
    assert r"Tokenizer & rFID $\downarrow$ & PSNR (dB) $\uparrow$ & top-1 (\%) $\uparrow$ \\" in latex
    assert r"\multicolumn{4}{l}{\textit{vae}} \\" in latex
    markdown = markdown_table(table)
    assert "| reconstruction: rFID ↓" in markdown and "| **vae**" in markdown
    html = html_table(table)
    assert '<th class="group" colspan="2">reconstruction</th>' in html
    assert '<tr class="row-group"><th colspan="4">vtp</th></tr>' in html


def test_the_terminal_prints_a_legend_once_not_under_every_table():
    from tokbench.report.exporters.text import markdown_table, shared_legend
    from tokbench.report.table_model import Cell, Table

    notes = ["± / [ ]: intervals.", "± / [ ]: intervals.", "± / [ ]: intervals. Cells without stored per-item evidence are not tested."]
    tables = [Table(f"t{i}", f"t{i}", ["a"], [], {(0, 0): Cell(1.0)}, {}, verdict_note=note) for i, note in enumerate(notes)]
    assert shared_legend(tables) == ["± / [ ]: intervals. Cells without stored per-item evidence are not tested."]
    assert "intervals" in markdown_table(tables[0]) and "intervals" not in markdown_table(tables[0], legend=False)
