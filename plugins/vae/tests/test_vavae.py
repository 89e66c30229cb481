"""VA-VAE / LDM-layout KL checkpoints: the official key layout, strict loading, statistics."""

from __future__ import annotations

import argparse

import pytest
import torch
from diffusers import AutoencoderKL

from tokbench.errors import MissingAssetError
from tokbench.nn.checkpoints import CheckpointFormatError
from tokbench.nn.ldm_numerics import LDMAttentionProcessor, use_ldm_numerics
from tokbench.testing.conformance import TokenizerConformance
from tokbench_vae.ldm import LDMArchitecture, infer_architecture, to_ldm_state_dict
from tokbench_vae.params import VAEParams
from tokbench_vae.tokenizer import build_vae
from vae_test_helpers import one_torch_thread  # noqa: F401 - autouse fixture

#: VA-VAE f16d32 (LightningDiT tokenizer/autoencoder.py): counted on the reference module at 2725fed
VAVAE_TENSORS = 342
VAVAE_PARAMETERS = 69_836_067
VAVAE = LDMArchitecture(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, z_channels=32,
                        encoder_attention_levels=frozenset({4}), decoder_attention_levels=frozenset({4}), mid_attention=True)
SMALL = LDMArchitecture(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4,
                        encoder_attention_levels=frozenset({1}), decoder_attention_levels=frozenset({1}), mid_attention=True)


def small_model(seed: int = 0) -> AutoencoderKL:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoencoderKL(**SMALL.autoencoder_config(sample_size=32))
        with torch.no_grad():
            for tensor in model.state_dict().values():
                tensor.add_(0.05 * torch.randn_like(tensor))
    return use_ldm_numerics(model).eval()


def write_lightning_checkpoint(path, model: AutoencoderKL, extra: dict | None = None) -> None:
    """A VA-VAE-style Lightning checkpoint: LDM keys, training-only tensors, non-tensor globals."""
    state = to_ldm_state_dict(model)
    state.update({"loss.logvar": torch.zeros(()), "loss.discriminator.main.0.weight": torch.randn(8, 3, 4, 4),
                  "foundation_model.model.cls_token": torch.randn(1, 1, 16), "linear_proj.weight": torch.randn(16, 4, 1, 1)})
    state.update(extra or {})
    torch.save({"state_dict": state, "epoch": 3, "hyper_parameters": argparse.Namespace(embed_dim=4)}, path)


@pytest.fixture
def checkpoint(tmp_path):
    model = small_model()
    path = tmp_path / "vavae.pt"
    write_lightning_checkpoint(path, model)
    stats = tmp_path / "latents_stats.pt"
    torch.save({"mean": torch.arange(4.0).reshape(1, 4, 1, 1), "std": torch.full((1, 4, 1, 1), 2.0)}, stats)
    return model, path, stats


def test_full_size_key_layout_matches_the_reference_counts():
    with torch.device("meta"):
        model = AutoencoderKL(**VAVAE.autoencoder_config())
    state = to_ldm_state_dict(model)
    assert len(state) == VAVAE_TENSORS
    assert sum(t.numel() for t in state.values()) == VAVAE_PARAMETERS
    # official LDM names and the 1x1-conv attention shapes
    assert tuple(state["encoder.down.4.attn.1.q.weight"].shape) == (512, 512, 1, 1)
    assert tuple(state["decoder.up.4.attn.2.proj_out.weight"].shape) == (512, 512, 1, 1)
    assert tuple(state["decoder.up.1.block.0.nin_shortcut.weight"].shape) == (128, 256, 1, 1)
    assert tuple(state["encoder.mid.attn_1.k.weight"].shape) == (512, 512, 1, 1)
    assert tuple(state["quant_conv.weight"].shape) == (64, 64, 1, 1)
    assert "decoder.up.0.upsample.conv.weight" not in state and "decoder.up.1.upsample.conv.weight" in state
    assert infer_architecture(state) == VAVAE


