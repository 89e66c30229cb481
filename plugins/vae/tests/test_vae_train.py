"""The tiny preset's training loop and its store caching."""

from __future__ import annotations

import json

import pytest
import torch

from tokbench.errors import MissingAssetError
from tokbench.training.loop import CHECKPOINT, Checkpoints, TrainingStopped
from tokbench_vae.params import VAEParams
from tokbench_vae.tokenizer import VAETokenizer, build_vae
from tokbench_vae.train import images_tensor, train_tiny
from vae_test_helpers import ArrayImages, one_torch_thread, quick_train_params  # noqa: F401 - autouse fixture


def test_short_training_decreases_the_loss_deterministically():
    params = quick_train_params()
    images, holdout = ArrayImages(64, 32, seed=0), ArrayImages(8, 32, seed=1)
    model, summary = train_tiny(params, images, holdout)
    assert summary["final_loss"] < 0.8 * summary["first_loss"]
    assert summary["steps"] == 30 and summary["holdout_images"] == 8 and summary["train_seconds"] > 0
    assert summary["holdout_psnr"] > 10
    again, _ = train_tiny(params, images_tensor(images), images_tensor(holdout))
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    # latent statistics land in the config (for generation), not in encode/decode
    assert model.config.scaling_factor == pytest.approx(1 / summary["latent_std"])
    assert model.config.shift_factor == pytest.approx(summary["latent_mean"])


def test_stopped_and_resumed_training_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    # 16 images in batches of 8: the stop (after step 5) falls inside an epoch and before the last
    # full-resolution steps; the posterior noise generator lives on between the two calls
    params = quick_train_params(steps=9, full_resolution_steps=3)
    images = ArrayImages(16, 32)
    whole, whole_summary = train_tiny(params, images)
    with pytest.raises(TrainingStopped, match="after step 5"):
        train_tiny(params, images, checkpoints=Checkpoints(tmp_path, stop_after=5))
    assert (tmp_path / CHECKPOINT).is_file()
    resumed, summary = train_tiny(params, images, checkpoints=Checkpoints(tmp_path))
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert summary["first_loss"] == whole_summary["first_loss"] and summary["final_kl"] == whole_summary["final_kl"]
    with pytest.raises(ValueError, match="other settings"):
        train_tiny(quick_train_params(steps=9, full_resolution_steps=3, lr=1e-3), images, checkpoints=Checkpoints(tmp_path))


@pytest.fixture
def empty_torch_hub(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKBENCH_LPIPS_VGG", raising=False)
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "empty-hub"))
    yield
    torch.hub.set_dir(previous)


def test_lpips_without_vgg_weights_fails_clearly(empty_torch_hub):
    with pytest.raises(MissingAssetError, match="VGG16 weights.*lpips_weight: 0"):
        train_tiny(quick_train_params(lpips_weight=0.1), ArrayImages(8, 32))


def test_lpips_with_a_vgg_file_trains(empty_torch_hub, tmp_path, monkeypatch):
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        features = torchvision.models.vgg16(weights=None).features.state_dict()
    torch.save({f"features.{key}": value for key, value in features.items()}, tmp_path / "vgg16.pth")
    monkeypatch.setenv("TOKBENCH_LPIPS_VGG", str(tmp_path / "vgg16.pth"))
    _, summary = train_tiny(quick_train_params(lpips_weight=0.1, steps=2), ArrayImages(8, 32))
    assert summary["steps"] == 2 and summary["final_loss"] == summary["final_loss"]  # finite, ran
    (tmp_path / "bad.pth").write_bytes(b"not a state dict")
    monkeypatch.setenv("TOKBENCH_LPIPS_VGG", str(tmp_path / "bad.pth"))
    with pytest.raises(MissingAssetError, match="cannot read .* as a torch state dict"):
        train_tiny(quick_train_params(lpips_weight=0.1, steps=2), ArrayImages(8, 32))


def test_preset_without_context_trains_into_a_directory(tmp_path):
    params = VAEParams(preset="tiny", train=quick_train_params(steps=4, crop_size=None, full_resolution_steps=0))
    tokenizer = build_vae(params, directory=tmp_path / "tiny")
    assert isinstance(tokenizer, VAETokenizer)
    assert {"config.json", "diffusion_pytorch_model.safetensors", "training.json"} <= {p.name for p in (tmp_path / "tiny").iterdir()}
    summary = json.loads((tmp_path / "tiny" / "training.json").read_text())
    assert summary["preset"] == "tiny" and summary["steps"] == 4
    reloaded = build_vae(params, directory=tmp_path / "tiny")  # reused, not retrained
    assert reloaded.fingerprint() == tokenizer.fingerprint()
    assert tokenizer.native_resolution == 32 and tokenizer.latent_spec(32).shape == (4, 8, 8)
    assert tokenizer.scaling_factor == pytest.approx(1 / summary["latent_std"])
    other = VAEParams(preset="tiny", train=quick_train_params(steps=5, crop_size=None, full_resolution_steps=0))
    with pytest.raises(ValueError, match="trained with other settings"):
        build_vae(other, directory=tmp_path / "tiny")


def test_preset_in_store_is_trained_once_with_metadata(tmp_path, monkeypatch):
    from tokbench.runtime.context import BuildContext
    from tokbench.storage.store import Store
    from tokbench_vae import tokenizer as tokenizer_module

    calls = []
    original = tokenizer_module.train_preset
    monkeypatch.setattr(tokenizer_module, "train_preset", lambda *a, **k: calls.append(1) or original(*a, **k))
    context = BuildContext(store=Store(tmp_path / "store"), device="cpu", progress=False)
    params = {"preset": "tiny", "train": quick_train_params(steps=3, holdout_images=4).model_dump()}
    first = build_vae(params, context)
    second = build_vae(params, context)
    assert len(calls) == 1
    assert first.fingerprint() == second.fingerprint()
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "store" / "objects").rglob("MANIFEST.json")]
    assert len(manifests) == 1 and manifests[0]["kind"] == "tokenizer-checkpoint"
    training = manifests[0]["meta"]["training"]
    assert training["steps"] == 3 and "holdout_psnr" in training and "wall_seconds" in training
    assert "diffusion_pytorch_model.safetensors" in manifests[0]["files"]
    # compile is an execution detail: same cache entry
    params["train"]["compile"] = True
    build_vae(params, context)
    assert len(calls) == 1
