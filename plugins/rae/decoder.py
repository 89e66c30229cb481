"""RAE's ``GeneralDecoder``: an MAE-style ViT from encoder tokens to pixels.

Module names follow the released ``model.pt`` exactly (HF ``ViTMAELayer`` naming), so
``state_dict()`` *is* the official checkpoint layout::

    decoder_embed.{weight,bias}             Linear(latent_dim -> hidden)
    decoder_pos_embed                       (1, 1 + grid², hidden), fixed 2-D sin-cos (row 0: CLS, zeros)
    decoder_layers.{i}.layernorm_before / attention.attention.{query,key,value} /
        attention.output.dense / layernorm_after / intermediate.dense / output.dense
    decoder_norm.{weight,bias}              LayerNorm(eps 1e-12)
    decoder_pred.{weight,bias}              Linear(hidden -> patch² · 3)
    trainable_cls_token                     (1, 1, hidden), zero at initialisation

Forward: embed, prepend the CLS token, add the position table, pre-norm blocks (exact GELU),
final norm, predict, drop CLS, unpatchify. Output is in ImageNet-normalised space.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tokbench.nn.checkpoints import CheckpointFormatError
from tokbench_rae.sizes import LAYER_NORM_EPS, DecoderConfig, heads_for_width


def sincos_table(width: int, grid: int) -> np.ndarray:
    """MAE's ``get_2d_sincos_pos_embed(width, grid, add_cls_token=True)``: a zero CLS row, then
    the grid² rows of tokbench's shared DiT/MAE table (column coordinate in the first half)."""
    from tokbench.generation.model import sincos_pos_embed

    return np.concatenate([np.zeros((1, width)), sincos_pos_embed(width, grid)], axis=0)


class SelfAttention(nn.Module):
    """``ViTMAESelfAttention`` weights, computed with ``scaled_dot_product_attention``."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, hidden = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(batch, tokens, self.heads, hidden // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return out.transpose(1, 2).reshape(batch, tokens, hidden)


class _Dense(nn.Module):
    """A module holding one ``dense`` Linear (HF's ``ViTSelfOutput`` / ``ViTIntermediate`` / ``ViTOutput``)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(x)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.output = _Dense(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.attention(x))


class DecoderLayer(nn.Module):
    """``ViTMAELayer``: x + attn(LN(x)); then + fc2(gelu(fc1(LN(x))))."""

    def __init__(self, hidden: int, heads: int, intermediate: int):
        super().__init__()
        self.attention = Attention(hidden, heads)
        self.intermediate = _Dense(hidden, intermediate)
        self.output = _Dense(intermediate, hidden)
        self.layernorm_before = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.layernorm_after = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.layernorm_before(x))
        return x + self.output(F.gelu(self.intermediate(self.layernorm_after(x))))


