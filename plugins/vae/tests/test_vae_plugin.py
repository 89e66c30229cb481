"""VAE plugin: conformance, SD-VAE-format loading, errors, training, light imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

from tokbench.errors import MissingAssetError
from tokbench.testing.conformance import TokenizerConformance
from tokbench_vae.params import TinyTrainParams, VAEParams
from tokbench_vae.tokenizer import VAETokenizer, build_vae
from vae_test_helpers import one_torch_thread  # noqa: F401 - autouse fixture: no oversubscribed threads


def small_autoencoder(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1, latent_channels=4, norm_num_groups=4,
    )


class TestVAEConformance(TokenizerConformance):
    image_size = 32

    def make_tokenizer(self):
        return VAETokenizer(small_autoencoder(), VAEParams(pretrained="local/test"))


def test_latent_spec_follows_config():
    tokenizer = VAETokenizer(small_autoencoder(), VAEParams(pretrained="local/test"))
    spec = tokenizer.latent_spec(32)
    assert (spec.channels, spec.height, spec.downsample) == (4, 16, 2)


def test_loads_sd_vae_format_directory_exactly(tmp_path):
    model = small_autoencoder(seed=3)
    model.save_pretrained(tmp_path / "vae")
    loaded = build_vae({"pretrained": str(tmp_path / "vae")})
    reference = VAETokenizer(model, VAEParams(pretrained=str(tmp_path / "vae")))
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded.encode(images), reference.encode(images))
    assert torch.equal(loaded.decode(loaded.encode(images)), reference.decode(reference.encode(images)))
    assert loaded.fingerprint() == reference.fingerprint()
    files = VAEParams(pretrained=str(tmp_path / "vae")).identity_files()
    assert [f.rsplit("/", 1)[-1] for f in files] == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_missing_directory_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere" / "vae"
    with pytest.raises(MissingAssetError) as info:
        build_vae({"pretrained": str(missing)})
    assert str(missing) in str(info.value) and "huggingface-cli download" in str(info.value)


def test_hub_id_offline_gives_download_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingAssetError) as info:
        build_vae({"pretrained": "stabilityai/sd-vae-ft-ema"})
    assert "huggingface-cli download stabilityai/sd-vae-ft-ema" in str(info.value)


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "set one weight source"),
        ({"preset": "tiny", "pretrained": "a/b"}, "both set"),
        ({"preset": "huge"}, "tiny"),
        ({"preset": "tiny", "colour": 1}, "Extra inputs"),
        ({"preset": "tiny", "train": {"block_out_channels": [12, 16], "norm_num_groups": 8}}, "divisible by norm_num_groups"),
    ],
)
def test_params_errors(params, message):
    with pytest.raises(ValidationError, match=message):
        VAEParams.model_validate(params)


def test_suite_validation_reports_vae_param_paths(tmp_path):
    from tokbench.config.suite import load_suite
    from tokbench.errors import SuiteError

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ndatasets: {d: {kind: shapes}}\n"
        "tokenizers: {v: {plugin: vae, params: {preset: tiny, train: {stepz: 3}}}}\n"
        "tasks: [{kind: reconstruction, dataset: d}]\n"
    )
    with pytest.raises(SuiteError) as info:
        load_suite(suite)
    assert "tokenizers.v.params.train.stepz: unknown field 'stepz'" in str(info.value)
    assert "(did you mean 'steps'?)" in str(info.value)


def test_plugin_and_params_import_without_torch():
    code = "import sys, tokbench_vae.plugin, tokbench_vae.params; print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_short_training_learns(tmp_path):
    from tokbench.data.shapes import ShapesDataset
    from tokbench_vae.train import train_tiny

    train = TinyTrainParams(steps=40, batch_size=8, resolution=32, num_images=64, holdout_images=16, warmup_steps=5)
    images = ShapesDataset(split="train", num_images=64, resolution=32)
    holdout = ShapesDataset(split="val", num_images=16, resolution=32, seed=1)
    _, summary = train_tiny(train, images, holdout, device="cpu")
    untrained = TinyTrainParams(steps=1, batch_size=8, resolution=32, num_images=64, holdout_images=16, warmup_steps=0, lr=1e-9)
    _, baseline = train_tiny(untrained, images, holdout, device="cpu")
    assert summary["holdout_psnr"] > baseline["holdout_psnr"] + 1.0


def test_preset_is_trained_once_into_the_store(tmp_path):
    from tokbench.runtime.context import BuildContext
    from tokbench.storage.store import Store

    store = Store(tmp_path / "store")
    context = BuildContext(store=store, device="cpu", progress=False)
    params = {"preset": "tiny", "train": {"steps": 3, "batch_size": 4, "resolution": 32, "num_images": 16,
                                          "holdout_images": 4, "warmup_steps": 0}}
    first = build_vae(params, context)
    second = build_vae(params, context)
    assert first.fingerprint() == second.fingerprint()
    checkpoints = [a for a in store.artifacts() if a["kind"] == "tokenizer-checkpoint"]
    assert len(checkpoints) == 1 and len(store.commits()) == 1
    assert "training" in checkpoints[0]["meta"]
