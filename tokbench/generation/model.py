"""LightningDiT in the official checkpoint layout (hustvl/LightningDiT ``models/lightningdit.py``).

Same module tree, parameter names and shapes as the released checkpoints, for any latent
channel count: ``x_embedder.proj``, ``t_embedder.mlp.{0,2}``, ``y_embedder.embedding_table``,
``pos_embed`` (fixed 2-D sin-cos, a non-trainable parameter), ``feat_rope.freqs_{cos,sin}``
(persistent buffers), ``blocks.{i}.{norm1,norm2,attn.qkv,attn.proj,mlp.w12,mlp.w3,
adaLN_modulation.1}``, ``final_layer.{norm_final,linear,adaLN_modulation.1}``.

Blocks: adaLN-Zero, RMSNorm (fp32 inside), SwiGLU (hidden ⌊2/3 · 4D⌋), multi-head attention
with biased qkv through ``scaled_dot_product_attention``, 2-D axial RoPE (EVA-style, theta 1e4)
on q and k plus the absolute sin-cos embedding at the input. Output: velocity (no learned sigma).
Time is SiT's continuous t in [0, 1] with t = 0 noise and t = 1 data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tokbench.nn.layers import RMSNorm

FREQUENCY_EMBEDDING = 256


@dataclass(frozen=True)
class DiTConfig:
    depth: int
    hidden_size: int
    num_heads: int
    patch_size: int
    in_channels: int = 32
    input_size: int = 16  # latent side
    num_classes: int = 1000
    class_dropout_prob: float = 0.1
    mlp_ratio: float = 4.0
    use_qknorm: bool = False
    use_swiglu: bool = True
    use_rope: bool = True
    use_rmsnorm: bool = True
    wo_shift: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.input_size % self.patch_size:
            raise ValueError(f"latent side {self.input_size} is not divisible by patch size {self.patch_size}")
        if self.use_rope and (self.hidden_size // self.num_heads) % 4:
            raise ValueError("2-D RoPE needs a head dimension divisible by 4")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid(self) -> int:
        return self.input_size // self.patch_size

    @property
    def tokens(self) -> int:
        return self.grid**2

    @property
    def mlp_hidden(self) -> int:
        hidden = int(self.hidden_size * self.mlp_ratio)
        return int(2 / 3 * hidden) if self.use_swiglu else hidden

    def to_dict(self) -> dict:
        return asdict(self)


#: (depth, width, heads) of the registry sizes; patch size from the name's "/p"
SIZES: dict[str, tuple[int, int, int]] = {
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
    "1p0B": (24, 1536, 24),
    "1p6B": (28, 1792, 28),
    # CPU sizes for tests and the quickstart (not in the official registry)
    "tiny": (4, 128, 4),
    "micro": (2, 64, 2),
}


def dit_config(name: str, in_channels: int, input_size: int = 16, **overrides) -> DiTConfig:
    """``"XL/1"``, ``"B/2"``, ``"tiny/1"`` ... with the latent's channels and side."""
    size, _, patch = name.partition("/")
    if size not in SIZES or not patch.isdigit():
        raise ValueError(f"unknown LightningDiT size {name!r}; use <size>/<patch> with size in {', '.join(SIZES)}")
    depth, width, heads = SIZES[size]
    return DiTConfig(depth=depth, hidden_size=width, num_heads=heads, patch_size=int(patch),
                     in_channels=in_channels, input_size=input_size, **overrides)


# ---- positional encodings (float arithmetic as the reference) ------------------------------