class GeneralDecoder(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        c = config
        self.decoder_embed = nn.Linear(c.latent_dim, c.hidden)
        # A parameter (not a buffer) because the released state dict stores it; never trained.
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, c.num_patches + 1, c.hidden), requires_grad=False)
        self.decoder_layers = nn.ModuleList(DecoderLayer(c.hidden, c.heads, c.intermediate) for _ in range(c.layers))
        self.decoder_norm = nn.LayerNorm(c.hidden, eps=LAYER_NORM_EPS)
        self.decoder_pred = nn.Linear(c.hidden, c.patch_size**2 * c.channels)
        self.trainable_cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden))
        if self.decoder_pos_embed.device.type != "meta":
            with torch.no_grad():
                self.decoder_pos_embed.copy_(torch.from_numpy(sincos_table(c.hidden, c.grid)).float().unsqueeze(0))

    @torch.no_grad()
    def init_weights(self) -> None:
        """MAE decoder init for training from scratch: xavier-uniform Linear, zero biases, unit LayerNorm."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.trainable_cls_token)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, grid², latent_dim) tokens -> (B, grid², patch² · 3) patch predictions (CLS dropped)."""
        if tokens.shape[1] != self.config.num_patches:
            raise ValueError(
                f"this decoder was built for {self.config.grid}x{self.config.grid} tokens "
                f"({self.config.image_size} px); got {tokens.shape[1]} tokens"
            )
        x = self.decoder_embed(tokens)
        x = torch.cat([self.trainable_cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.decoder_pos_embed
        for layer in self.decoder_layers:
            x = layer(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def unpatchify(self, patches: Tensor) -> Tensor:
        """(B, grid², p²·3) -> (B, 3, grid·p, grid·p); each patch row-major over (p, p, channel)."""
        c = self.config
        batch = patches.shape[0]
        x = patches.reshape(batch, c.grid, c.grid, c.patch_size, c.patch_size, c.channels)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(batch, c.channels, c.image_size, c.image_size)

    def decode_grid(self, latents: Tensor) -> Tensor:
        """Raw latents (B, C, grid, grid) -> ImageNet-normalised images (B, 3, grid·p, grid·p)."""
        return self.unpatchify(self(latents.flatten(2).transpose(1, 2)))


# ---- the official checkpoint -------------------------------------------------------------------
_LAYER = re.compile(r"^decoder_layers\.(\d+)\.")


def infer_decoder_config(state: Mapping[str, Tensor], heads: int | None = None, source: str = "decoder") -> DecoderConfig:
    """The decoder size a state dict holds (heads from ``heads`` or the width; see tokbench_rae.sizes)."""
    required = ("decoder_embed.weight", "decoder_pos_embed", "decoder_pred.weight",
                "decoder_layers.0.intermediate.dense.weight")
    missing = [key for key in required if key not in state]
    if missing:
        found = sorted(state)[:6]
        raise CheckpointFormatError(
            f"{source} is not an RAE GeneralDecoder state dict: missing {', '.join(missing)} (found {found} ...). "
            "Expected the raw decoder state dict of `model.pt` (src/extract_decoder.py output), not a training checkpoint"
        )
    hidden, latent_dim = state["decoder_embed.weight"].shape
    positions = state["decoder_pos_embed"].shape[1] - 1
    grid = int(round(positions**0.5))
    outputs = state["decoder_pred.weight"].shape[0]
    patch = int(round((outputs / 3) ** 0.5))
    if grid * grid != positions or 3 * patch * patch != outputs:
        raise CheckpointFormatError(
            f"{source}: decoder_pos_embed has {positions} patch positions and decoder_pred {outputs} outputs; "
            "expected a square grid and patch² · 3 RGB outputs"
        )
    indices = sorted({int(m.group(1)) for key in state if (m := _LAYER.match(key))})
    if indices != list(range(len(indices))):
        raise CheckpointFormatError(f"{source}: decoder_layers indices are not contiguous: {indices}")
    try:
        return DecoderConfig(
            latent_dim=int(latent_dim), hidden=int(hidden), layers=len(indices),
            heads=heads if heads is not None else heads_for_width(int(hidden)),
            intermediate=int(state["decoder_layers.0.intermediate.dense.weight"].shape[0]),
            patch_size=patch, grid=grid,
        )
    except ValueError as error:
        raise CheckpointFormatError(f"{source}: {error}") from None


def load_decoder(state: Mapping[str, Tensor], heads: int | None = None, source: str = "decoder") -> GeneralDecoder:
    """A ``GeneralDecoder`` sized from ``state`` and loaded strictly (every missing, unexpected or
    mis-shaped key named). The reference loads with ``strict=False``; a silent partial load
    would make every downstream number wrong, so this never does."""
    from tokbench.nn.checkpoints import strict_load

    config = infer_decoder_config(state, heads, source)
    decoder = GeneralDecoder(config)
    strict_load(decoder, {k: v.float() for k, v in state.items()}, source=source)
    return decoder.eval().requires_grad_(False)


def read_decoder_file(path, heads: int | None = None) -> GeneralDecoder:
    """A released (or locally trained) ``model.pt``: a raw ``GeneralDecoder`` state dict."""
    from tokbench.nn.checkpoints import pick_state_dict, read_checkpoint

    data = read_checkpoint(path, what="RAE decoder", how_to_get=DECODER_HINT)
    # extract_decoder.py writes the raw dict; a full stage-1 checkpoint has model/ema: use its EMA.
    state = pick_state_dict(data, prefer=("ema", "model"), source=str(path))
    return load_decoder(state, heads, source=str(path))


DECODER_HINT = (
    "the released decoders are in the Hugging Face repo nyu-visionx/RAE-collections, e.g. "
    "models/decoders/dinov2/wReg_base/ViTXL_n08/model.pt "
    "(`hf download nyu-visionx/RAE-collections models/decoders/dinov2/wReg_base/ViTXL_n08/model.pt --local-dir ./weights/rae`)"
)
