"""Decoder training: noise augmentation, the losses learning, LPIPS never skipped, SSL-only encoder
pretraining through the VTP trainer, and the tiny preset trained once into the store."""

from __future__ import annotations

import pytest
import torch

from tokbench.errors import MissingAssetError
from tokbench.training.loop import Checkpoints, TrainingStopped
from tokbench_rae.params import DecoderTrainParams, RAEParams
from tokbench_rae.train import noise_augment, train_decoder
from rae_test_helpers import small_encoder


def test_noise_augmentation_statistics():
    tokens = torch.zeros(4000, 16, 8)
    generator = torch.Generator().manual_seed(0)
    noisy = noise_augment(tokens, 0.8, generator)
    sigma = noisy.flatten(1).std(dim=1)  # one σ per sample, shared by all its elements
    assert float(sigma.min()) >= 0 and float(sigma.max()) <= 0.8 * 1.25
    assert float(sigma.mean()) == pytest.approx(0.4, abs=0.02)  # σ ~ U(0, τ): mean τ/2
    assert float(sigma.std()) == pytest.approx(0.8 / 12**0.5, abs=0.02)  # ... and std τ/√12
    assert abs(float(noisy.mean())) < 0.01
    assert torch.equal(noise_augment(tokens + 1, 0.0), tokens + 1)  # τ = 0: unchanged (inference)
    again = noise_augment(tokens, 0.8, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


def shapes(count: int, resolution: int = 32, split: str = "train", seed: int = 0) -> torch.Tensor:
    from tokbench.data.loader import load_images
    from tokbench.data.shapes import ShapesDataset

    return load_images(ShapesDataset(split=split, num_images=count, resolution=resolution, seed=seed), range(count))


def quick(**overrides) -> DecoderTrainParams:
    settings = dict(steps=30, batch_size=8, lr=2e-3, warmup_steps=3, resolution=32, patch_size=8, num_images=32,
                    holdout_images=8, stats_images=32, gan_start=1000, disc_start=1000, noise_tau=0.0)
    return DecoderTrainParams(**{**settings, **overrides})


def test_a_few_steps_lower_the_loss():
    encoder = small_encoder()  # patch 4: 32 px images are seen at 16 px (the 256 -> 224 resize at small scale)
    decoder, stats, summary = train_decoder(encoder, quick(), shapes(32), shapes(8, split="val", seed=1))
    assert summary["final_train_l1"] < 0.6 * summary["first_l1"]
    assert decoder.config.grid == 4 and decoder.config.latent_dim == 32
    assert stats["mean"].shape == stats["var"].shape == (32, 4, 4)
    assert summary["holdout_psnr"] > 10
    assert not any(p.requires_grad for p in encoder.parameters())


def test_gan_and_noise_terms_run_and_are_recorded():
    encoder = small_encoder()
    train = quick(steps=6, noise_tau=0.8, gan_start=2, disc_start=1, gan_weight=0.75)
    decoder, _, summary = train_decoder(encoder, train, shapes(32))
    assert summary["steps"] == 6 and torch.isfinite(decoder.decoder_pred.weight).all()


def test_stopped_and_resumed_training_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    # GAN, discriminator and noise all on, 32 images in batches of 8: the stop (after step 5) falls
    # inside the second epoch; the EMA decoder, both optimizers and the generator carry over
    train = quick(steps=8, noise_tau=0.8, gan_start=2, disc_start=1, gan_weight=0.75)
    whole, whole_stats, whole_summary = train_decoder(small_encoder(), train, shapes(32))
    with pytest.raises(TrainingStopped):
        train_decoder(small_encoder(), train, shapes(32), checkpoints=Checkpoints(tmp_path, stop_after=5))
    resumed, stats, summary = train_decoder(small_encoder(), train, shapes(32), checkpoints=Checkpoints(tmp_path))
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(stats["mean"], whole_stats["mean"])
    assert summary["final_train_l1"] == whole_summary["final_train_l1"]


def test_lpips_without_vgg_weights_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TOKBENCH_LPIPS_VGG", str(tmp_path / "missing-vgg16.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(MissingAssetError, match=r"lpips_weight > 0 needs the VGG16 weights.*lpips_weight: 0"):
        train_decoder(small_encoder(), quick(lpips_weight=1.0), shapes(32))


def test_encoder_pretraining_is_ssl_only():
    """The tiny encoder goes through the VTP trainer with only the DINO/iBOT/KoLeo terms."""
    from tokbench_vtp.pretrain.trainer import VTPPretrainer

    recipe = RAEParams(preset="tiny", encoder_recipe_overrides={
        "steps": 2, "batch": {"clip": 8, "ssl": 8}, "data": {"num_images": 64}, "head": {"prototypes": 64},
        "checkpoint_every": 0,
    }).encoder_recipe()
    import tempfile

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = VTPPretrainer(recipe, run_dir, log=lambda message: None)
        assert trainer.model.pixel_decoder is None and not trainer.model.arch.with_text
        before = {k: v.clone() for k, v in trainer.model.trunk.state_dict().items()}
        records = [trainer.train_step() for _ in range(2)]  # the first step is at warm-up lr 0
    record = records[-1]
    assert {"dino", "ibot", "ssl", "total"} <= set(record)
    assert not {"clip", "rec"} & set(record)
    assert record["total"] == pytest.approx(record["ssl"])
    changed = [k for k, v in trainer.model.trunk.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("blocks.") for k in changed)


def test_preset_is_trained_once_into_the_store(tmp_path):
    from tokbench.runtime.context import BuildContext
    from tokbench.storage.store import Store
    from tokbench_rae.tokenizer import build_rae

    store = Store(tmp_path / "store")
    context = BuildContext(store=store, device="cpu", progress=False)
    params = {
        "preset": "tiny",
        "encoder_recipe_overrides": {"steps": 2, "batch": {"clip": 8, "ssl": 8}, "data": {"num_images": 64},
                                     "head": {"prototypes": 64}, "checkpoint_every": 0},
        "train": {"steps": 3, "batch_size": 4, "num_images": 16, "holdout_images": 4, "stats_images": 16,
                  "warmup_steps": 1, "gan_start": 1, "disc_start": 0},
    }
    first = build_rae(params, context)
    second = build_rae(params, context)
    assert first.fingerprint() == second.fingerprint()
    kinds = sorted(a["kind"] for a in store.artifacts())
    assert kinds == ["tokenizer-checkpoint", "vtp-pretrained"]
    checkpoint = next(a for a in store.artifacts() if a["kind"] == "tokenizer-checkpoint")
    assert "holdout_psnr" in checkpoint["meta"]["training"]
    assert first.training_flops > 0 and first.native_resolution == 64
    mean, std = first.latent_normalization()
    assert mean.shape == std.shape == (1, 128, 8, 8)
    images = shapes(2, resolution=64)
    with torch.no_grad():
        assert first.decode(first.encode(images.float() / 255)).shape == (2, 3, 64, 64)
