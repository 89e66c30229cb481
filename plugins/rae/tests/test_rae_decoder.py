"""GeneralDecoder: the released key layout, strict loading, sizes, the sin-cos table, the forward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tokbench.nn.checkpoints import CheckpointFormatError
from tokbench_rae.decoder import GeneralDecoder, infer_decoder_config, load_decoder, read_decoder_file, sincos_table
from tokbench_rae.sizes import DecoderConfig, decoder_config
from rae_test_helpers import official_decoder_state, small_decoder_config


def mae_sincos(width: int, grid: int) -> np.ndarray:
    """MAE's get_2d_sincos_pos_embed(add_cls_token=True), transcribed from its definition."""
    def one_axis(dim, positions):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=float) / (dim / 2.0))
        out = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    w, h = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    table = np.concatenate([one_axis(width // 2, w), one_axis(width // 2, h)], axis=1)
    return np.concatenate([np.zeros([1, width]), table], axis=0)


def test_sincos_table_is_maes():
    for width, grid in ((1152, 16), (64, 4)):
        assert np.array_equal(sincos_table(width, grid), mae_sincos(width, grid))


def test_vit_xl_layout_and_size_on_the_meta_device():
    config = decoder_config("ViT-XL")
    with torch.device("meta"):
        decoder = GeneralDecoder(config)
    state = decoder.state_dict()
    expected = {k: v.shape for k, v in official_decoder_state(config, meta=True).items()}
    assert {k: v.shape for k, v in state.items()} == expected
    assert len(state) == 456  # 28 layers x 16 tensors + 8
    count = sum(v.numel() for v in state.values())
    assert count == config.parameter_count() == 415_352_704  # "≈415M"; the reference module has the same (parity benchmark)
    assert config.forward_macs() / 1e9 == pytest.approx(111, abs=2)  # spec: decode ≈ 111 GMACs per image
    assert (config.hidden, config.layers, config.heads, config.intermediate, config.image_size) == (1152, 28, 16, 4096, 256)


@pytest.mark.parametrize("config", [small_decoder_config(), DecoderConfig(48, 96, 3, 2, 192, 16, 2)])
def test_official_state_dict_loads_strictly_and_sizes_are_inferred(tmp_path, config):
    state = official_decoder_state(config, seed=3)
    torch.save(state, tmp_path / "model.pt")
    decoder = read_decoder_file(tmp_path / "model.pt", heads=config.heads)
    assert decoder.config == config
    assert all(torch.equal(decoder.state_dict()[k], v) for k, v in state.items())
    assert infer_decoder_config(state, heads=config.heads) == config


def test_released_widths_give_released_heads():
    for size, heads in (("ViT-B", 12), ("ViT-L", 16), ("ViT-XL", 16)):
        config = decoder_config(size)
        state = official_decoder_state(config, meta=True)
        assert infer_decoder_config(state).heads == heads


def test_wrong_keys_are_named(tmp_path):
    state = official_decoder_state(small_decoder_config())
    renamed = dict(state)
    renamed["decoder_layers.1.attention.attention.qkv.weight"] = renamed.pop("decoder_layers.1.attention.attention.query.weight")
    with pytest.raises(CheckpointFormatError) as info:
        load_decoder(renamed)
    message = str(info.value)
    assert "missing keys (1): decoder_layers.1.attention.attention.query.weight" in message
    assert "unexpected keys (1): decoder_layers.1.attention.attention.qkv.weight" in message
    bad_shape = dict(state, trainable_cls_token=torch.zeros(1, 2, 64))
    with pytest.raises(CheckpointFormatError, match=r"trainable_cls_token: file \(1, 2, 64\) vs model \(1, 1, 64\)"):
        load_decoder(bad_shape)
    torch.save({"step": 3, "optimizer": {}}, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointFormatError, match="no state dict found"):
        read_decoder_file(tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointFormatError, match="not an RAE GeneralDecoder state dict: missing decoder_embed.weight"):
        load_decoder({"encoder.weight": torch.zeros(1)})


def test_forward_matches_the_mae_layer_definition():
    """One ViTMAELayer written out with explicit softmax attention, against the SDPA module."""
    config = small_decoder_config()
    state = official_decoder_state(config, seed=5)
    decoder = load_decoder(state, heads=config.heads)
    tokens = torch.randn(2, config.num_patches, config.latent_dim)

    def ln(x, name):
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-12)

    def linear(x, name):
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    x = linear(tokens, "decoder_embed")
    x = torch.cat([state["trainable_cls_token"].expand(2, -1, -1), x], dim=1) + state["decoder_pos_embed"]
    for layer in range(config.layers):
        p = f"decoder_layers.{layer}."
        h = ln(x, p + "layernorm_before")
        q, k, v = (linear(h, p + f"attention.attention.{n}") for n in ("query", "key", "value"))
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v  # heads = 1
        x = x + linear(attention, p + "attention.output.dense")
        x = x + linear(torch.nn.functional.gelu(linear(ln(x, p + "layernorm_after"), p + "intermediate.dense")), p + "output.dense")
    expected = linear(ln(x, "decoder_norm"), "decoder_pred")[:, 1:]
    with torch.no_grad():
        assert torch.allclose(decoder(tokens), expected, atol=1e-5)
        images = decoder.unpatchify(expected)
    # unpatchify: token (row r, col c) fills pixels [r·p:(r+1)·p, c·p:(c+1)·p], each patch laid out (p, p, channel)
    p = config.patch_size
    patch = expected[1, 1 * config.grid + 2].reshape(p, p, 3).permute(2, 0, 1)
    assert torch.equal(images[1, :, p : 2 * p, 2 * p : 3 * p], patch)


def test_wrong_token_count_is_explained():
    config = small_decoder_config()
    decoder = load_decoder(official_decoder_state(config), heads=config.heads)
    with pytest.raises(ValueError, match=r"built for 4x4 tokens \(32 px\); got 9 tokens"):
        decoder(torch.randn(1, 9, config.latent_dim))


def test_parameter_count_matches_the_module():
    for config in (small_decoder_config(), DecoderConfig(48, 96, 3, 2, 192, 16, 2), decoder_config("tiny", 128, 8, 8)):
        assert sum(p.numel() for p in GeneralDecoder(config).state_dict().values()) == config.parameter_count()


def test_bad_sizes_are_explained():
    with pytest.raises(ValueError, match="width 100 is not divisible by its 3 heads"):
        DecoderConfig(8, 100, 1, 3, 8, 2, 2)
    with pytest.raises(ValueError, match="unknown decoder size 'ViT-H'; choose one of ViT-B, ViT-L, ViT-XL, tiny"):
        decoder_config("ViT-H")
    state = official_decoder_state(DecoderConfig(8, 96, 1, 2, 16, 2, 2))
    with pytest.raises(CheckpointFormatError, match="cannot tell the head count of a 96-wide decoder"):
        infer_decoder_config(state)
