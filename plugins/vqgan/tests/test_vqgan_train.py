"""The tiny preset's training loop, its store caching and its export."""

from __future__ import annotations

import json

import pytest
import torch

from tokbench.errors import MissingAssetError
from tokbench.training.loop import Checkpoints, TrainingStopped
from tokbench_vqgan.params import VQGANParams
from tokbench_vqgan.tokenizer import VQGANTokenizer, build_vqgan
from tokbench_vqgan.train import images_tensor, train_tiny
from vqgan_test_helpers import one_torch_thread, quick_train_params  # noqa: F401 - autouse fixture


@pytest.fixture(scope="module")
def shapes32():
    from tokbench.data.shapes import ShapesDataset

    return (images_tensor(ShapesDataset(split="train", num_images=64, resolution=32)),
            images_tensor(ShapesDataset(split="val", num_images=8, resolution=32, seed=1)))


def test_short_training_learns_deterministically(shapes32):
    images, holdout = shapes32
    params = quick_train_params()
    model, arch, summary = train_tiny(params, images, holdout)
    _, _, baseline = train_tiny(quick_train_params(steps=1, lr=1e-9, warmup_steps=0), images, holdout)
    assert summary["holdout_psnr"] > baseline["holdout_psnr"] + 1.0, (summary, baseline)
    assert summary["final_loss"] < summary["first_loss"]
    assert 0 < summary["codebook_usage"] <= 1 and summary["code_perplexity"] >= 1
    assert arch.l2_norm and arch.codebook_size == 64 and summary["steps"] == 40
    again, _, _ = train_tiny(params, images, holdout)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_gan_and_legacy_beta_train(shapes32):
    images, _ = shapes32
    params = quick_train_params(steps=4, gan_weight=0.5, gan_start=2, legacy_beta=True, l2_norm=False, crop_size=None,
                                full_resolution_steps=0)
    model, arch, summary = train_tiny(params, images)
    assert arch.legacy_beta and not arch.l2_norm and model.quantize.legacy
    assert summary["steps"] == 4 and summary["final_loss"] == summary["final_loss"]  # finite


def test_stopped_and_resumed_training_gives_the_weights_of_an_uninterrupted_run(shapes32, tmp_path):
    # the stop falls inside a dead-code window (3 steps) and after the GAN starts: the restart
    # counts, the discriminator, its optimizer and the shared generator all carry over
    images = shapes32[0][:16]
    params = quick_train_params(steps=8, full_resolution_steps=2, gan_weight=0.5, gan_start=2, restart_window=3)
    whole, _, whole_summary = train_tiny(params, images)
    with pytest.raises(TrainingStopped):
        train_tiny(params, images, checkpoints=Checkpoints(tmp_path, every=2, stop_after=4))
    resumed, _, summary = train_tiny(params, images, checkpoints=Checkpoints(tmp_path, every=2))
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert summary["restarted_codes"] == whole_summary["restarted_codes"] > 0
    assert summary["first_loss"] == whole_summary["first_loss"]


@pytest.fixture
def empty_torch_hub(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKBENCH_LPIPS_VGG", raising=False)
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "empty-hub"))
    yield
    torch.hub.set_dir(previous)


def test_lpips_without_vgg_weights_fails_clearly(empty_torch_hub, shapes32):
    with pytest.raises(MissingAssetError, match="VGG16 weights.*lpips_weight: 0"):
        train_tiny(quick_train_params(lpips_weight=0.1), shapes32[0])


def test_preset_trains_into_a_directory_as_an_official_checkpoint(tmp_path):
    params = VQGANParams(preset="tiny", train=quick_train_params(steps=3, crop_size=None, full_resolution_steps=0))
    tokenizer = build_vqgan(params, directory=tmp_path / "tiny")
    assert isinstance(tokenizer, VQGANTokenizer)
    assert {"vq_tiny.pt", "training.json"} <= {p.name for p in (tmp_path / "tiny").iterdir()}
    summary = json.loads((tmp_path / "tiny" / "training.json").read_text())
    assert summary["preset"] == "tiny" and summary["checkpoint"] == "vq_tiny.pt" and "codebook_usage" in summary
    # the export is an ordinary LlamaGen-layout checkpoint: the checkpoint loader reads it back exactly
    exported = build_vqgan({"format": "llamagen", "checkpoint": str(tmp_path / "tiny" / "vq_tiny.pt")})
    assert exported.fingerprint() == tokenizer.fingerprint()
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(exported.decode(exported.encode(images)), tokenizer.decode(tokenizer.encode(images)))
    assert build_vqgan(params, directory=tmp_path / "tiny").fingerprint() == tokenizer.fingerprint()  # reused
    assert tokenizer.describe()["codebook_usage"] == summary["codebook_usage"]
    other = VQGANParams(preset="tiny", train=quick_train_params(steps=4, crop_size=None, full_resolution_steps=0))
    with pytest.raises(ValueError, match="trained with other settings"):
        build_vqgan(other, directory=tmp_path / "tiny")


