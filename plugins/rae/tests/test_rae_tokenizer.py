"""RAETokenizer: the conformance suite, loading official-layout files, per-element statistics, features."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tokbench.errors import MissingAssetError
from tokbench.nn.checkpoints import CheckpointFormatError
from tokbench.testing.conformance import TokenizerConformance
from tokbench_rae.latent_stats import compute_stats, read_stats
from tokbench_rae.tokenizer import RAETokenizer, build_rae
from rae_test_helpers import official_decoder_state, small_decoder_config, small_tokenizer, small_vit


class TestRAEConformance(TokenizerConformance):
    image_size = 32

    def make_tokenizer(self):
        return small_tokenizer(seed=0)

    def make_other_tokenizer(self):
        return small_tokenizer(seed=0, precision="bf16")


class TestRAEVTPTrunkConformance(TokenizerConformance):
    """The tiny preset's encoder kind (a VTP trunk, RoPE periods kept in bf16)."""

    image_size = 32

    def make_tokenizer(self):
        from tokbench_rae.decoder import load_decoder
        from tokbench_rae.encoder import VTPTrunkEncoder
        from tokbench_rae.params import RAEParams
        from tokbench_vtp.model.config import VTPArchitecture
        from tokbench_vtp.model.vtp import VTPModel

        arch = VTPArchitecture(patch_size=8, vision_width=32, vision_depth=2, vision_heads=1, bottleneck=8,
                               with_decoder=False, with_text=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            trunk = VTPModel(arch).trunk.eval()
        config = small_decoder_config()
        return RAETokenizer(VTPTrunkEncoder(trunk), load_decoder(official_decoder_state(config), heads=config.heads),
                            RAEParams(preset="tiny"))


def smooth_images(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 4, size // 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def test_encode_is_raw_and_resizes_to_the_encoder_grid():
    tokenizer = small_tokenizer()
    images = smooth_images()
    spec = tokenizer.latent_spec(32)
    assert (spec.channels, spec.height, spec.width, spec.downsample) == (32, 4, 4, 8)
    with torch.no_grad():
        latents = tokenizer.encode(images)
        # 32 px -> 16 px for the patch-4 encoder (RAE: 256 -> 224 for DINOv2/14), bicubic without antialias
        resized = torch.nn.functional.interpolate(images, size=(16, 16), mode="bicubic", align_corners=False)
        from tokbench.nn.layers import imagenet_normalize

        tokens = tokenizer.encoder.latent_tokens(imagenet_normalize(resized))
    assert torch.equal(latents, tokens.transpose(1, 2).reshape(2, 32, 4, 4))
    assert torch.allclose(latents.mean(1), torch.zeros(2, 4, 4), atol=1e-5)  # LN without affine, per token


def test_per_element_statistics(tmp_path):
    tokenizer = small_tokenizer()
    mean, std = tokenizer.latent_normalization()
    assert mean.shape == std.shape == (1, 32, 4, 4)
    stats = {"mean": torch.randn(32, 4, 4), "var": torch.rand(32, 4, 4)}
    torch.save(stats, tmp_path / "stat.pt")
    mean, std = read_stats(tmp_path / "stat.pt", (32, 4, 4))
    assert torch.equal(mean, stats["mean"][None]) and torch.allclose(std, (stats["var"][None] + 1e-5).sqrt())
    # generation standardises (N, C, H, W) latents with them element by element (tokbench/tasks/generation.py)
    latents = torch.randn(5, 32, 4, 4)
    standardised = (latents - mean) / std
    assert torch.allclose(standardised[:, 3, 2, 1], (latents[:, 3, 2, 1] - stats["mean"][3, 2, 1]) / std[0, 3, 2, 1])
    with pytest.raises(CheckpointFormatError, match=r"`mean` has shape \(32, 4, 4\) but this tokenizer's latent is \(32, 8, 8\)"):
        read_stats(tmp_path / "stat.pt", (32, 8, 8))
    torch.save({"mean": torch.zeros(1), "std": torch.ones(1)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointFormatError, match=r"expected a dict \{'mean'.*found \['mean', 'std'\]"):
        read_stats(tmp_path / "bad.pt", (32, 4, 4))
    computed = compute_stats(latents.split(2))
    assert torch.allclose(computed["mean"], latents.mean(0), atol=1e-6)
    assert torch.allclose(computed["var"], latents.var(0, unbiased=False), atol=1e-5)


def test_builds_from_files_in_the_official_layout(tmp_path, monkeypatch):
    import tokbench_rae.encoder as encoder_module

    config = small_decoder_config()
    torch.save(official_decoder_state(config, seed=0), tmp_path / "model.pt")
    torch.save({"mean": torch.zeros(32, 4, 4), "var": torch.ones(32, 4, 4)}, tmp_path / "stat.pt")
    vit = small_vit(seed=0)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "encoder.safetensors"))
    monkeypatch.setattr(encoder_module, "create_timm_vit", lambda name: small_vit(seed=5))
    params = {"decoder": str(tmp_path / "model.pt"), "stats": str(tmp_path / "stat.pt"),
              "encoder_checkpoint": str(tmp_path / "encoder.safetensors")}
    loaded = build_rae(params)
    reference = small_tokenizer(seed=0, stats=False)
    images = smooth_images()
    with torch.no_grad():
        assert torch.equal(loaded.encode(images), reference.encode(images))
        assert torch.equal(loaded.decode(reference.encode(images)), reference.decode(reference.encode(images)))
    assert loaded.native_resolution == 32 and loaded.training_flops is None
    assert torch.allclose(loaded.latent_normalization()[1], torch.full((1, 32, 4, 4), (1 + 1e-5) ** 0.5))
    # the statistics are part of the identity (generation standardises with them)
    assert loaded.fingerprint() != build_rae({k: v for k, v in params.items() if k != "stats"}).fingerprint()


def test_decoder_input_width_must_match_the_encoder(tmp_path, monkeypatch):
    import tokbench_rae.encoder as encoder_module
    from tokbench_rae.sizes import DecoderConfig

    torch.save(official_decoder_state(DecoderConfig(48, 64, 1, 1, 64, 8, 4)), tmp_path / "model.pt")
    vit = small_vit(seed=0)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "encoder.safetensors"))
    monkeypatch.setattr(encoder_module, "create_timm_vit", lambda name: small_vit(seed=5))
    with pytest.raises(ValueError, match="decoder reads 48-wide tokens but the encoder gives 32"):
        build_rae({"decoder": str(tmp_path / "model.pt"), "encoder_checkpoint": str(tmp_path / "encoder.safetensors")})


