"""The benchmark scripts keep running: ``benchmarks/run_all.py --quick`` end to end (tiny sizes,
nothing recorded). Timings are not asserted (they are measured, not tested); the structure is."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_every_benchmark_runs_and_is_summarised_beside_its_baseline(tmp_path):
    before = {p.name: p.read_text() for p in (ROOT / "benchmarks" / "results").glob("*.jsonl")}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "SUMMARY-quick.json").read_text())
    names = [r["benchmark"] for r in results]
    assert names == ["codec", "vtp_pretrain", "lightningdit", "fid_extractor", "data_loading", "probe_grid", "stats",
                     "reconstruction", "worker_split"]
    for result in results:
        assert {"machine", "settings", "figures", "comparisons"} <= set(result)
        assert result["machine"]["torch"] and result["machine"]["device"] == "cpu"
        for row in result["comparisons"]:
            assert row["ours"] > 0 and row["baseline_value"] > 0 and row["baseline"], row
            assert math.isfinite(row["ours"] / row["baseline_value"])
    with_baseline = {r["benchmark"] for r in results if r["comparisons"]}
    assert with_baseline == set(names) - {"reconstruction"}  # the profile has no single baseline
    summary = (tmp_path / "SUMMARY-quick.md").read_text()
    assert summary.count("\n## ") == len(names) and "| measured | tokbench | baseline |" in summary
    after = {p.name: p.read_text() for p in (ROOT / "benchmarks" / "results").glob("*.jsonl")}
    assert after == before, "--quick must not append to the recorded results"
