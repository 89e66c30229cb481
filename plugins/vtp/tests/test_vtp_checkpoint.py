"""The official checkpoint format: key names and shapes, strict loading, sizes from shapes, RoPE numerics."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tokbench.errors import MissingAssetError
from tokbench_vtp.checkpoint import (
    CheckpointFormatError,
    infer_architecture,
    load_official,
    read_shapes,
    resolve_checkpoint,
    save_official,
)
from tokbench_vtp.model.config import PRESETS, VTPArchitecture
from tokbench_vtp.model.vtp import VTPModel

from vtp_test_helpers import MICRO, micro_model


def official_keys(D: int, depth: int, h: int, text_layers: int = 12, W: int = 768) -> dict[str, tuple[int, ...]]:
    """The key -> shape table of the released checkpoints, written out from the spec (§2.2), not from our model."""
    keys: dict[str, tuple[int, ...]] = {
        "trunk.cls_token": (1, 1, D), "trunk.mask_token": (1, D),
        "trunk.patch_embed.proj.weight": (D, 3, 16, 16), "trunk.patch_embed.proj.bias": (D,),
        "trunk.rope_embed.periods": (16,), "trunk.norm.weight": (D,), "trunk.feature_bottleneck.weight": (64, D),
        "visual_proj.weight": (768, D),
        "pixel_decoder.proj_in.weight": (D, 64, 1, 1), "pixel_decoder.proj_in.bias": (D,),
        "pixel_decoder.rope_embed.periods": (16,),
        "pixel_decoder.norm.weight": (D,), "pixel_decoder.norm.bias": (D,),
        "pixel_decoder.proj_out.weight": (768, D, 1, 1), "pixel_decoder.proj_out.bias": (768,),
        "token_embedding.weight": (49408, W), "positional_embedding": (77, W),
        "ln_final.weight": (W,), "ln_final.bias": (W,), "text_projection": (W, 768), "logit_scale": (),
    }
    for part, norms in (("trunk", ("weight",)), ("pixel_decoder", ("weight", "bias"))):
        for i in range(depth):
            p = f"{part}.blocks.{i}"
            for n in ("norm1", "norm2"):
                for suffix in norms:
                    keys[f"{p}.{n}.{suffix}"] = (D,)
            keys.update({
                f"{p}.attn.qkv.weight": (3 * D, D), f"{p}.attn.qkv.bias": (3 * D,),
                f"{p}.attn.proj.weight": (D, D), f"{p}.attn.proj.bias": (D,),
                f"{p}.mlp.w1.weight": (h, D), f"{p}.mlp.w1.bias": (h,),
                f"{p}.mlp.w2.weight": (h, D), f"{p}.mlp.w2.bias": (h,),
                f"{p}.mlp.w3.weight": (D, h), f"{p}.mlp.w3.bias": (D,),
            })
    for i in range(text_layers):
        p = f"text_transformer.resblocks.{i}"
        keys.update({
            f"{p}.ln_1.weight": (W,), f"{p}.ln_1.bias": (W,), f"{p}.ln_2.weight": (W,), f"{p}.ln_2.bias": (W,),
            f"{p}.attn.in_proj_weight": (3 * W, W), f"{p}.attn.in_proj_bias": (3 * W,),
            f"{p}.attn.out_proj.weight": (W, W), f"{p}.attn.out_proj.bias": (W,),
            f"{p}.mlp.c_fc.weight": (4 * W, W), f"{p}.mlp.c_fc.bias": (4 * W,),
            f"{p}.mlp.c_proj.weight": (W, 4 * W), f"{p}.mlp.c_proj.bias": (W,),
        })
    return keys


RELEASED = {"small": (384, 12, 1024), "base": (768, 12, 2048), "large": (1024, 24, 2736)}


def meta_model(arch: VTPArchitecture) -> VTPModel:
    with torch.device("meta"):
        return VTPModel(arch)


@pytest.mark.parametrize("name", ["small", "base", "large"])
def test_released_presets_have_exactly_the_official_keys_and_shapes(name):
    width, depth, hidden = RELEASED[name]
    expected = official_keys(width, depth, hidden)
    state = meta_model(PRESETS[name]).state_dict()
    assert sorted(set(expected) - set(state)) == [] and sorted(set(state) - set(expected)) == []
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    if name == "large":
        trunk = sum(k.startswith("trunk.") for k in state)
        decoder = sum(k.startswith("pixel_decoder.") for k in state)
        assert (len(state), trunk, decoder, len(state) - trunk - decoder) == (789, 295, 343, 151)


@pytest.mark.parametrize("name", ["small", "base", "large"])
def test_sizes_are_inferred_from_the_official_shapes(name):
    width, depth, hidden = RELEASED[name]
    shapes = official_keys(width, depth, hidden)
    arch = infer_architecture(shapes)
    assert arch == PRESETS[name]
    counts = arch.parameter_count()
    actual = sum(v.numel() for k, v in meta_model(arch).state_dict().items() if not k.endswith("periods"))
    assert counts["total"] == actual
    # The spec's verified counts: encoder 21.6 M / 85.7 M / 303.5 M.
    assert round(counts["trunk"] / 1e6, 1) == {"small": 21.6, "base": 85.7, "large": 303.5}[name]


def test_save_then_strict_load_round_trips_bit_exactly(tmp_path):
    model = micro_model()
    path = save_official(model, tmp_path / "ckpt")
    shapes = read_shapes(path)
    assert shapes["trunk.rope_embed.periods"][1] == "BF16" and shapes["pixel_decoder.rope_embed.periods"][1] == "BF16"
    assert shapes["trunk.cls_token"][1] == "F32"
    loaded = load_official(tmp_path / "ckpt")
    assert loaded.arch == MICRO
    assert loaded.trunk.rope_embed.periods.dtype == torch.bfloat16
    images = torch.randn(2, 3, 32, 32)
    tokens = torch.randint(1, 1000, (2, 77))
    tokens[:, 5] = 49407
    with torch.no_grad():
        assert torch.equal(loaded.get_reconstruction_latents(images), model.get_reconstruction_latents(images))
        assert torch.equal(loaded.get_clip_text_feature(tokens), model.get_clip_text_feature(tokens))
        latents = model.get_reconstruction_latents(images)
        assert torch.equal(loaded.get_latents_decoded_images(latents), model.get_latents_decoded_images(latents))


def test_unexpected_and_missing_keys_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_official(micro_model(), tmp_path / "ckpt")
    state = load_file(str(path))
    state["logit_bias"] = torch.zeros(())
    save_file(state, str(tmp_path / "siglip.safetensors"))
    with pytest.raises(CheckpointFormatError, match="logit_bias"):
        load_official(tmp_path / "siglip.safetensors")
    del state["logit_bias"]
    del state["trunk.blocks.1.mlp.w3.bias"]
    state["trunk.blocks.1.ls1.gamma"] = torch.ones(64)
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(CheckpointFormatError, match="LayerScale"):
        load_official(tmp_path / "broken.safetensors")
    del state["trunk.blocks.1.ls1.gamma"]
    save_file(state, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointFormatError, match=r"missing keys \(1\): trunk\.blocks\.1\.mlp\.w3\.bias"):
        load_official(tmp_path / "missing.safetensors")


def test_components_can_be_left_out(tmp_path):
    save_official(micro_model(), tmp_path / "ckpt")
    trunk_only = load_official(tmp_path / "ckpt", components=())
    assert trunk_only.pixel_decoder is None and not trunk_only.arch.with_text
    assert not any(k.startswith(("pixel_decoder.", "token_embedding")) for k in trunk_only.state_dict())
    with pytest.raises(RuntimeError, match="no text tower"):
        trunk_only.get_clip_text_feature(torch.zeros(1, 77, dtype=torch.long))


def test_head_counts_come_from_config_json(tmp_path):
    arch = MICRO.model_copy(update={"text_heads": 2})
    save_official(micro_model(arch=arch), tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["text_num_heads"] == 2 and config["vision_num_heads"] == 2
    assert load_official(tmp_path / "ckpt").arch.text_heads == 2


def test_missing_checkpoints_say_how_to_get_them(tmp_path):
    with pytest.raises(MissingAssetError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "nope" / "model.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingAssetError, match="has no model.safetensors"):
        resolve_checkpoint(str(tmp_path / "empty"))
    with pytest.raises(MissingAssetError, match="huggingface-cli download MiniMaxAI/VTP-Large-f16d64"):
        resolve_checkpoint("large")


def test_hub_ids_resolve_through_the_hub_cache(tmp_path, monkeypatch):
    """A pre-filled hub cache (what `huggingface-cli download` leaves) is found offline."""
    import tokbench_vtp.checkpoint as checkpoint

    calls = []

    def fake_download(repo_id, filename, revision=None, local_files_only=False):
        calls.append((repo_id, filename, revision, local_files_only))
        target = tmp_path / "cache" / filename
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(b"x")
        return str(target)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    path = checkpoint.resolve_checkpoint("MiniMaxAI/VTP-Small-f16d64", revision="abc")
    assert path.name == "model.safetensors"
    assert calls == [("MiniMaxAI/VTP-Small-f16d64", "model.safetensors", "abc", True)]


def test_rope_periods_and_tables_are_bf16_like_the_checkpoints():
    model = VTPModel(PRESETS["small"])
    periods = model.trunk.rope_embed.periods
    assert periods.dtype == torch.bfloat16
    expected = [1.0, 1.3359375, 1.78125, 2.375, 3.15625, 4.21875, 5.625, 7.5, 10.0, 13.3125, 17.75, 23.75,
                31.625, 42.25, 56.25, 75.0]
    assert periods.tolist() == expected
    sin, cos = model.trunk.rope_embed(2, 3)
    assert sin.dtype == torch.bfloat16 and sin.shape == (6, 64)
    # Independent recomputation: patch centre coordinates in [-1, 1] per axis, angle 2*pi*c/period in bf16,
    # layout [h angles, w angles] repeated twice.
    bf = torch.bfloat16
    coords = torch.tensor([[(2 * ((i + 0.5) / 2) - 1), (2 * ((j + 0.5) / 3) - 1)] for i in range(2) for j in range(3)])
    angles = (2 * math.pi * coords.to(bf)[:, :, None] / torch.tensor(expected, dtype=bf)).flatten(1).tile(2)
    assert torch.equal(sin, torch.sin(angles)) and torch.equal(cos, torch.cos(angles))
    # Row 0 (top-left patch): h and w coordinates are -0.5 and -2/3; the first angle is 2*pi*(-0.5)/1.
    assert abs(float(sin[0, 0]) - math.sin(-math.pi)) < 1e-2 and abs(float(cos[0, 0]) + 1) < 1e-2
    # Casting the model (here to fp64) leaves the tables bit-identical.
    model.double()
    assert all(torch.equal(a, b) for a, b in zip(model.trunk.rope_embed(2, 3), (sin, cos)))


def test_rope_rotation_runs_in_bf16_even_for_fp32_models():
    """Same weights, RoPE in bf16 vs fp32: the latents differ (~1e-4), i.e. the bf16 path is really taken."""
    from tokbench_vtp.model import rope

    model = micro_model()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        bf16_latents = model.get_reconstruction_latents(images)
        model.trunk.rope_embed.dtype = torch.float32
        model.trunk.rope_embed.periods.data = model.trunk.rope_embed.periods.float()
        fp32_latents = model.get_reconstruction_latents(images)
    difference = (bf16_latents - fp32_latents).abs().max().item()
    assert 1e-6 < difference < 1e-1
    assert rope.ROPE_DTYPE == torch.bfloat16


def test_shapes_of_the_official_methods():
    model = micro_model()
    images = torch.randn(2, 3, 32, 48)
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[:, 0], tokens[:, 3] = 49406, 49407
    with torch.no_grad():
        latents = model.get_reconstruction_latents(images)
        assert latents.shape == (2, 8, 4, 6)
        assert model.get_latents_decoded_images(latents).shape == (2, 3, 32, 48)
        assert model.get_clip_image_feature(images).shape == (2, 32)
        assert torch.allclose(model.get_clip_image_feature(images).norm(dim=-1), torch.ones(2))
        assert model.get_clip_text_feature(tokens).shape == (2, 32)
        last = model.get_last_layer_feature(images)
        assert last["cls_token"].shape == (2, 64) and last["patch_tokens"].shape == (2, 24, 64)
        bottleneck = model.get_last_layer_feature(images, use_bottleneck=True)
        assert bottleneck["patch_tokens"].shape == (2, 24, 8)
        # The bottlenecked patch tokens are exactly the latents, row-major over the grid.
        assert torch.allclose(bottleneck["patch_tokens"].transpose(1, 2).reshape(2, 8, 4, 6), latents)
        inter = model.get_intermediate_layers_feature(images, n=2, reshape=True, return_class_token=True)
        assert len(inter) == 2 and inter[1][0].shape == (2, 64, 4, 6) and inter[1][1].shape == (2, 64)
        # The last intermediate layer, normed, is the last-layer feature.
        assert torch.allclose(inter[1][1], last["cls_token"], atol=1e-6)
        logits_i, logits_t = model.get_clip_logits(images, tokens)
        assert torch.equal(logits_i, logits_t.T) and logits_i.shape == (2, 2)


def test_config_json_contradicting_the_tensors_is_named(tmp_path):
    save_official(micro_model(), tmp_path / "ckpt")
    config_path = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_path.read_text())
    config["vision_num_heads"] = 4
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointFormatError, match=r"config.json says vision_heads=4 but the tensors imply 2"):
        load_official(tmp_path / "ckpt")
