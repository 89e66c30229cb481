"""A suite naming a VTP tokenizer by its pretraining recipe: trained once through the store, evaluated,
and a rerun trains nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from test_pretrain_trainer import micro_recipe

REPO = Path(__file__).resolve().parents[3]

SUITE = """
name: vtp-mini
datasets:
  shapes: {{kind: shapes, params: {{num_images: 8, resolution: 32}}}}
tokenizers:
  vtp-micro: {{plugin: vtp, label: VTP micro, params: {{recipe: {recipe}}}}}
tasks:
  - kind: reconstruction
    dataset: shapes
    params: {{batch_size: 8, metrics: [psnr, ssim]}}
"""


def tokbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKBENCH_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tokbench.cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_recipe_tokenizer_trains_once_and_is_evaluated(tmp_path):
    recipe = micro_recipe(steps=3, stage2={"steps": 0}).model_dump(mode="json")
    recipe_path = tmp_path / "micro.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    suite = tmp_path / "suite.yaml"
    suite.write_text(textwrap.dedent(SUITE.format(recipe=recipe_path)))
    store = tmp_path / "store"
    first = tokbench("run", str(suite), "--store", str(store), cwd=REPO)
    assert first.returncode == 0, first.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (store / "results").glob("*.json")]
    result = next(r for r in records if r["type"] == "result")
    assert result["tokenizer"]["name"] == "vtp-micro" and result["metrics"]["psnr"] > 0
    trained = [json.loads(line) for line in (store / "log" / "commits.jsonl").read_text().splitlines()
               if json.loads(line)["kind"] == "vtp-pretrained"]
    assert len(trained) == 1
    artifact = next((store / "objects").glob(f"*/{trained[0]['key']}"))
    assert (artifact / "model.safetensors").is_file() and (artifact / "training.json").is_file()
    second = tokbench("run", str(suite), "--store", str(store), cwd=REPO)
    assert second.returncode == 0, second.stderr[-3000:]
    again = [json.loads(line) for line in (store / "log" / "commits.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "vtp-pretrained"]
    assert len(again) == 1  # nothing retrained


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_trains_and_exports(tmp_path):
    """The multi-GPU entry point, on CPU with gloo: `tokbench vtp pretrain --nproc-per-node 2`."""
    recipe = micro_recipe(steps=2, stage2={"steps": 1, "batch": 4, "perceptual": 0.0}).model_dump(mode="json")
    recipe_path = tmp_path / "micro.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    run_dir = tmp_path / "run"
    done = tokbench("vtp", "pretrain", str(recipe_path), "--run-dir", str(run_dir), "--nproc-per-node", "2",
                    "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = json.loads((run_dir / "training.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    from tokbench_vtp.checkpoint import load_official

    assert load_official(run_dir).arch.vision_width == recipe["architecture"]["vision_width"]
