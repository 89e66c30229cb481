"""LightningDiT: the official key layout and sizes (from the spec, not from our model), strict
loading of checkpoints written the way the reference writes them, and the analytic FLOPs
against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tokbench.errors import MissingAssetError, TokbenchError
from tokbench.generation.checkpoint import infer_config, load_lightningdit, read_state_dict
from tokbench.generation.flops import config_macs, forward_flops, sampling_flops_per_image, steps_for_budget, training_flops_per_image
from tokbench.generation.model import LightningDiT, dit_config, sincos_pos_embed


def official_shapes(depth=28, width=1152, heads=16, channels=32, patch=1, tokens=256, hidden=3072, classes=1000):
    """The released XL/1 layout as the spec lists it (lightningdit.md §2.2), for any size."""
    shapes = {
        "x_embedder.proj.weight": (width, channels, patch, patch), "x_embedder.proj.bias": (width,),
        "t_embedder.mlp.0.weight": (width, 256), "t_embedder.mlp.0.bias": (width,),
        "t_embedder.mlp.2.weight": (width, width), "t_embedder.mlp.2.bias": (width,),
        "y_embedder.embedding_table.weight": (classes + 1, width),
        "pos_embed": (1, tokens, width),
        "feat_rope.freqs_cos": (tokens, width // heads), "feat_rope.freqs_sin": (tokens, width // heads),
        "final_layer.norm_final.weight": (width,),
        "final_layer.linear.weight": (patch * patch * channels, width), "final_layer.linear.bias": (patch * patch * channels,),
        "final_layer.adaLN_modulation.1.weight": (2 * width, width), "final_layer.adaLN_modulation.1.bias": (2 * width,),
    }
    for i in range(depth):
        shapes |= {
            f"blocks.{i}.norm1.weight": (width,), f"blocks.{i}.norm2.weight": (width,),
            f"blocks.{i}.attn.qkv.weight": (3 * width, width), f"blocks.{i}.attn.qkv.bias": (3 * width,),
            f"blocks.{i}.attn.proj.weight": (width, width), f"blocks.{i}.attn.proj.bias": (width,),
            f"blocks.{i}.mlp.w12.weight": (2 * hidden, width), f"blocks.{i}.mlp.w12.bias": (2 * hidden,),
            f"blocks.{i}.mlp.w3.weight": (width, hidden), f"blocks.{i}.mlp.w3.bias": (width,),
            f"blocks.{i}.adaLN_modulation.1.weight": (6 * width, width), f"blocks.{i}.adaLN_modulation.1.bias": (6 * width,),
        }
    return shapes


@pytest.mark.parametrize("channels, params, gmacs", [(32, 675.26e6, 118.63), (64, 675.33e6, 118.65), (768, 676.95e6, 119.06)])
def test_xl1_layout_parameters_and_macs_match_the_release(channels, params, gmacs):
    config = dit_config("XL/1", channels)
    with torch.device("meta"):
        model = LightningDiT(config)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert state == official_shapes(channels=channels)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, abs=0.006e6)
    assert config_macs(config) / 1e9 == pytest.approx(gmacs, abs=0.006)


def test_b1_and_dit_paper_counts():
    assert config_macs(dit_config("B/1", 32)) / 1e9 == pytest.approx(23.01, abs=0.006)
    # DiT-XL/2 on SD-VAE f8 (4 x 32 x 32, GELU MLP, LayerNorm): the DiT paper's 118.6 "Gflops" are GMACs
    dit = dit_config("XL/2", 4, input_size=32, use_swiglu=False, use_rope=False, use_rmsnorm=False)
    assert config_macs(dit) / 1e9 == pytest.approx(118.6, abs=0.06)


@pytest.mark.parametrize("name, channels, size", [("XL/1", 32, 16), ("tiny/1", 64, 16), ("micro/2", 4, 8)])
def test_analytic_flops_match_flop_counter(name, channels, size):
    config = dit_config(name, channels, input_size=size)
    device = "meta" if name.startswith("XL") else "cpu"
    with torch.device(device):
        model = LightningDiT(config)
    x = torch.zeros(2, channels, size, size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.zeros(2, device=device), torch.zeros(2, dtype=torch.long, device=device))
    assert counter.get_total_flops() == pytest.approx(2 * forward_flops(config), rel=0.02)
    assert training_flops_per_image(config) == 3 * forward_flops(config)
    assert sampling_flops_per_image(config, 2 * 249) == 2 * 249 * forward_flops(config)


def test_budget_to_steps():
    config = dit_config("XL/1", 32)
    per_step = training_flops_per_image(config) * 1024
    assert steps_for_budget(config, 100_000 * per_step, 1024) == 100_000
    assert per_step * 100_000 == pytest.approx(7.29e19, rel=0.01)  # "80 epochs" of XL/1 (spec §11)
    with pytest.raises(ValueError, match="less than half a step"):
        steps_for_budget(config, per_step / 3, 1024)


def test_sincos_table_is_the_dit_layout():
    table = sincos_pos_embed(8, 3)  # 9 positions, x-coordinate half first
    import numpy as np

    x = np.tile(np.arange(3), 3).astype(float)
    y = np.repeat(np.arange(3), 3).astype(float)
    omega = 1 / 10000 ** (np.arange(2) / 2)
    np.testing.assert_allclose(table[:, :2], np.sin(x[:, None] * omega))
    np.testing.assert_allclose(table[:, 6:], np.cos(y[:, None] * omega))


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    model = LightningDiT(dit_config("micro/1", 8, input_size=8, **overrides))
    with torch.no_grad():  # zero-initialised adaLN / output layers would hide key mix-ups
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.mark.parametrize("layout", ["training-checkpoint", "raw", "safetensors"])
def test_official_checkpoints_load_strictly(tmp_path, layout):
    model, ema = tiny_model(0), tiny_model(1)
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "0100000.pt")
    if layout == "training-checkpoint":  # what LightningDiT's train.py writes
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": {}, "config": {"model": "x"}}, path)
        expected = ema
    elif layout == "raw":
        torch.save(model.state_dict(), path)
        expected = model
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        expected = model
    loaded = load_lightningdit(path)
    assert loaded.config == expected.config
    x, t, y = torch.randn(3, 8, 8, 8), torch.rand(3), torch.tensor([1, 5, 999])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, y), expected(x, t, y), rtol=0, atol=0)


def test_sizes_and_options_are_inferred_from_shapes():
    for overrides in ({}, {"use_qknorm": True}, {"wo_shift": True}, {"use_swiglu": False}, {"use_rmsnorm": False}):
        config = tiny_model(**overrides).config
        assert infer_config(LightningDiT(config).state_dict()) == config, overrides
    from tokbench.generation.model import DiTConfig

    assert infer_config(LightningDiT(dit_config("B/1", 8, input_size=4, use_rope=False)).state_dict()).num_heads == 12
    odd = DiTConfig(depth=1, hidden_size=96, num_heads=3, patch_size=1, in_channels=4, input_size=4, use_rope=False)
    no_rope = LightningDiT(odd).state_dict()  # 96 wide: no registry size to take the heads from
    with pytest.raises(TokbenchError, match="pass num_heads"):
        infer_config(no_rope)
    assert infer_config(no_rope, num_heads=3) == odd


def test_mismatches_are_named(tmp_path):
    state = tiny_model().state_dict()
    state.pop("blocks.1.mlp.w3.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(TokbenchError, match=r"missing keys \(1\): blocks.1.mlp.w3.bias; unexpected keys \(1\): extra.weight"):
        load_lightningdit(state)
    with pytest.raises(MissingAssetError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pt")


def test_label_dropout_uses_the_null_row():
    model = tiny_model()
    x, t = torch.randn(2, 8, 8, 8), torch.rand(2)
    y = torch.tensor([3, 4])
    with torch.no_grad():
        dropped = model(x, t, y, drop_labels=torch.tensor([True, False]))
        null = model(x, t, torch.tensor([1000, 4]))
    torch.testing.assert_close(dropped, null)


def test_unknown_size_is_explained():
    with pytest.raises(ValueError, match="unknown LightningDiT size 'XXL/1'"):
        dit_config("XXL/1", 32)
