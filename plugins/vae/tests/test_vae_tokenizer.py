"""VAETokenizer: the conformance suite, loading, fingerprints and failure messages."""

from __future__ import annotations

import pytest
import torch

from tokbench.api import Capability
from tokbench.errors import MissingAssetError
from tokbench.testing.conformance import TokenizerConformance
from tokbench_vae.params import VAEParams
from tokbench_vae.tokenizer import VAETokenizer, build_vae
from vae_test_helpers import one_torch_thread, random_autoencoder  # noqa: F401 - autouse fixture


def smooth_images(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 4, size // 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


class TestVAEConformance(TokenizerConformance):
    image_size = 32

    def make_tokenizer(self):
        return VAETokenizer(random_autoencoder(seed=0), VAEParams(preset="tiny"))


class TestVAESampledConformance(TokenizerConformance):
    """Posterior samples are seeded per image, so they pass the same contract."""

    image_size = 32

    def make_tokenizer(self):
        return VAETokenizer(random_autoencoder(seed=0), VAEParams(preset="tiny", sample_posterior=True, seed=3))


def test_encode_returns_raw_posterior_mode():
    model = random_autoencoder()
    tokenizer = VAETokenizer(model, VAEParams(preset="tiny"))
    images = smooth_images()
    with torch.no_grad():
        expected = model.encode(images * 2 - 1).latent_dist.mode()
        decoded = ((model.decode(expected).sample + 1) / 2).clamp(0, 1)
        assert torch.equal(tokenizer.encode(images), expected)
        assert torch.equal(tokenizer.decode(expected), decoded)
    assert tokenizer.scaling_factor == 0.5 and tokenizer.shift_factor == 0.0
    spec = tokenizer.latent_spec(64)
    assert (spec.channels, spec.height, spec.downsample) == (4, 16, 4)
    with pytest.raises(ValueError, match="divisible"):
        tokenizer.latent_spec(30)


def test_sampling_differs_from_mode_and_depends_on_seed():
    images = smooth_images()
    mode = VAETokenizer(random_autoencoder(), VAEParams(preset="tiny")).encode(images)
    sample_a = VAETokenizer(random_autoencoder(), VAEParams(preset="tiny", sample_posterior=True, seed=0)).encode(images)
    sample_b = VAETokenizer(random_autoencoder(), VAEParams(preset="tiny", sample_posterior=True, seed=1)).encode(images)
    assert not torch.equal(mode, sample_a) and not torch.equal(sample_a, sample_b)


def test_fingerprint_covers_output_changing_params():
    model = random_autoencoder()
    mode = VAETokenizer(model, VAEParams(preset="tiny")).fingerprint()
    assert VAETokenizer(model, VAEParams(preset="tiny", seed=5)).fingerprint() == mode  # seed unused without sampling
    sampled = VAETokenizer(model, VAEParams(preset="tiny", sample_posterior=True)).fingerprint()
    resampled = VAETokenizer(model, VAEParams(preset="tiny", sample_posterior=True, seed=5)).fingerprint()
    assert len({mode, sampled, resampled}) == 3


def test_local_directory_round_trip(tmp_path):
    model = random_autoencoder(seed=1)
    model.save_pretrained(tmp_path / "vae")
    in_memory = VAETokenizer(model, VAEParams(pretrained=str(tmp_path / "vae")))
    loaded = build_vae({"pretrained": str(tmp_path / "vae")})
    assert isinstance(loaded, VAETokenizer) and Capability.DECODE in loaded.capabilities
    images = smooth_images()
    with torch.no_grad():
        latents = in_memory.encode(images)
        assert torch.equal(loaded.encode(images), latents)
        assert torch.equal(loaded.decode(latents), in_memory.decode(latents))
    assert loaded.fingerprint() == in_memory.fingerprint()
    assert loaded.scaling_factor == 0.5 and loaded.native_resolution == 32


def test_local_directory_with_subfolder(tmp_path):
    random_autoencoder(seed=2).save_pretrained(tmp_path / "pipeline" / "vae")
    params = VAEParams(pretrained=str(tmp_path / "pipeline"), subfolder="vae")
    names = sorted(p.rsplit("/", 1)[-1] for p in params.identity_files())
    assert names == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert build_vae(params).fingerprint() == VAETokenizer(random_autoencoder(seed=2), params).fingerprint()


def test_pipeline_directory_suggests_the_subfolder(tmp_path):
    random_autoencoder().save_pretrained(tmp_path / "pipeline" / "vae")
    with pytest.raises(MissingAssetError, match="subfolder: vae"):
        build_vae({"pretrained": str(tmp_path / "pipeline")})


def test_missing_local_path_names_the_path(tmp_path):
    missing = tmp_path / "no" / "such-vae"
    with pytest.raises(MissingAssetError, match="no/such-vae") as error:
        build_vae({"pretrained": str(missing)})
    assert "huggingface-cli download" in str(error.value)
    with pytest.raises(MissingAssetError, match="does not exist"):
        VAEParams(pretrained="./not-here/vae").identity_files()


def test_directory_without_weights_is_reported(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(MissingAssetError, match="config.json"):
        build_vae({"pretrained": str(tmp_path)})


def test_unfetchable_hub_id_says_how_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_id = "tokbench-tests/definitely-not-a-cached-vae"
    params = VAEParams(pretrained=hub_id)
    assert params.identity_files() == []
    with pytest.raises(MissingAssetError) as error:
        build_vae(params)
    message = str(error.value)
    assert hub_id in message
    assert f"huggingface-cli download {hub_id} --local-dir" in message and "pretrained:" in message
