"""Results follow the code: a plugin installed outside the checkout is edited (same version),
the next run recomputes its units and says why, the export shows the new value and averages
nothing, an untouched rerun recomputes nothing, and ``--recompute`` replaces a stored result
while keeping the old one reachable."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from test_plugin_scaffold import install, results_by_tokenizer

pytestmark = pytest.mark.slow

SUITE = textwrap.dedent("""
    name: edit-loop
    datasets:
      shapes: {kind: shapes, params: {split: val, num_images: 16, resolution: 32}}
    tokenizers:
      jpeg: {plugin: jpeg, params: {factor: 4, quality: 75}}
      bicubic: {plugin: resample, params: {factor: 4}}
    tasks:
      - {kind: reconstruction, dataset: shapes, params: {batch_size: 16, metrics: [psnr]}}
""")


def _jpeg_rows(exported: str) -> list[dict]:
    table = json.loads(exported)["tables"][0]
    psnr = next(i for i, c in enumerate(table["columns"]) if c["metric"] == "psnr")
    return [{"tokenizer": row["tokenizer"], **row["cells"][psnr]} for row in table["rows"] if "jpeg" in row["tokenizer"]]


def test_an_edited_plugin_is_recomputed_and_never_averaged_with_its_old_results(tmp_path):
    package = tmp_path / "tokbench-jpeg"
    shutil.copytree(REPO / "examples" / "tokbench-jpeg", package, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp_path / "site"
    env = install(package, site)
    suite, store = tmp_path / "suite.yaml", tmp_path / "store"
    suite.write_text(SUITE)

    first = run_cli("run", str(suite), "--store", str(store), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    before = results_by_tokenizer(store)["jpeg"]
    assert before["provenance"]["code"]["tokenizer"]["plugin"] == "jpeg"
    assert before["provenance"]["code"]["tokenizer"]["version"] == "0.1.0"

    # the author "fixes" decode in the installed copy: the output changes, the version does not
    source = site / "tokbench_jpeg" / "tokenizer.py"
    text = source.read_text()
    assert "return images.clamp(0, 1)" in text
    source.write_text(text.replace("return images.clamp(0, 1)", "return (images * 0.5).clamp(0, 1)"))

    planned = run_cli("run", str(suite), "--store", str(store), "--dry-run", env=env)
    assert planned.returncode == 0, planned.stderr
    assert "1 already in the store" in planned.stdout and "1 stale (code changed)" in planned.stdout
    stale = next(line for line in planned.stdout.splitlines() if "reconstruction/jpeg/" in line)
    assert stale.lstrip().startswith("[stale]") and "code of plugin jpeg changed since the stored result" in stale
    assert "[cached] reconstruction/bicubic/" in planned.stdout

    second = run_cli("run", str(suite), "--store", str(store), env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "stale   reconstruction/jpeg/shapes: code of plugin jpeg changed" in second.stdout
    assert "done    reconstruction/jpeg/shapes" in second.stdout
    assert "cached  reconstruction/bicubic/shapes" in second.stdout
    after = [r for r in (json.loads(p.read_text()) for p in (store / "results").glob("*.json"))
             if r["tokenizer"]["name"] == "jpeg" and r["key"] != before["key"]]
    assert len(after) == 1 and after[0]["lineage"] == before["lineage"]
    new_psnr, old_psnr = after[0]["metrics"]["psnr"], before["metrics"]["psnr"]
    assert new_psnr < old_psnr - 3  # halving the image costs far more than JPEG at q75

    exported = run_cli("export", "--store", str(store), "--format", "json", env=env)
    assert exported.returncode == 0, exported.stderr
    rows = _jpeg_rows(exported.stdout)
    assert len(rows) == 1 and rows[0]["count"] == 1  # the current code's result alone, nothing averaged
    assert rows[0]["value"] == pytest.approx(new_psnr)
    assert "1 result(s) of earlier plugin code or versions left out" in exported.stderr

    both = run_cli("export", "--store", str(store), "--format", "json", "--all-versions", env=env)
    rows = {row["tokenizer"]: row for row in _jpeg_rows(both.stdout)}
    assert len(rows) == 2 and all(row["count"] == 1 for row in rows.values())
    earlier = next(name for name in rows if "earlier" in name or "@" in name)
    assert before["provenance"]["code"]["tokenizer"]["digest"][:12] in earlier
    assert rows[earlier]["value"] == pytest.approx(old_psnr)

    untouched = run_cli("run", str(suite), "--store", str(store), env=env)
    assert untouched.returncode == 0, untouched.stderr
    assert "2 already in the store" in untouched.stdout and "stale" not in untouched.stdout
    assert "done " not in untouched.stdout  # recomputed nothing

    again = run_cli("run", str(suite), "--store", str(store), "--recompute", "jpeg", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 to recompute" in again.stdout and "replacing reconstruction/jpeg/shapes" in again.stdout
    assert "done    reconstruction/jpeg/shapes" in again.stdout and "cached  reconstruction/bicubic/shapes" in again.stdout
    replaced = list((store / "replaced").glob(f"{after[0]['key']}-*.json"))
    assert len(replaced) == 1 and json.loads(replaced[0].read_text())["metrics"]["psnr"] == pytest.approx(new_psnr)
    every = _jpeg_rows(run_cli("export", "--store", str(store), "--format", "json", "--all-versions", env=env).stdout)
    assert len(every) == 3 and all(row["count"] == 1 for row in every)  # current, earlier code, replaced: 3 rows
    assert sum("replaced: " in row["tokenizer"] for row in every) == 1

    unknown = run_cli("run", str(suite), "--store", str(store), "--recompute", "jpge", env=env)
    assert unknown.returncode == 2 and "did you mean 'jpeg'?" in unknown.stderr
