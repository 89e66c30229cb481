"""Frozen encoders: HF's position interpolation, the norm without affine, weight formats, offline errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tokbench.errors import MissingAssetError
from tokbench.nn.checkpoints import CheckpointFormatError
from tokbench_rae.encoder import hf_dinov2_to_timm, load_timm_encoder
from rae_test_helpers import small_encoder, small_vit


def hf_layout(vit) -> dict[str, torch.Tensor]:
    """timm weights renamed to HF ``Dinov2WithRegistersModel`` keys (the layout of facebook/dinov2-with-registers-*)."""
    state = vit.state_dict()
    width = state["cls_token"].shape[-1]
    cls_position = torch.randn(1, 1, width) * 0.02  # HF keeps a CLS position row; timm folds it into cls_token
    out = {
        "embeddings.cls_token": state["cls_token"] - cls_position,
        "embeddings.mask_token": torch.zeros(1, width),
        "embeddings.register_tokens": state["reg_token"],
        "embeddings.position_embeddings": torch.cat([cls_position, state["pos_embed"]], dim=1),
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"], "layernorm.bias": state["norm.bias"],
    }
    for i in range(len(vit.blocks)):
        b, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = state[f"{b}attn.qkv.{kind}"].chunk(3)
            out.update({f"{h}attention.attention.query.{kind}": q, f"{h}attention.attention.key.{kind}": k,
                        f"{h}attention.attention.value.{kind}": v,
                        f"{h}attention.output.dense.{kind}": state[f"{b}attn.proj.{kind}"],
                        f"{h}norm1.{kind}": state[f"{b}norm1.{kind}"], f"{h}norm2.{kind}": state[f"{b}norm2.{kind}"],
                        f"{h}mlp.fc1.{kind}": state[f"{b}mlp.fc1.{kind}"], f"{h}mlp.fc2.{kind}": state[f"{b}mlp.fc2.{kind}"]})
        out[f"{h}layer_scale1.lambda1"] = state[f"{b}ls1.gamma"]
        out[f"{h}layer_scale2.lambda1"] = state[f"{b}ls2.gamma"]
    return out


def test_latent_is_the_hf_pipeline_at_another_grid():
    """Position table resampled as HF Dinov2WithRegisters does (bicubic, antialias, size=), CLS and
    registers prepended after positions, last block, LayerNorm without affine, 5 prefix tokens dropped."""
    encoder = small_encoder()
    vit = encoder.vit
    pixels = torch.randn(2, 3, 16, 16)  # 4x4 grid; the table is 6x6
    with torch.no_grad():
        x = vit.patch_embed(pixels).flatten(1, 2)
        table = vit.pos_embed.reshape(1, 6, 6, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(4, 4), mode="bicubic", align_corners=False, antialias=True)
        x = x + table.permute(0, 2, 3, 1).reshape(1, 16, -1)
        x = torch.cat([vit.cls_token.expand(2, -1, -1), vit.reg_token.expand(2, -1, -1), x], dim=1)
        for block in vit.blocks:
            x = block(x)
        expected = F.layer_norm(x, (32,), eps=1e-6)[:, 5:]
        assert torch.allclose(encoder.latent_tokens(pixels), expected, atol=1e-6)
        features = encoder.final_norm(x)
        assert not torch.allclose(features, F.layer_norm(x, (32,), eps=1e-6))  # the affine is kept for features


def test_hf_weights_convert_exactly():
    vit = small_vit(seed=2)
    converted = hf_dinov2_to_timm(hf_layout(vit))
    assert set(converted) == set(vit.state_dict())
    for key, value in vit.state_dict().items():
        assert torch.allclose(converted[key], value, atol=1e-7), key
    extra = dict(hf_layout(vit), **{"pooler.dense.weight": torch.zeros(1)})
    with pytest.raises(CheckpointFormatError, match="no timm counterpart: pooler.dense.weight"):
        hf_dinov2_to_timm(extra)
    missing = hf_layout(vit)
    del missing["embeddings.register_tokens"]
    with pytest.raises(CheckpointFormatError, match="lack 'embeddings.register_tokens'"):
        hf_dinov2_to_timm(missing)


def test_local_weights_in_timm_and_hf_layouts(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    import tokbench_rae.encoder as encoder_module

    vit = small_vit(seed=4)
    monkeypatch.setattr(encoder_module, "create_timm_vit", lambda name: small_vit(seed=9))
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "timm.safetensors"))
    save_file({k: v.contiguous() for k, v in hf_layout(vit).items()}, str(tmp_path / "hf.safetensors"))
    pixels = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        expected = encoder_module.TimmViTEncoder(vit, "x").latent_tokens(pixels)
        for name in ("timm.safetensors", "hf.safetensors"):
            loaded = load_timm_encoder("test-vit", str(tmp_path / name))
            assert not any(p.requires_grad for p in loaded.parameters())
            assert torch.allclose(loaded.latent_tokens(pixels), expected, atol=1e-5), name


def test_missing_encoder_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(MissingAssetError) as info:
        load_timm_encoder("vit_base_patch14_reg4_dinov2.lvd142m")  # offline, empty hub cache (conftest)
    message = str(info.value)
    assert "timm/vit_base_patch14_reg4_dinov2.lvd142m" in message
    assert "hf download timm/vit_base_patch14_reg4_dinov2.lvd142m model.safetensors" in message
    assert "encoder_checkpoint:" in message
    with pytest.raises(MissingAssetError, match="encoder_checkpoint .*nope.pth.* does not exist"):
        load_timm_encoder("vit_base_patch14_reg4_dinov2.lvd142m", str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="not_a_model"):
        from tokbench_rae.encoder import create_timm_vit

        create_timm_vit("not_a_model")


def test_vtp_trunk_latent_is_rms_normalised_without_scale():
    from tokbench_rae.encoder import VTPTrunkEncoder
    from tokbench_vtp.model.config import VTPArchitecture
    from tokbench_vtp.model.vtp import VTPModel

    arch = VTPArchitecture(patch_size=8, vision_width=64, vision_depth=2, vision_heads=2, bottleneck=8,
                           with_decoder=False, with_text=False)
    torch.manual_seed(0)
    trunk = VTPModel(arch).trunk.eval()
    with torch.no_grad():
        trunk.norm.weight.mul_(3.0)
        encoder = VTPTrunkEncoder(trunk)
        pixels = torch.randn(2, 3, 32, 32)
        tokens = encoder.latent_tokens(pixels)
        assert tokens.shape == (2, 16, 64)
        assert torch.allclose(tokens.pow(2).mean(-1), torch.ones(2, 16), atol=1e-4)  # unit RMS, no learned scale
        assert torch.allclose(encoder.final_norm(trunk.intermediate(pixels, [1])[0])[:, 1:], 3 * tokens, atol=1e-5)
