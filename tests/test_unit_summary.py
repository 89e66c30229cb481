"""The line ``tokbench run`` prints as each unit finishes: which metrics it shows and how."""

from __future__ import annotations

from tokbench.config.suite import ReportConfig
from tokbench.report.unit_summary import headline_metrics, summary

RECORD = {
    "task": {"name": "reconstruction"},
    "dataset": {"name": "shapes-val"},
    "metrics": {"psnr": 23.98, "rfid": 168.2, "ssim": 0.71, "lpips": None, "encode_gflops": 0.11, "my_score": 3.0},
}


def test_the_suite_columns_for_the_task_come_first_and_alone():
    report = ReportConfig.model_validate({"tables": [
        {"name": "overview", "columns": [{"task": "reconstruction", "metric": "rfid"}, {"task": "generation", "metric": "gfid"},
                                         {"task": "reconstruction", "metric": "psnr"}]},
        {"name": "other", "columns": [{"task": "reconstruction", "metric": "rfid", "dataset": "elsewhere"},
                                      {"task": "reconstruction", "metric": "ssim", "dataset": "elsewhere"}]},
    ]})
    assert headline_metrics(RECORD, report) == ["rfid", "psnr"]


def test_without_columns_the_directed_estimates_in_table_order():
    # no counts (GFLOPs), no metric without a direction, nothing unmeasured
    assert headline_metrics(RECORD, ReportConfig()) == ["rfid", "psnr", "ssim"]
    assert headline_metrics({**RECORD, "metrics": {"my_score": 3.0}}, None) == []


def test_values_without_evidence_are_shown_plain_and_unmeasured_ones_as_na():
    report = ReportConfig.model_validate({"tables": [{"name": "t", "columns": [
        {"task": "reconstruction", "metric": "rfid"}, {"task": "reconstruction", "metric": "lpips"}]}]})
    assert summary(RECORD, None, report) == "rFID ↓ 168.20 · LPIPS ↓ n/a"