def test_released_weights_offline_say_how_to_get_them():
    with pytest.raises(MissingAssetError) as info:
        build_rae({"pretrained": "dinov2-b"})
    message = str(info.value)
    assert "hf download nyu-visionx/RAE-collections models/decoders/dinov2/wReg_base/ViTXL_n08/model.pt" in message
    assert "decoder: ./weights/rae/models/decoders/dinov2/wReg_base/ViTXL_n08/model.pt" in message


def test_decode_needs_the_decoder_grid_and_encode_works_elsewhere():
    tokenizer = small_tokenizer()
    with torch.no_grad():
        latents = tokenizer.encode(smooth_images(size=48))  # encoder grid resampled: 6x6 tokens from 24 px
        assert latents.shape == (2, 32, 6, 6)
        with pytest.raises(ValueError, match=r"decodes 4x4 latents \(32 px images\), got \(6, 6\); resize images to 32 px"):
            tokenizer.decode(latents)
    with pytest.raises(ValueError, match="not a multiple of the decoder patch size 8"):
        tokenizer.latent_spec(36)


def test_image_features_for_the_dinov2_probe():
    tokenizer = small_tokenizer()
    images = smooth_images()
    names = ["block-1.cls", "block-2.cls", "block-1.patch_mean", "latent_mean"]
    with torch.no_grad():
        features = tokenizer.image_features(images, names)
        default = tokenizer.image_features(images)
        latents = tokenizer.encode(images)
    assert list(features) == names and all(f.shape == (2, 32) for f in features.values())
    assert torch.equal(features["block-1.cls"], default["cls"])
    assert torch.allclose(features["latent_mean"], latents.mean(dim=(2, 3)), atol=1e-6)
    assert not torch.allclose(features["block-1.cls"], features["block-2.cls"])
    with pytest.raises(ValueError, match=r"unknown RAE feature 'block-1.clss'.*did you mean 'block-1.cls'"):
        tokenizer.image_features(images, ["block-1.clss"])
    with pytest.raises(ValueError, match="unknown RAE feature 'block-3.cls'"):  # the test encoder has 2 blocks
        tokenizer.image_features(images, ["block-3.cls"])
