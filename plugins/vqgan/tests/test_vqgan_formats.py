"""Strict loading of the official layouts (taming Lightning .ckpt + model.yaml, LlamaGen .pt),
written here the way the released files are laid out; clear errors; export round trips."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from tokbench.errors import MissingAssetError
from tokbench.nn.checkpoints import CheckpointFormatError
from tokbench_vqgan import formats
from tokbench_vqgan.model import VQArchitecture, build_model
from tokbench_vqgan.tokenizer import VQGANTokenizer, build_vqgan, export_checkpoint
from vqgan_test_helpers import (SMALL_LLAMAGEN, SMALL_TAMING, one_torch_thread, random_model,  # noqa: F401 - autouse fixture
                                smooth_images, taming_yaml, write_llamagen_checkpoint, write_taming_checkpoint)


def same_outputs(a: VQGANTokenizer, b: VQGANTokenizer, size: int = 32) -> None:
    images = smooth_images(2, size)
    assert torch.equal(a.encode_indices(images), b.encode_indices(images))
    assert torch.equal(a.encode(images), b.encode(images))
    assert torch.equal(a.decode(a.encode(images)), b.decode(b.encode(images)))


def test_taming_lightning_checkpoint_with_model_yaml_loads_strictly(tmp_path):
    model = random_model(SMALL_TAMING, seed=1)
    path = write_taming_checkpoint(model, SMALL_TAMING, tmp_path / "run", tmp_path)
    loaded = build_vqgan({"format": "taming", "checkpoint": str(path)})
    assert loaded.arch == SMALL_TAMING and not loaded.arch.l2_norm and loaded.arch.legacy_beta
    assert loaded.native_resolution == 32 and loaded.source == str(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    same_outputs(loaded, VQGANTokenizer(model, SMALL_TAMING))
    spec = loaded.latent_spec(32)
    assert (spec.channels, spec.height, spec.downsample, spec.codebook_size, spec.discrete) == (8, 8, 4, 64, True)


def test_taming_sizes_are_inferred_without_model_yaml_and_format_is_detected(tmp_path):
    model = random_model(SMALL_TAMING, seed=2)
    path = write_taming_checkpoint(model, SMALL_TAMING, tmp_path / "run", tmp_path, with_yaml=False)
    loaded = build_vqgan({"checkpoint": str(path)})
    assert dataclasses.replace(loaded.arch, sample_size=32) == SMALL_TAMING and loaded.native_resolution == 256
    same_outputs(loaded, VQGANTokenizer(model, SMALL_TAMING))


def test_model_yaml_that_contradicts_the_weights_is_refused(tmp_path):
    path = write_taming_checkpoint(random_model(SMALL_TAMING), SMALL_TAMING, tmp_path / "run", tmp_path, with_yaml=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(taming_yaml(SMALL_TAMING, num_res_blocks=2)))
    with pytest.raises(CheckpointFormatError, match="model.yaml does not describe the weights.*layers_per_block: model.yaml 2 vs weights 1"):
        build_vqgan({"format": "taming", "checkpoint": str(path), "config": str(bad)})


def test_missing_and_unexpected_keys_are_named_as_the_file_spells_them(tmp_path):
    model = random_model(SMALL_TAMING)
    path = write_taming_checkpoint(model, SMALL_TAMING, tmp_path / "extra", tmp_path, extra={"decoder.up.0.block.0.gamma": torch.ones(3)})
    with pytest.raises(CheckpointFormatError, match=r"unexpected keys \(1\): decoder.up.0.block.0.gamma"):
        build_vqgan({"format": "taming", "checkpoint": str(path)})
    path = write_taming_checkpoint(model, SMALL_TAMING, tmp_path / "missing", tmp_path,
                                   drop=("post_quant_conv.bias", "decoder.up.2.attn.1.proj_out.bias"))
    with pytest.raises(CheckpointFormatError, match=r"missing keys \(2\): decoder.up.2.attn.1.proj_out.bias, post_quant_conv.bias"):
        build_vqgan({"format": "taming", "checkpoint": str(path)})
    path = write_taming_checkpoint(model, SMALL_TAMING, tmp_path / "shape", tmp_path, with_yaml=False,
                                   extra={"decoder.conv_out.bias": torch.zeros(4)})
    with pytest.raises(CheckpointFormatError, match=r"shape mismatches \(1\): decoder.conv_out.bias: file \(4,\) vs model \(3,\)"):
        build_vqgan({"format": "taming", "checkpoint": str(path)})
    path = write_taming_checkpoint(model, SMALL_TAMING, tmp_path / "nocodes", tmp_path, drop=("quantize.embedding.weight",))
    with pytest.raises(CheckpointFormatError, match="quantize.embedding.weight.* is missing"):
        build_vqgan({"format": "taming", "checkpoint": str(path)})


def test_wrong_layout_for_the_format_is_explained(tmp_path):
    path = write_llamagen_checkpoint(tmp_path / "vq.pt", random_model(SMALL_LLAMAGEN))
    with pytest.raises(CheckpointFormatError, match="no state dict found.*state_dict"):
        build_vqgan({"format": "taming", "checkpoint": str(path)})
    torch.save({"weights": {"encoder.foo": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointFormatError, match="neither a taming checkpoint.*nor a LlamaGen one"):
        build_vqgan({"checkpoint": str(tmp_path / "other.pt")})


def test_released_preset_with_other_sizes_is_refused(tmp_path):
    path = write_taming_checkpoint(random_model(SMALL_TAMING), SMALL_TAMING, tmp_path / "run", tmp_path)
    with pytest.raises(CheckpointFormatError, match="64 codes of dim 8, but `preset: f16-16384` has 16384 of dim 256"):
        build_vqgan({"preset": "f16-16384", "checkpoint": str(path)})


def test_llamagen_checkpoint_prefers_ema_and_drops_the_usage_buffer(tmp_path):
    model, ema = random_model(SMALL_LLAMAGEN, seed=3), random_model(SMALL_LLAMAGEN, seed=4)
    path = write_llamagen_checkpoint(tmp_path / "vq_ds16_c2i.pt", model, ema)
    loaded = build_vqgan({"format": "llamagen", "checkpoint": str(path)})
    assert dataclasses.replace(loaded.arch, sample_size=32) == SMALL_LLAMAGEN
    assert loaded.arch.l2_norm and not loaded.arch.legacy_beta and loaded.model.quantize.l2_norm
    for key, value in ema.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    same_outputs(loaded, VQGANTokenizer(ema, SMALL_LLAMAGEN))
    codes = loaded.encode(smooth_images(2, 32))
    assert torch.allclose(codes.norm(dim=1), torch.ones(()), atol=1e-6)  # the decoder sees unit vectors
    without_ema = write_llamagen_checkpoint(tmp_path / "model_only.pt", model)
    assert torch.equal(build_vqgan({"checkpoint": str(without_ema)}).model.state_dict()["quant_conv.weight"],
                       model.state_dict()["quant_conv.weight"])


def test_llamagen_args_choose_the_quantizer(tmp_path):
    import argparse

    model = random_model(dataclasses.replace(SMALL_LLAMAGEN, l2_norm=False))
    args = argparse.Namespace(codebook_l2_norm=False, commit_loss_beta=0.5, image_size=32)
    loaded = build_vqgan({"checkpoint": str(write_llamagen_checkpoint(tmp_path / "vq.pt", model, args=args))})
    assert not loaded.arch.l2_norm and loaded.arch.beta == 0.5 and loaded.native_resolution == 32


def test_missing_file_and_offline_hub_say_how_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(MissingAssetError, match="nowhere/last.ckpt.*heibox"):
        build_vqgan({"preset": "f16-16384", "checkpoint": str(tmp_path / "nowhere" / "last.ckpt")})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(MissingAssetError, match="huggingface-cli download FoundationVision/LlamaGen vq_ds16_c2i.pt"):
        build_vqgan({"preset": "llamagen-vq16"})


def test_full_size_f16_16384_key_set_and_parameter_count():
    """The released taming f16-16384 configuration, built on the meta device: 76.1M parameters
    (spec: encoder 29.3M, decoder 42.4M, codebook 4.2M) and a key set that converts to the ldm
    layout and back unchanged."""
    config = taming_yaml(SMALL_TAMING, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, z_channels=256,
                         resolution=256, attn_resolutions=[16])["model"]["params"]
    config.update(n_embed=16384, embed_dim=256)
    arch = VQArchitecture(block_out_channels=(128, 128, 256, 256, 512), layers_per_block=2, latent_channels=256,
                          codebook_size=16384, codebook_dim=256, attention_levels=(4,), mid_attention=True)
    assert formats._check_taming_config(arch, config, "f16-16384") == arch  # model.yaml agrees
    with torch.device("meta"):
        model = build_model(arch)
    state = model.state_dict()
    parts = {part: sum(v.numel() for k, v in state.items() if k.startswith(part)) for part in ("encoder.", "decoder.", "quantize.")}
    total = sum(p.numel() for p in model.parameters())
    assert round(total / 1e6, 1) == 76.1 and round(parts["encoder."] / 1e6, 1) == 29.3
    assert round(parts["decoder."] / 1e6, 1) == 42.4 and parts["quantize."] == 16384 * 256
    ldm = formats.convert(state, "diffusers", "ldm", 5)
    assert len(ldm) == len(state) and all(k.startswith(("encoder.down.", "encoder.mid.", "encoder.conv", "encoder.norm_out",
                                                        "decoder.up.", "decoder.mid.", "decoder.conv", "decoder.norm_out",
                                                        "quant_conv.", "post_quant_conv.", "quantize.embedding.weight"))
                                          for k in ldm)
    assert "decoder.up.4.attn.2.q.weight" in ldm and ldm["decoder.up.4.attn.2.q.weight"].shape == (512, 512, 1, 1)
    assert set(formats.convert(ldm, "ldm", "diffusers", 5)) == set(state)


@pytest.mark.parametrize("arch", [SMALL_TAMING, SMALL_LLAMAGEN], ids=["taming", "llamagen"])
def test_export_then_load_is_exact(tmp_path, arch):
    model = random_model(arch, seed=7)
    path = export_checkpoint(model, arch, tmp_path)
    assert path.name == ("vq_tiny.pt" if arch.l2_norm else "last.ckpt")
    loaded = build_vqgan({"checkpoint": str(path)})
    original = VQGANTokenizer(model, arch)
    assert loaded.fingerprint() == original.fingerprint()
    same_outputs(loaded, original)


def test_taming_layout_cannot_hold_an_l2_codebook(tmp_path):
    with pytest.raises(ValueError, match="save this model in the LlamaGen layout"):
        formats.save_taming(random_model(SMALL_LLAMAGEN), SMALL_LLAMAGEN, tmp_path / "last.ckpt")
