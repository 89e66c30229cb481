"""A prepare unit killed halfway through training the tiny preset resumes from the checkpoint the
store producer left in ``partial/`` and commits the weights of an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokbench.hashing import sha256_file
from tokbench.runtime.context import BuildContext
from tokbench.storage.store import Store
from tokbench.training.loop import CHECKPOINT, TrainingLoop
from tokbench_vae.tokenizer import build_vae
from vae_test_helpers import one_torch_thread, quick_train_params  # noqa: F401 - autouse fixture

WEIGHTS = "diffusion_pytorch_model.safetensors"
TRAIN_STEP = TrainingLoop.train_step


class Killed(Exception):
    """Stands in for the job being killed in the middle of a step."""


def count_steps(monkeypatch, kill_at: int | None = None) -> list[int]:
    """Record every step the loop trains; raise :class:`Killed` at ``kill_at``."""
    trained: list[int] = []

    def train_step(self, step):
        if step == kill_at:
            raise Killed(f"killed at step {step}")
        trained.append(step)
        return TRAIN_STEP(self, step)

    monkeypatch.setattr(TrainingLoop, "train_step", train_step)
    return trained


def committed(store_root) -> tuple[Path, dict]:
    """(directory, manifest) of the store's one artifact."""
    [manifest_path] = (store_root / "objects").rglob("MANIFEST.json")
    return manifest_path.parent, json.loads(manifest_path.read_text())


def test_a_killed_preset_training_resumes_in_the_store_to_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    # 9 steps on 16 shapes images, a checkpoint every 2 steps, killed in step 5: the rerun resumes at 4
    params = {"preset": "tiny", "train": quick_train_params(steps=9, full_resolution_steps=3, num_images=16,
                                                            holdout_images=4).model_dump()}
    killed = count_steps(monkeypatch, kill_at=5)
    with pytest.raises(Killed):
        build_vae(params, BuildContext(store=Store(tmp_path / "a"), device="cpu", progress=False, checkpoint_every=2))
    assert killed == [0, 1, 2, 3, 4]
    assert not list((tmp_path / "a" / "objects").rglob("MANIFEST.json"))
    [work] = list((tmp_path / "a" / "partial").iterdir())
    assert (work / CHECKPOINT).is_file()
    verified = Store(tmp_path / "a").verify()  # the checkpoint is sealed: `store verify` checks it
    assert verified.ok and verified.checked == 1

    # the next `tokbench run` (a new Store, as in a new process) trains only the steps left
    resumed = count_steps(monkeypatch)
    build_vae(params, BuildContext(store=Store(tmp_path / "a"), device="cpu", progress=False, checkpoint_every=2))
    assert resumed == [4, 5, 6, 7, 8]
    assert "resuming vae tiny training from step 4 of 9" in capsys.readouterr().err
    assert not (tmp_path / "a" / "partial" / work.name).exists()  # removed once the artifact committed
    artifact, manifest = committed(tmp_path / "a")
    assert artifact.name == work.name and CHECKPOINT not in manifest["files"]

    # an uninterrupted run in a second store, with the default interval: same key, same weights
    straight = count_steps(monkeypatch)
    build_vae(params, BuildContext(store=Store(tmp_path / "b"), device="cpu", progress=False))
    assert straight == list(range(9)) and "resuming" not in capsys.readouterr().err
    other, other_manifest = committed(tmp_path / "b")
    assert other.name == artifact.name  # the checkpoint interval is in no key
    assert not list((tmp_path / "b" / "partial").iterdir())
    weights = sha256_file(artifact / WEIGHTS)
    assert weights == sha256_file(other / WEIGHTS)
    assert manifest["files"][WEIGHTS]["sha256"] == other_manifest["files"][WEIGHTS]["sha256"] == weights
