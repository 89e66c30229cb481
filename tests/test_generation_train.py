"""DiT training on cached latents: deterministic batches, learning on a toy set, exact resume,
the official checkpoint layout on export, latent statistics."""

from __future__ import annotations

import pytest
import torch

from tokbench.generation.checkpoint import load_lightningdit
from tokbench.generation.model import LightningDiT, dit_config
from tokbench.generation.train import DiTTrainer, LatentSet, TrainSettings, latent_statistics
from tokbench.generation.transport import NoiseSchedule


def toy_latents(n=48, channels=4, side=4, seed=0):
    """Two classes with different per-channel means: learnable in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    latents = torch.randn(n, channels, side, side, generator=generator) * 0.3 + (labels.float() * 2 - 1).view(-1, 1, 1, 1)
    return LatentSet(latents, latents.flip(-1), labels)


def trainer(tmp_path=None, steps=12, seed=0, **settings):
    torch.manual_seed(0)
    model = LightningDiT(dit_config("micro/1", 4, input_size=4, num_classes=2))
    options = dict(steps=steps, batch_size=16, lr=1e-3, ema_decay=0.9, seed=seed) | settings
    return DiTTrainer(model, toy_latents(), TrainSettings(**options), NoiseSchedule(train_shift=0.3), work_dir=tmp_path)


def test_batches_are_a_pure_function_of_the_step():
    a, b = trainer(), trainer()
    for step in (0, 5, 7):
        xa, ya = a.batch(step)
        xb, yb = b.batch(step)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x0, _ = a.batch(0)
    x1, _ = a.batch(1)
    assert not torch.equal(x0, x1)
    # an epoch visits every sample once (48 samples, batches of 16)
    seen = torch.cat([a.batch(s)[1] for s in range(3)])
    assert sorted(seen.tolist()) == sorted(toy_latents().labels.tolist())


def test_loss_falls_and_ema_trails():
    run = trainer(steps=150, lr=3e-3)
    history = run.fit(log_every=10)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert set(history[0]) >= {"step", "loss", "mse", "cos", "seconds"}
    model_weight = run.model.final_layer.linear.weight
    assert not torch.equal(run.ema.final_layer.linear.weight, model_weight)


def test_resume_is_exact(tmp_path):
    straight = trainer(steps=10)
    straight.fit()
    first = trainer(tmp_path / "run", steps=10)
    first.fit(stop_after=4)
    assert first.step == 4 and (tmp_path / "run" / "checkpoint.pt").is_file()
    resumed = trainer(tmp_path / "run", steps=10)  # a new process would do exactly this
    assert resumed.step == 4
    resumed.fit()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="belongs to another run"):
        trainer(tmp_path / "run", steps=10, seed=1)


def test_export_loads_as_an_official_checkpoint(tmp_path):
    run = trainer(steps=3)
    run.fit()
    loaded = load_lightningdit(run.export_official(tmp_path / "0000003.pt"))
    x, t, y = torch.randn(2, 4, 4, 4), torch.rand(2), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, y), run.ema(x, t, y), rtol=0, atol=0)  # the EMA, as for sampling


def test_latent_statistics_match_torch():
    latents = torch.randn(20, 3, 4, 4) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + 5
    mean, std = latent_statistics(latents)
    assert mean.shape == std.shape == (1, 3, 1, 1)
    torch.testing.assert_close(mean, latents.mean(dim=(0, 2, 3), keepdim=True))
    torch.testing.assert_close(std, latents.std(dim=(0, 2, 3), keepdim=True, unbiased=True))


def test_batch_larger_than_the_data_is_an_error_not_a_silent_shrink():
    with pytest.raises(ValueError, match="batch_size 64 is larger than the 48 training latents"):
        trainer(batch_size=64)


def test_activation_checkpointing_changes_no_weight():
    """Why it stays out of the result key: recomputing each block's forward in the backward pass
    gives bit-identical weights (CPU, fp32), so it is an execution setting only."""
    plain, checkpointed = trainer(steps=4), trainer(steps=4, activation_checkpointing=True)
    plain.fit(log_every=1)
    checkpointed.fit(log_every=1)
    assert checkpointed.model.gradient_checkpointing and not plain.model.gradient_checkpointing
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value, checkpointed.model.state_dict()[name]), name
