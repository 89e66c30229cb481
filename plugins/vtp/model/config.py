"""``VTPArchitecture``: every size knob of a VTP network, with the released presets.

Importable without torch: recipes and suites validate architectures before any
model is built. Field names follow the official ``VTPConfig`` where one exists
(see the plugin README for the mapping); sizes of an official checkpoint are
inferred from its tensor shapes by :func:`tokbench_vtp.checkpoint.infer_architecture`.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

HEAD_DIM = 64


def swiglu_hidden(width: int, mlp_ratio: float = 4.0, align: int = 8) -> int:
    """SwiGLU hidden width: ``int(width·ratio·2/3)`` rounded up to ``align`` (S 1024, B 2048, L 2736)."""
    hidden = int(int(width * mlp_ratio) * 2 / 3)
    return hidden + (-hidden % align)


class VTPArchitecture(BaseModel):
    """Sizes of the vision trunk, pixel decoder and text tower."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patch_size: PositiveInt = 16
    vision_width: PositiveInt = 768
    vision_depth: PositiveInt = 12
    vision_heads: PositiveInt = 12
    vision_qk_norm: bool = False
    #: latent channels (the f16**d64** in the checkpoint names)
    bottleneck: PositiveInt = 64
    decoder_width: PositiveInt = 768
    decoder_depth: PositiveInt = 12
    decoder_heads: PositiveInt = 12
    decoder_qk_norm: bool = False
    mlp_ratio: float = Field(4.0, gt=0)
    #: whether the network has a pixel decoder / text tower (a checkpoint may lack either)
    with_decoder: bool = True
    with_text: bool = True
    text_width: PositiveInt = 768
    text_depth: PositiveInt = 12
    text_heads: PositiveInt = 12
    text_context_length: PositiveInt = 77
    text_vocab_size: PositiveInt = 49408
    #: CLIP embedding width (``visual_proj`` output, ``text_projection`` columns)
    clip_dim: PositiveInt = 768
    #: where the CLIP image embedding comes from: the normed CLS token or the mean patch token
    clip_feature: Literal["cls", "pooled"] = "cls"
    rope_base: float = Field(100.0, gt=0)
    init_logit_scale: float = math.log(1 / 0.07)

    @model_validator(mode="after")
    def _check(self) -> "VTPArchitecture":
        for prefix in ("vision", "decoder"):
            width, heads = getattr(self, f"{prefix}_width"), getattr(self, f"{prefix}_heads")
            if width % heads:
                raise ValueError(f"{prefix}_width {width} is not divisible by {prefix}_heads {heads}")
            head_dim = width // heads
            if head_dim % 4:
                raise ValueError(
                    f"{prefix} head dim {head_dim} (= {prefix}_width / {prefix}_heads) must be a multiple of 4 "
                    "for the 2-D RoPE (two axes, sin and cos halves)"
                )
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width {self.text_width} is not divisible by text_heads {self.text_heads}")
        return self

    @property
    def vision_hidden(self) -> int:
        return swiglu_hidden(self.vision_width, self.mlp_ratio)

    @property
    def decoder_hidden(self) -> int:
        return swiglu_hidden(self.decoder_width, self.mlp_ratio)

    def latent_side(self, image_size: int) -> int:
        if image_size % self.patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {self.patch_size}")
        return image_size // self.patch_size

    def parameter_count(self) -> dict[str, int]:
        """Parameters per component, computed from the sizes (no torch)."""
        D, Dd, p, c = self.vision_width, self.decoder_width, self.patch_size, self.bottleneck

        def block(width: int, heads: int, hidden: int, norm_params: int, qk_norm: bool) -> int:
            attn = 3 * width * width + 3 * width + width * width + width
            mlp = 2 * (width * hidden + hidden) + hidden * width + width
            return attn + mlp + 2 * norm_params + (2 * (width // heads) if qk_norm else 0)

        vision_block = block(D, self.vision_heads, self.vision_hidden, D, self.vision_qk_norm)
        trunk = 2 * D + D * 3 * p * p + D + self.vision_depth * vision_block + D + D * c
        decoder = 0
        if self.with_decoder:
            decoder_block = block(Dd, self.decoder_heads, self.decoder_hidden, 2 * Dd, self.decoder_qk_norm)
            decoder = c * Dd + Dd + self.decoder_depth * decoder_block
            decoder += 2 * Dd + Dd * 3 * p * p + 3 * p * p
        text = 0
        if self.with_text:
            W = self.text_width
            per_block = 4 * W + 3 * W * W + 3 * W + W * W + W + 2 * (4 * W * W) + 4 * W + W
            text = self.text_vocab_size * W + self.text_context_length * W + self.text_depth * per_block + 2 * W
            text += W * self.clip_dim + D * self.clip_dim + 1
        return {"trunk": trunk, "pixel_decoder": decoder, "text_and_clip": text, "total": trunk + decoder + text}


def _preset(width: int, depth: int, heads: int, **extra) -> VTPArchitecture:
    return VTPArchitecture(
        vision_width=width, vision_depth=depth, vision_heads=heads,
        decoder_width=width, decoder_depth=depth, decoder_heads=heads, **extra,
    )


#: The released f16d64 sizes (decoder symmetric to the encoder) and CPU-sized ones.
PRESETS: dict[str, VTPArchitecture] = {
    "small": _preset(384, 12, 6),
    "base": _preset(768, 12, 12),
    "large": _preset(1024, 24, 16),
    # CPU scale at 64 px: patch 8 (8x8 latents of 16 channels), a small text tower over 32 tokens
    # (the shapes captions are at most 12 words).
    "tiny": _preset(
        128, 4, 2, patch_size=8, bottleneck=16, text_width=128, text_depth=2, text_heads=2, clip_dim=128,
        text_context_length=32,
    ),
}

#: Hub repositories of the released checkpoints, by preset name.
HUB_IDS = {
    "small": "MiniMaxAI/VTP-Small-f16d64",
    "base": "MiniMaxAI/VTP-Base-f16d64",
    "large": "MiniMaxAI/VTP-Large-f16d64",
}


def preset(name: str) -> VTPArchitecture:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown VTP architecture preset {name!r}; choose one of {', '.join(PRESETS)}") from None
