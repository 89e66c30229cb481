"""Safe reading of released checkpoint pickles, strict loading, conv-autoencoder key layouts."""

from __future__ import annotations

import argparse
import sys
import types

import pytest
import torch

from tokbench.errors import MissingAssetError
from tokbench.nn.checkpoints import CheckpointFormatError, ForeignObject, pick_state_dict, read_checkpoint, strict_load
from tokbench.nn.conv_layouts import convert, diffusers_block_types


class _Callback:  # pickled under a fake `pytorch_lightning` module name below
    def __init__(self):
        self.best_model_score = 1.25


@pytest.fixture
def lightning_checkpoint(tmp_path, monkeypatch):
    module = types.ModuleType("pytorch_lightning.callbacks")
    _Callback.__module__ = "pytorch_lightning.callbacks"
    _Callback.__qualname__ = "ModelCheckpoint"
    module.ModelCheckpoint = _Callback
    monkeypatch.setitem(sys.modules, "pytorch_lightning", types.ModuleType("pytorch_lightning"))
    monkeypatch.setitem(sys.modules, "pytorch_lightning.callbacks", module)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.arange(4.0)}, "callbacks": [_Callback()], "args": argparse.Namespace(lr=0.1)}, path)
    monkeypatch.delitem(sys.modules, "pytorch_lightning.callbacks")  # the reader must not need it
    monkeypatch.delitem(sys.modules, "pytorch_lightning")
    return path


def test_foreign_globals_become_inert_stand_ins(lightning_checkpoint):
    data = read_checkpoint(lightning_checkpoint)
    assert torch.equal(data["state_dict"]["w"], torch.arange(4.0))
    callback, args = data["callbacks"][0], data["args"]
    assert isinstance(callback, ForeignObject) and callback.qualified_name == "pytorch_lightning.callbacks.ModelCheckpoint"
    assert callback.state == {"best_model_score": 1.25}
    assert isinstance(args, ForeignObject) and args.state == {"lr": 0.1}
    assert pick_state_dict(data) == {"w": data["state_dict"]["w"]}


def test_missing_file_and_missing_state_dict_are_explained(tmp_path):
    with pytest.raises(MissingAssetError, match="VQGAN checkpoint .*absent.ckpt.* does not exist; download it"):
        read_checkpoint(tmp_path / "absent.ckpt", what="VQGAN checkpoint", how_to_get="download it")
    with pytest.raises(CheckpointFormatError, match="no state dict found.*found \\['epoch'\\]"):
        pick_state_dict({"epoch": 3})


def test_pick_state_dict_prefers_in_order():
    ema, model = {"a": torch.ones(1)}, {"a": torch.zeros(1)}
    assert pick_state_dict({"model": model, "ema": ema}) is not model
    assert torch.equal(pick_state_dict({"model": model, "ema": ema})["a"], ema["a"])
    assert torch.equal(pick_state_dict({"model": model, "ema": ema}, prefer=("model",))["a"], model["a"])


def test_strict_load_names_every_kind_of_problem():
    module = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointFormatError) as error:
        strict_load(module, {"weight": torch.zeros(2, 4), "extra": torch.zeros(1)}, source="file.pt")
    message = str(error.value)
    assert "missing keys (1): bias" in message and "unexpected keys (1): extra" in message
    assert "weight: file (2, 4) vs model (2, 3)" in message
    strict_load(module, {"weight": torch.ones(2, 3), "bias": torch.ones(2)})
    assert torch.equal(module.weight, torch.ones(2, 3))


def _vq_model(levels: int = 3, attention: frozenset = frozenset({2})):
    from diffusers import VQModel

    down, up = diffusers_block_types(levels, attention)
    return VQModel(down_block_types=down, up_block_types=up, block_out_channels=(8, 8, 16)[:levels], layers_per_block=2,
                   latent_channels=4, num_vq_embeddings=16, vq_embed_dim=4, norm_num_groups=4)


@pytest.mark.parametrize("layout", ["ldm", "llamagen"])
def test_layouts_round_trip_exactly(layout):
    state = _vq_model().state_dict()
    official = convert(state, "diffusers", layout, levels=3)
    back = convert(official, layout, "diffusers", levels=3)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    assert len(official) == len(state)


def test_layout_names_follow_the_official_conventions():
    ldm = convert(_vq_model().state_dict(), "diffusers", "ldm", levels=3)
    llamagen = convert(_vq_model().state_dict(), "diffusers", "llamagen", levels=3)
    # taming numbers decoder levels by resolution (up.2 runs first); LlamaGen in processing order
    assert tuple(ldm["decoder.up.2.attn.0.q.weight"].shape) == (16, 16, 1, 1)
    assert "decoder.up.2.upsample.conv.weight" in ldm and "decoder.up.0.upsample.conv.weight" not in ldm
    assert "decoder.conv_blocks.0.attn.2.proj_out.weight" in llamagen and "decoder.conv_blocks.0.upsample.conv.weight" in llamagen
    assert {"encoder.mid.block_1.conv1.weight", "encoder.mid.attn_1.norm.weight", "encoder.norm_out.bias",
            "encoder.down.2.block.0.nin_shortcut.weight", "encoder.down.0.downsample.conv.weight"} <= set(ldm)
    assert {"encoder.mid.0.conv1.weight", "encoder.mid.1.q.bias", "encoder.mid.2.norm2.weight",
            "encoder.conv_blocks.0.downsample.conv.weight"} <= set(llamagen)
    assert "quantize.embedding.weight" in ldm and "quant_conv.weight" in llamagen


def test_decoder_attention_levels_can_differ_from_the_encoder():
    down, up = diffusers_block_types(3, {2}, decoder_attention_levels=set())
    assert down == ["DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"]
    assert up == ["UpDecoderBlock2D"] * 3
    with pytest.raises(ValueError, match="unknown layout 'taming'"):
        convert({}, "taming", "diffusers", 3)