def test_preset_in_store_is_trained_once_with_metadata(tmp_path, monkeypatch):
    from tokbench.runtime.context import BuildContext
    from tokbench.storage.store import Store
    from tokbench_vqgan import tokenizer as tokenizer_module

    calls = []
    original = tokenizer_module.train_preset
    monkeypatch.setattr(tokenizer_module, "train_preset", lambda *a, **k: calls.append(1) or original(*a, **k))
    context = BuildContext(store=Store(tmp_path / "store"), device="cpu", progress=False)
    params = {"preset": "tiny", "train": quick_train_params(steps=3, holdout_images=4).model_dump()}
    first = build_vqgan(params, context)
    second = build_vqgan(params, context)
    assert len(calls) == 1 and first.fingerprint() == second.fingerprint()
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "store" / "objects").rglob("MANIFEST.json")]
    assert len(manifests) == 1 and manifests[0]["kind"] == "tokenizer-checkpoint"
    training = manifests[0]["meta"]["training"]
    assert training["steps"] == 3 and "holdout_psnr" in training and "codebook_usage" in training
    assert "vq_tiny.pt" in manifests[0]["files"]
    params["train"]["compile"] = True  # an execution detail: same cache entry
    build_vqgan(params, context)
    assert len(calls) == 1


def test_dead_code_restart_replaces_only_unused_codes_after_the_window():
    from tokbench_vqgan.quantizer import CodebookQuantizer
    from tokbench_vqgan.train import DeadCodeRestart

    q = CodebookQuantizer(4, 2, l2_norm=True)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    before = q.embedding.weight.detach().clone()
    optimizer = torch.optim.AdamW(q.parameters(), lr=1e-3)
    q.embedding.weight.grad = torch.ones_like(q.embedding.weight)
    optimizer.step()  # gives every row Adam moments
    with torch.no_grad():
        q.embedding.weight.copy_(before)
    # every encoder output points at (0.6, 0.8): far from codes 2 and 3, which nobody chooses
    latents = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2).contiguous()
    restart = DeadCodeRestart(q, window=3, generator=torch.Generator().manual_seed(0), optimizer=optimizer)
    used = torch.tensor([0, 1, 0, 1])
    assert restart.observe(used, latents) == 0 and restart.observe(used, latents) == 0
    assert torch.equal(q.embedding.weight, before)  # nothing happens inside the window
    assert restart.observe(used, latents) == 2
    weight = q.embedding.weight.detach()
    assert torch.equal(weight[:2], before[:2])
    assert torch.allclose(weight[2:], torch.tensor([[0.6, 0.8], [0.6, 0.8]]), atol=0.02)  # an encoder output, normalised
    assert torch.allclose(weight[2:].norm(dim=1), torch.ones(2))
    state = optimizer.state[q.embedding.weight]
    assert state["exp_avg"][2:].abs().sum() == 0 and state["exp_avg"][:2].abs().min() > 0
    assert q.indices(latents).unique().tolist() != [0]  # the encoder outputs now find a restarted code
    # a new window starts from zero: codes 0 and 1 unused over it are restarted, 2 and 3 kept
    kept = weight[2:].clone()
    for _ in range(3):
        restarted = restart.observe(torch.tensor([2, 3]), latents)
    assert restarted == 2 and torch.equal(q.embedding.weight[2:], kept) and restart.restarted == 4


def test_restart_is_configurable_and_on_by_default():
    from tokbench_vqgan.params import TinyTrainParams

    assert TinyTrainParams().restart_dead_codes
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    _, _, on = train_tiny(quick_train_params(steps=6, restart_window=2, crop_size=None, full_resolution_steps=0), images)
    _, _, off = train_tiny(quick_train_params(steps=6, restart_dead_codes=False, crop_size=None, full_resolution_steps=0), images)
    assert on["restarted_codes"] > 0 and off["restarted_codes"] == 0
