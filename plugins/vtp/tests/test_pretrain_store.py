"""Pretraining as a store producer: it trains in the artifact's ``partial/`` work directory, at the
run's checkpoint interval, which is in no key."""

from __future__ import annotations

from tokbench.runtime.context import BuildContext
from tokbench.storage.store import Store
from tokbench_vtp.pretrain import run
from test_pretrain_trainer import micro_recipe


def test_the_runs_checkpoint_interval_reaches_the_pretrainer_and_no_key(tmp_path, monkeypatch):
    seen = []

    def pretrain(recipe, run_dir, device=None, evaluate=True, log=None):  # records what training would get
        seen.append((recipe.checkpoint_every, run_dir))
        return {"steps": recipe.total_steps, "wall_seconds": 0.0, "device": device}

    monkeypatch.setattr(run, "pretrain", pretrain)
    recipe = micro_recipe(checkpoint_every=50)
    every_7 = run.trained_checkpoint(recipe, BuildContext(store=Store(tmp_path / "a"), checkpoint_every=7))
    default = run.trained_checkpoint(recipe, BuildContext(store=Store(tmp_path / "b")))
    assert [every for every, _ in seen] == [7, 50]  # launcher.checkpoint_every, else the recipe's
    assert seen[0][1] == tmp_path / "a" / "partial" / every_7.name  # resumable under the artifact's key
    assert every_7.name == default.name  # one key whatever the interval
