"""Key layouts of the LDM/taming convolutional autoencoder family, and diffusers'.

VA-VAE (LDM KL-VAE), taming VQGAN and LlamaGen's VQ tokenizers share one conv
skeleton (ResNet blocks, single-head attention at the lowest resolution and in the
mid block, GroupNorm + swish), written three ways:

- ``ldm``: taming / latent-diffusion names: ``encoder.down.{i}.block.{j}``,
  ``encoder.down.{i}.attn.{j}``, ``mid.block_1/attn_1/block_2``, ``decoder.up.{i}``
  numbered by resolution level (``up.{L-1}`` runs first), attention projections as
  1x1 convs, ``nin_shortcut``, ``norm_out``;
- ``llamagen``: ``{encoder,decoder}.conv_blocks.{k}.res.{j}`` / ``.attn.{j}`` in
  processing order, ``mid.0/1/2``;
- ``diffusers``: ``down_blocks.{i}.resnets.{j}``, ``.attentions.{j}`` (Linear
  ``to_q/to_k/to_v/to_out.0``, ``group_norm``), ``up_blocks.{k}`` in processing order,
  ``mid_block``, ``conv_shortcut``, ``conv_norm_out``.

Every name is parsed into one canonical description and rendered in the other layout,
so the maps are exact inverses. Non-skeleton keys (``quant_conv``, ``post_quant_conv``,
``quantize.embedding.weight``, ...) pass through unchanged. diffusers models built with
:func:`diffusers_block_types` compute what the LDM modules compute (checked against the
reference code; see the plugins' READMEs for the figures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Mapping

Layout = Literal["ldm", "llamagen", "diffusers"]
LAYOUTS: tuple[str, ...] = ("ldm", "llamagen", "diffusers")

_ATTENTION_LEAVES = {"ldm": ("norm", "q", "k", "v", "proj_out"),
                     "llamagen": ("norm", "q", "k", "v", "proj_out"),
                     "diffusers": ("group_norm", "to_q", "to_k", "to_v", "to_out.0")}
_SHORTCUT = {"ldm": "nin_shortcut", "llamagen": "nin_shortcut", "diffusers": "conv_shortcut"}
_NORM_OUT = {"ldm": "norm_out", "llamagen": "norm_out", "diffusers": "conv_norm_out"}
#: mid-block members in order: resnet 0, attention 0, resnet 1
_MID = {"ldm": ("mid.block_1", "mid.attn_1", "mid.block_2"),
        "llamagen": ("mid.0", "mid.1", "mid.2"),
        "diffusers": ("mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1")}
_MID_ROLES = (("resnet", 0), ("attention", 0), ("resnet", 1))


@dataclass(frozen=True)
class _Name:
    part: str  # "encoder" or "decoder"
    where: str  # "level", "mid" or "top" (conv_in, norm_out, conv_out)
    level: int = -1  # processing order: encoder level i, decoder stage k (k = 0 at the lowest resolution)
    block: str = ""  # "resnet", "attention" or "resample"
    index: int = 0
    leaf: str = ""  # e.g. "conv1.weight", "q.weight" (layout-specific spelling normalised to canonical)


def diffusers_block_types(
    levels: int,
    attention_levels: set[int] | frozenset[int] = frozenset(),
    decoder_attention_levels: set[int] | frozenset[int] | None = None,
) -> tuple[list[str], list[str]]:
    """``down_block_types`` and ``up_block_types`` for a skeleton of ``levels`` levels with
    attention at the encoder levels in ``attention_levels`` (0 = full resolution) and at the
    decoder levels in ``decoder_attention_levels`` (same numbering; default: the encoder's)."""
    decoder_levels = attention_levels if decoder_attention_levels is None else decoder_attention_levels
    down = ["AttnDownEncoderBlock2D" if i in attention_levels else "DownEncoderBlock2D" for i in range(levels)]
    up = ["AttnUpDecoderBlock2D" if levels - 1 - k in decoder_levels else "UpDecoderBlock2D" for k in range(levels)]
    return down, up


def convert(state: Mapping, source: Layout, target: Layout, levels: int) -> dict:
    """``state`` with its skeleton keys renamed from layout ``source`` to ``target`` (values
    reshaped where attention projections change between 1x1 conv and Linear)."""
    for layout in (source, target):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    out = {}
    for key, value in state.items():
        name = _parse(key, source, levels)
        if name is None:
            out[key] = value
            continue
        new_key = _render(name, target, levels)
        if name.block == "attention" and name.leaf.endswith(".weight") and not name.leaf.startswith("norm"):
            if target == "diffusers" and value.ndim == 4:
                value = value[:, :, 0, 0]
            elif target != "diffusers" and value.ndim == 2:
                value = value[:, :, None, None]
        out[new_key] = value
    return out


# ---- parsing ---------------------------------------------------------------------------------
def _canonical_leaf(leaf: str, block: str, layout: str) -> str:
    if block == "attention":
        for canonical, spelled in zip(_ATTENTION_LEAVES["ldm"], _ATTENTION_LEAVES[layout]):
            if leaf.startswith(spelled + "."):
                return canonical + leaf[len(spelled):]
        return leaf
    if block == "resnet" and leaf.startswith(_SHORTCUT[layout] + "."):
        return "nin_shortcut" + leaf[len(_SHORTCUT[layout]):]
    return leaf


def _parse(key: str, layout: str, levels: int) -> _Name | None:
    part, dot, rest = key.partition(".")
    if part not in ("encoder", "decoder") or not dot:
        return None
    for (block, index), spelled in zip(_MID_ROLES, _MID[layout]):
        if rest.startswith(spelled + "."):
            leaf = rest[len(spelled) + 1:]
            return _Name(part, "mid", block=block, index=index, leaf=_canonical_leaf(leaf, block, layout))
    if rest.startswith(_NORM_OUT[layout] + "."):
        return _Name(part, "top", leaf="norm_out" + rest[len(_NORM_OUT[layout]):])
    match = _LEVEL_PATTERNS[layout].match(rest)
    if match is None:
        return None  # conv_in / conv_out and anything unknown keep their names
    group, level, kind, index, leaf = match.groups()
    level = int(level)
    if layout == "ldm" and group == "up":
        level = levels - 1 - level
    block = _BLOCK_KIND[kind]
    index = int(index) if index is not None else 0
    return _Name(part, "level", level, block, index, _canonical_leaf(leaf, block, layout))


_LEVEL_PATTERNS = {
    "ldm": re.compile(r"^(down|up)\.(\d+)\.(block|attn|downsample|upsample)\.(?:(\d+)\.)?(.+)$"),
    "llamagen": re.compile(r"^(conv_blocks)\.(\d+)\.(res|attn|downsample|upsample)\.(?:(\d+)\.)?(.+)$"),
    "diffusers": re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)$"),
}
_BLOCK_KIND = {"block": "resnet", "res": "resnet", "resnets": "resnet", "attn": "attention", "attentions": "attention",
               "downsample": "resample", "upsample": "resample", "downsamplers": "resample", "upsamplers": "resample"}


