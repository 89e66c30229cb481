"""End to end through the CLI: run, rerun (nothing recomputed), local backend,
SIGKILL in the middle and resume. Uses the real FID Inception weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, requires_fid_weights, run_cli

pytestmark = [requires_fid_weights, pytest.mark.slow]

MINI = """
name: mini
datasets:
  shapes: {{kind: shapes, params: {{num_images: {n}, resolution: 32}}}}
tokenizers:
  fine: {{plugin: resample, label: bicubic f2, params: {{factor: 2}}}}
  coarse: {{plugin: resample, label: bicubic f8, params: {{factor: 8}}}}
tasks:
  - kind: reconstruction
    dataset: shapes
    params: {{batch_size: 8, shard_size: 8, metrics: [rfid, psnr, ssim, lpips]}}
"""


def suite_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(textwrap.dedent(MINI.format(n=n)))
    return path


def results(store: Path) -> dict[str, dict]:
    records = [json.loads(p.read_text()) for p in (store / "results").glob("*.json")]
    return {r["tokenizer"]["name"]: r for r in records if r["type"] == "result"}


def commits(store: Path) -> list[dict]:
    return [json.loads(line) for line in (store / "log" / "commits.jsonl").read_text().splitlines()]


def test_run_then_rerun_recomputes_nothing(tmp_path):
    suite, store = suite_file(tmp_path, 16), tmp_path / "store"
    first = run_cli("run", str(suite), "--store", str(store))
    assert first.returncode == 0, first.stderr
    found = results(store)
    assert set(found) == {"fine", "coarse"}
    fine, coarse = found["fine"]["metrics"], found["coarse"]["metrics"]
    assert fine["psnr"] > coarse["psnr"] and fine["ssim"] > coarse["ssim"]
    assert 0 < fine["rfid"] < coarse["rfid"]
    assert fine["lpips"] is None and "TOKBENCH_LPIPS_VGG" in found["fine"]["unavailable"]["lpips"]
    assert "### reconstruction" in first.stdout and "| bicubic f2" in first.stdout and "n/a lpips:" in first.stdout
    leaderboard = store / "leaderboards" / "mini"
    assert f"leaderboard: {leaderboard / 'index.html'}" in first.stdout
    assert {p.name for p in leaderboard.iterdir()} >= {"index.html", "leaderboard.md", "leaderboard.tex", "results.csv", "results.json", "plots"}
    assert (leaderboard / "plots" / "reconstruction_grid.png").is_file()  # from the stored previews
    board = json.loads((leaderboard / "results.json").read_text())
    measured = [c for t in board["tables"] for row in t["rows"] for c in row["cells"] if c["value"] is not None]
    assert measured and all(c["ci_low"] <= c["value"] <= c["ci_high"] and c["ci_method"] for c in measured)
    assert all(isinstance(c["tied_with_best"], bool) for c in measured)
    assert "±" in first.stdout and "Holm" in first.stdout
    # each unit's line carries its headline numbers as it finishes, with the leaderboard's own intervals
    done = next(line for line in first.stdout.splitlines() if line.lstrip().startswith("done    reconstruction/fine/"))
    row = next(line for line in first.stdout.splitlines() if line.startswith("| bicubic f2"))
    shown = {part.split(" ", 2)[0]: part.rsplit("↓ ", 1)[-1].rsplit("↑ ", 1)[-1].split("  (")[0].strip()
             for part in done.split(": ", 1)[1].split(" · ")}
    assert set(shown) == {"rFID", "PSNR", "SSIM"} and "(± 95% interval)" in done, done
    for text in shown.values():
        assert "±" in text and text in row, (text, row)
    provenance = found["fine"]["provenance"]
    assert provenance["software"]["torch"] and provenance["software"]["torch-fidelity"] == "0.4.0"
    assert found["fine"]["evaluator"]["fid"]["weights_sha256"].startswith("7ff4a85c")
    assert found["fine"]["dataset"]["fingerprint"] and found["fine"]["tokenizer"]["fingerprint"]

    before = commits(store)
    mtimes = {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file() and not {"runs", "locks", "leaderboards"} & set(p.parts)}
    second = run_cli("run", str(suite), "--store", str(store))
    assert second.returncode == 0, second.stderr
    assert "2 unit(s), 2 already in the store" in second.stdout
    assert commits(store) == before, "a rerun must not recompute any artifact"
    after = {p: p.stat().st_mtime_ns for p in mtimes}
    assert after == mtimes

    exported = run_cli("export", "--store", str(store), "--format", "csv")
    assert exported.returncode == 0 and exported.stdout.count("\n") == 1 + 2 * 6  # header + 2 tokenizers x (4 metrics + encode/decode GFLOPs)
    latex = run_cli("export", "--store", str(store), "--format", "latex")
    assert latex.returncode == 0 and "\\toprule" in latex.stdout and "bicubic f2" in latex.stdout
    assert run_cli("store", "verify", "--store", str(store)).returncode == 0


def test_local_backend_gives_the_same_numbers(tmp_path):
    suite = suite_file(tmp_path, 16)
    debug = run_cli("run", str(suite), "--store", str(tmp_path / "a"), "-o", "tasks.0.params.metrics=[psnr, ssim]")
    local = run_cli("run", str(suite), "--store", str(tmp_path / "b"), "--backend", "local",
                    "-o", "launcher.max_workers=2", "-o", "tasks.0.params.metrics=[psnr, ssim]",
                    env={"TOKBENCH_NO_PROGRESS": "0"})
    assert debug.returncode == 0 and local.returncode == 0, local.stderr
    a, b = results(tmp_path / "a"), results(tmp_path / "b")
    for name in ("fine", "coarse"):
        assert a[name]["metrics"] == pytest.approx(b[name]["metrics"], rel=1e-6)
        assert "TOKBENCH_LOCAL_JOB_ID" in b[name]["provenance"]["jobs"]
        # each of the 2 workers gets half the cores; the thread count splits CPU sums, so it is recorded
        assert b[name]["provenance"]["device"]["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)
    status = run_cli("status", "--store", str(tmp_path / "b"))
    assert status.returncode == 0 and "2 done" in status.stdout
    # which unit the run is on, and each unit's wall time by phase in its record and in status
    assert "[1/2] reconstruction/" in debug.stderr and "[2/2] reconstruction/" in debug.stderr
    # what the workers print reaches the terminal, tagged with their unit; submitit's own lines do not
    lines = local.stderr.splitlines()
    for name in ("fine", "coarse"):
        assert any(line.startswith(f"  reconstruction/{name}/shapes > encoding") for line in lines), local.stderr
    assert not any("submitit" in line for line in lines), local.stderr
    for name in ("fine", "coarse"):
        timings = b[name]["timings"]
        assert timings["phases"]["encoding"] > 0 and sum(timings["phases"].values()) <= timings["total"]
    assert "time by phase, slowest units first:" in status.stdout and "| reconstruction/fine/shapes | " in status.stdout
    # a rerun with everything in the store imports no torch and reuses the leaderboard it wrote
    rerun = run_cli("run", str(suite), "--store", str(tmp_path / "a"), "-o", "tasks.0.params.metrics=[psnr, ssim]",
                    env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert rerun.returncode == 0, rerun.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in rerun.stderr.splitlines() if line.startswith("import time:")}
    assert "click" in imported and "torch" not in imported
    assert "unchanged since the last run" in rerun.stdout
    assert rerun.stdout.split("finished in")[1].split("\n", 1)[1] == debug.stdout.split("finished in")[1].split("\n", 1)[1].replace(
        "plots)", "plots; unchanged since the last run)")


def test_sigkill_mid_run_then_resume(tmp_path):
    suite, store = suite_file(tmp_path, 32), tmp_path / "store"
    process = subprocess.Popen(
        [sys.executable, "-m", "tokbench.cli.main", "run", str(suite), "--store", str(store)],
        cwd=REPO, env={**os.environ, "TOKBENCH_NO_PROGRESS": "1"}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        shards = list((store / "partial").glob("*/shard-*/MANIFEST.json")) if (store / "partial").exists() else []
        if len(shards) >= 3:
            break
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(shards) >= 3, "the run ended before it could be interrupted"
    assert not (store / "results").exists() or len(results(store)) < 2

    resumed = run_cli("run", str(suite), "--store", str(store))
    assert resumed.returncode == 0, resumed.stderr
    assert set(results(store)) == {"fine", "coarse"}
    keys = [c["key"] for c in commits(store)]
    assert len(keys) == len(set(keys)), "an artifact was committed twice"
    verify = run_cli("store", "verify", "--store", str(store))
    assert verify.returncode == 0, verify.stdout
    assert run_cli("store", "gc", "--store", str(store)).returncode == 0
    assert not any((store / "tmp").iterdir())

    clean = run_cli("run", str(suite), "--store", str(tmp_path / "clean"))
    assert clean.returncode == 0
    for name, record in results(tmp_path / "clean").items():
        resumed_metrics = results(store)[name]["metrics"]
        assert resumed_metrics.keys() == record["metrics"].keys()
        for metric, value in record["metrics"].items():
            assert resumed_metrics[metric] == (None if value is None else pytest.approx(value, rel=1e-9)), metric