def test_lightning_checkpoint_loads_strictly_and_computes_the_same(checkpoint):
    model, path, stats = checkpoint
    tokenizer = build_vae({"checkpoint": str(path), "latent_stats": str(stats), "resolution": 32})
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.encode(images * 2 - 1).latent_dist.mode()
        expected_images = ((model.decode(expected).sample + 1) / 2).clamp(0, 1)
    latents = tokenizer.encode(images)
    assert torch.equal(latents, expected)
    assert torch.equal(tokenizer.decode(latents), expected_images)
    assert tokenizer.latent_spec(32).shape == (4, 16, 16)
    mean, std = tokenizer.latent_normalization()
    assert torch.equal(mean.flatten(), torch.arange(4.0)) and torch.equal(std, torch.full((1, 4, 1, 1), 2.0))
    assert tokenizer.describe()["latent_stats"] == str(stats)


def test_posterior_sample_is_seeded_and_differs_from_the_mode(checkpoint):
    _, path, _ = checkpoint
    images = torch.rand(2, 3, 32, 32)
    mode = build_vae({"checkpoint": str(path), "resolution": 32}).encode(images)
    sampled = build_vae({"checkpoint": str(path), "resolution": 32, "sample_posterior": True, "seed": 1})
    first, again = sampled.encode(images), sampled.encode(images)
    assert torch.equal(first, again) and not torch.allclose(first, mode)


def test_unknown_and_missing_keys_are_named(tmp_path):
    model = small_model()
    path = tmp_path / "extra.pt"
    write_lightning_checkpoint(path, model, extra={"model_ema.decay": torch.tensor(0.999)})
    with pytest.raises(CheckpointFormatError, match="outside.*model_ema.decay"):
        build_vae({"checkpoint": str(path), "resolution": 32})
    state = to_ldm_state_dict(model)
    del state["decoder.mid.attn_1.q.weight"]
    torch.save({"state_dict": state}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointFormatError, match=r"missing keys \(1\): decoder.mid_block.attentions.0.to_q.weight"):
        build_vae({"checkpoint": str(tmp_path / "missing.pt"), "resolution": 32})


def test_latent_stats_of_another_model_are_refused(checkpoint, tmp_path):
    _, path, _ = checkpoint
    torch.save({"mean": torch.zeros(1, 32, 1, 1), "std": torch.ones(1, 32, 1, 1)}, tmp_path / "other.pt")
    tokenizer = build_vae({"checkpoint": str(path), "latent_stats": str(tmp_path / "other.pt"), "resolution": 32})
    with pytest.raises(CheckpointFormatError, match="32 values but this model's latent has 4 channels"):
        tokenizer.latent_normalization()


def test_missing_files_and_offline_release_say_how_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(MissingAssetError, match="does not exist.*huggingface-cli download hustvl/vavae"):
        VAEParams(checkpoint=str(tmp_path / "absent.pt"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingAssetError, match="huggingface-cli download hustvl/vavae-imagenet256-f16d32-dinov2"):
        build_vae({"checkpoint": "va-vae-f16d32"})


def test_diffusers_config_without_stats_normalises_with_its_scaling_factor():
    from tokbench_vae.tokenizer import VAETokenizer

    from vae_test_helpers import random_autoencoder

    mean, std = VAETokenizer(random_autoencoder(), VAEParams(preset="tiny")).latent_normalization()
    assert torch.equal(mean, torch.zeros(1, 4, 1, 1)) and torch.allclose(std, torch.full((1, 4, 1, 1), 2.0))  # 1 / 0.5


def test_attention_fast_path_agrees_with_the_reference_order():
    processor_model = small_model()
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        reference = processor_model.encode(images).latent_dist.mode()
        fast = processor_model.double().encode(images.double()).latent_dist.mode()  # float64 takes the SDPA branch
    assert isinstance(processor_model.encoder.mid_block.attentions[0].processor, LDMAttentionProcessor)
    assert torch.allclose(reference.double(), fast, atol=1e-4)


class TestVAVAEConformance(TokenizerConformance):
    image_size = 32

    @pytest.fixture(autouse=True)
    def _checkpoint(self, tmp_path):
        self.path = tmp_path / "vavae.pt"
        write_lightning_checkpoint(self.path, small_model())

    def make_tokenizer(self):
        return build_vae({"checkpoint": str(self.path), "resolution": 32})
