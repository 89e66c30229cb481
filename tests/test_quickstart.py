"""The README's quickstart, exactly as a user runs it, then once more: the
second run must recompute nothing and finish in seconds. The first run starts with the test
session, beside the other tests (conftest.py, background_run.py); this test runs last."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import QUICKSTART_TIMEOUT_S, REPO, requires_fid_weights, run_cli

# its own limit: the background run's (QUICKSTART_TIMEOUT_S from the session's start), then the rerun
pytestmark = [requires_fid_weights, pytest.mark.slow, pytest.mark.timeout(QUICKSTART_TIMEOUT_S + 600)]


def test_quickstart_runs_and_reruns_for_free(quickstart_first_run):
    first, env = quickstart_first_run, quickstart_first_run.env
    store = Path(env["TOKBENCH_STORE"])
    assert first.returncode == 0, first.stdout + first.stderr

    records = [json.loads(p.read_text()) for p in (store / "results").glob("*.json")]
    by_task: dict[str, dict] = {}
    for record in (r for r in records if r["type"] == "result"):
        by_task.setdefault(record["task"]["name"], {})[record["tokenizer"]["name"]] = record
    assert {task: set(rows) for task, rows in by_task.items()} == {
        "reconstruction": {"vae-tiny", "vtp-tiny", "vqgan-tiny", "rae-tiny", "bicubic-f4"},
        "zero_shot": {"vtp-tiny"},  # the only tokenizer with a text tower
        "probe-latent": {"vae-tiny", "vtp-tiny", "vqgan-tiny", "rae-tiny", "bicubic-f4"},
        "probe-dinov2": {"vtp-tiny", "rae-tiny"},  # the ViT encoders (image features)
        "generation": {"vae-tiny", "vtp-tiny", "vqgan-tiny", "rae-tiny", "bicubic-f4"},
    }
    results = by_task["reconstruction"]
    vae, bicubic = results["vae-tiny"]["metrics"], results["bicubic-f4"]["metrics"]
    vtp, vqgan, rae = (results[name]["metrics"] for name in ("vtp-tiny", "vqgan-tiny", "rae-tiny"))
    for metrics in (vae, vtp, vqgan, rae, bicubic):
        assert metrics["rfid"] > 0 and 10 < metrics["psnr"] < 60 and 0 < metrics["ssim"] <= 1
        assert metrics["lpips"] is None
    # trained, not random: an untrained decoder stays far below this
    assert min(vae["psnr"], vtp["psnr"], vqgan["psnr"], rae["psnr"]) > 16
    assert "rFID ↓" in first.stdout and "VAE tiny (trained here, 600 steps)" in first.stdout
    leaderboard = store / "leaderboards" / "quickstart"
    assert f"leaderboard: {leaderboard / 'index.html'}" in first.stdout
    assert (leaderboard / "plots" / "reconstruction_grid.png").is_file()
    assert "Quickstart: reconstruction and understanding" in (leaderboard / "leaderboard.md").read_text()
    # understanding: every number above chance (the most frequent colour's share, ~1/12)
    understanding = [by_task["zero_shot"]["vtp-tiny"], *by_task["probe-latent"].values(), *by_task["probe-dinov2"].values()]
    for record in understanding:
        chance = max(record["details"]["chance_top1"], record["details"]["majority_top1"])
        assert record["metrics"]["top1"] > 2 * chance, (record["label"], record["metrics"], chance)
        assert record["metrics"]["top5"] >= record["metrics"]["top1"]
    # generation: the same training compute for every tokenizer's generator, real gFID
    generation = by_task["generation"]
    flops = [r["details"]["generator_training_flops"] for r in generation.values()]
    assert (max(flops) - min(flops)) / max(flops) < 0.01, flops
    assert {r["details"]["tokens"] for r in generation.values()} == {16}
    for record in generation.values():
        assert record["metrics"]["gfid"] > 0 and 0 <= record["metrics"]["precision"] <= 1
    assert (leaderboard / "plots" / "samples.png").is_file()
    # The tiny recipes' quality bars, on the tokenizers this run trained with the plugins' default
    # recipes (one training per test session, shared: the plugins' tests keep short, fast checks).
    # Measured at 600 steps, 1 thread: VAE 23.98 dB; VQGAN 23.67 dB, 91 % of 1024 codes, perplexity 496.
    trained = training_summaries(store, records)
    assert trained["vae tiny"]["holdout_psnr"] > 21.0, trained["vae tiny"]
    vq = trained["vqgan tiny"]
    assert vq["holdout_psnr"] > 21.0 and vq["codebook_usage"] > 0.75 and vq["code_perplexity"] > 350, vq
    summary = {task: {tok: round(r["metrics"].get("top1") or r["metrics"].get("psnr") or r["metrics"].get("gfid"), 3) for tok, r in rows.items()}
               for task, rows in by_task.items()}

    commits_before = (store / "log" / "commits.jsonl").read_text()
    started = time.time()
    second = run_cli("run", str(REPO / "suites" / "quickstart.yaml"), env=env)
    second_seconds = time.time() - started
    assert second.returncode == 0, second.stderr
    assert "22 unit(s), 22 already in the store" in second.stdout
    assert (store / "log" / "commits.jsonl").read_text() == commits_before
    print(f"quickstart: first run {first.seconds:.0f}s, rerun {second_seconds:.1f}s; {summary}")


def training_summaries(store, records: list[dict]) -> dict[str, dict]:
    """Each trained checkpoint's ``training.json`` (what its plugin's training loop measured), by label."""
    from tokbench.storage.store import Store

    objects = Store(store)
    built = [artifact for r in records if r["type"] == "prepared" for artifact in r["tokenizer"]["built_from"]]
    return {artifact["label"]: json.loads((objects.path(artifact["key"]) / "training.json").read_text())
            for artifact in built if (objects.path(artifact["key"]) / "training.json").is_file()}