def sincos_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    """DiT/MAE 2-D sin-cos table (grid_size², embed_dim): first half from the column
    coordinate, second half from the row coordinate (``np.meshgrid(w, h)``), float64."""
    if embed_dim % 4:
        raise ValueError(f"sin-cos embedding needs a width divisible by 4, got {embed_dim}")
    coords = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(coords, coords), axis=0).reshape(2, -1)  # (2, N): x then y

    def one_axis(positions: np.ndarray) -> np.ndarray:
        omega = np.arange(embed_dim // 4, dtype=np.float64) / (embed_dim / 4.0)
        angles = np.einsum("m,d->md", positions, 1.0 / 10000**omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([one_axis(grid[0]), one_axis(grid[1])], axis=1)


class AxialRoPE(nn.Module):
    """EVA-02 ``VisionRotaryEmbeddingFast(dim=head_dim/2, pt_seq_len=grid)``: interleaved pairs,
    row frequencies in the first half of the head dimension, column frequencies in the second."""

    def __init__(self, head_dim: int, grid: int, theta: float = 10000.0):
        super().__init__()
        dim = head_dim // 2
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        positions = torch.arange(grid) / grid * grid
        angles = torch.einsum("..., f -> ... f", positions, freqs).repeat_interleave(2, dim=-1)  # (grid, dim)
        table = torch.cat([angles[:, None, :].expand(grid, grid, dim), angles[None, :, :].expand(grid, grid, dim)], dim=-1)
        self.register_buffer("freqs_cos", table.cos().reshape(-1, head_dim))
        self.register_buffer("freqs_sin", table.sin().reshape(-1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return x * self.freqs_cos + rotated * self.freqs_sin


# ---- layers ------------------------------------------------------------------------------------


def _norm(config: DiTConfig, dim: int) -> nn.Module:
    return RMSNorm(dim, eps=1e-6) if config.use_rmsnorm else nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def modulate(x: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor) -> torch.Tensor:
    x = x * (1 + scale.unsqueeze(1))
    return x if shift is None else x + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        p = config.patch_size
        self.proj = nn.Conv2d(config.in_channels, config.hidden_size, kernel_size=p, stride=p, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=True)
        self.q_norm = _norm(config, self.head_dim) if config.use_qknorm else nn.Identity()
        self.k_norm = _norm(config, self.head_dim) if config.use_qknorm else nn.Identity()
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, rope: AxialRoPE | None) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, width))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class Mlp(nn.Module):
    """timm ``Mlp`` with tanh-GELU (``use_swiglu: false``); keys fc1 / fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        width = config.hidden_size
        self.norm1, self.norm2 = _norm(config, width), _norm(config, width)
        self.attn = Attention(config)
        self.mlp = SwiGLU(width, config.mlp_hidden) if config.use_swiglu else Mlp(width, config.mlp_hidden)
        self.wo_shift = config.wo_shift
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, (4 if config.wo_shift else 6) * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: AxialRoPE | None) -> torch.Tensor:
        if self.wo_shift:
            scale_msa, gate_msa, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(4, dim=1)
            shift_msa = shift_mlp = None
        else:
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope)
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_EMBEDDING, width), nn.SiLU(), nn.Linear(width, width))

    @staticmethod
    def frequencies(t: torch.Tensor, dim: int = FREQUENCY_EMBEDDING, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.frequencies(t).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Row ``num_classes`` is the null label used for classifier-free guidance."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.num_classes = config.num_classes
        self.dropout_prob = config.class_dropout_prob
        self.embedding_table = nn.Embedding(config.num_classes + (config.class_dropout_prob > 0), config.hidden_size)

    def forward(self, labels: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        if drop is not None:
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


class FinalLayer(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        width, p = config.hidden_size, config.patch_size
        self.norm_final = _norm(config, width)
        self.linear = nn.Linear(width, p * p * config.in_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class LightningDiT(nn.Module):
    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        self.x_embedder = PatchEmbed(config)
        self.t_embedder = TimestepEmbedder(config.hidden_size)
        self.y_embedder = LabelEmbedder(config)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.tokens, config.hidden_size), requires_grad=False)
        self.feat_rope = AxialRoPE(config.head_dim, config.grid) if config.use_rope else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.final_layer = FinalLayer(config)
        self.gradient_checkpointing = False
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: xavier Linears, adaLN and the output layer zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.pos_embed.data.copy_(torch.from_numpy(sincos_pos_embed(self.config.hidden_size, self.config.grid)).float()[None])
        weight = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, c, grid = self.config.patch_size, self.config.in_channels, self.config.grid
        x = x.reshape(x.shape[0], grid, grid, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, grid * p, grid * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, drop_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity at time ``t`` (B,) in [0, 1] (0 = noise) for latents ``x`` (B, C, H, W) and labels
        ``y`` (B,); ``drop_labels`` (B,) bool replaces labels by the null class (CFG training)."""
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, drop_labels)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, c, self.feat_rope, use_reentrant=False)
            else:
                x = block(x, c, self.feat_rope)
        return self.unpatchify(self.final_layer(x, c))