# ---- rendering -------------------------------------------------------------------------------
def _spelled_leaf(name: _Name, layout: str) -> str:
    leaf = name.leaf
    if name.block == "attention":
        for canonical, spelled in zip(_ATTENTION_LEAVES["ldm"], _ATTENTION_LEAVES[layout]):
            if leaf.startswith(canonical + "."):
                return spelled + leaf[len(canonical):]
    if name.block == "resnet" and leaf.startswith("nin_shortcut."):
        return _SHORTCUT[layout] + leaf[len("nin_shortcut"):]
    return leaf


def _render(name: _Name, layout: str, levels: int) -> str:
    leaf = _spelled_leaf(name, layout)
    if name.where == "top":
        return f"{name.part}.{_NORM_OUT[layout]}{name.leaf[len('norm_out'):]}"
    if name.where == "mid":
        spelled = _MID[layout][_MID_ROLES.index((name.block, name.index))]
        return f"{name.part}.{spelled}.{leaf}"
    encoder = name.part == "encoder"
    if layout == "diffusers":
        group = "down_blocks" if encoder else "up_blocks"
        kind = {"resnet": "resnets", "attention": "attentions", "resample": "downsamplers" if encoder else "upsamplers"}[name.block]
        return f"{name.part}.{group}.{name.level}.{kind}.{name.index}.{leaf}"
    resample = "downsample" if encoder else "upsample"
    if layout == "llamagen":
        kind = {"resnet": "res", "attention": "attn", "resample": resample}[name.block]
        middle = f"conv_blocks.{name.level}.{kind}"
    else:
        level = name.level if encoder else levels - 1 - name.level
        kind = {"resnet": "block", "attention": "attn", "resample": resample}[name.block]
        middle = f"{'down' if encoder else 'up'}.{level}.{kind}"
    if name.block == "resample":
        return f"{name.part}.{middle}.{leaf}"
    return f"{name.part}.{middle}.{name.index}.{leaf}"


__all__ = ["LAYOUTS", "Layout", "convert", "diffusers_block_types"]
