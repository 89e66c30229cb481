"""The VTP vision encoder ("trunk"): DINOv3-style ViT with RMSNorm, SwiGLU, 2-D RoPE,
one CLS token, a mask token for iBOT, and the bias-free f16d64 bottleneck."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from tokbench_vtp.model.config import VTPArchitecture
from tokbench_vtp.model.layers import RMS_EPS, Block, RMSNorm
from tokbench_vtp.model.rope import RopePositionEmbedding


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(images)
        height, width = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), height, width


@dataclass
class TrunkOutput:
    """Final-normed features of one crop set (pre-bottleneck, D wide)."""

    cls: Tensor  # (B, D)
    patches: Tensor  # (B, N, D)
    grid: tuple[int, int]
    masks: Tensor | None = None


class VisionTrunk(nn.Module):
    def __init__(self, arch: VTPArchitecture):
        super().__init__()
        width = arch.vision_width
        self.patch_size = arch.patch_size
        self.width = width
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.mask_token = nn.Parameter(torch.zeros(1, width))
        self.patch_embed = PatchEmbed(arch.patch_size, width)
        self.rope_embed = RopePositionEmbedding(width // arch.vision_heads, base=arch.rope_base)
        self.blocks = nn.ModuleList(
            Block(width, arch.vision_heads, arch.vision_hidden, "rmsnorm", arch.vision_qk_norm)
            for _ in range(arch.vision_depth)
        )
        self.norm = RMSNorm(width, eps=RMS_EPS)
        self.feature_bottleneck = nn.Linear(width, arch.bottleneck, bias=False)
        self.activation_checkpointing = False  # a training setting (recipe), not part of the weights

    def tokens(self, images: Tensor, masks: Tensor | None = None) -> tuple[Tensor, int, int]:
        """CLS + patch tokens; masked patches (``masks`` (B, N) bool) replaced by the mask token."""
        x, height, width = self.patch_embed(images)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
            cls = self.cls_token
        else:
            # Keeps mask_token in the graph in unmasked passes (DDP needs every parameter used).
            cls = self.cls_token + 0 * self.mask_token
        return torch.cat([cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1), height, width

    def forward_features(
        self, crops: list[Tensor], masks: list[Tensor | None] | None = None, drop_rate: float = 0.0
    ) -> list[TrunkOutput]:
        """Final-normed features for each crop set (crop sets of different resolutions run
        through the same blocks; each keeps its own RoPE grid)."""
        masks = masks if masks is not None else [None] * len(crops)
        streams, grids = [], []
        for images, mask in zip(crops, masks):
            x, height, width = self.tokens(images, mask)
            streams.append(x)
            grids.append((height, width))
        ropes = [self.rope_embed(h, w) for h, w in grids]
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:  # keep only each block's input; recompute its activations in the backward pass
                streams = [checkpoint(block, x, rope, drop_rate, use_reentrant=False) for x, rope in zip(streams, ropes)]
            else:
                streams = [block(x, rope, drop_rate) for x, rope in zip(streams, ropes)]
        outputs = []
        for x, grid, mask in zip(streams, grids, masks):
            normed = self.norm(x)
            outputs.append(TrunkOutput(cls=normed[:, 0], patches=normed[:, 1:], grid=grid, masks=mask))
        return outputs

    def features(self, images: Tensor, masks: Tensor | None = None, drop_rate: float = 0.0) -> TrunkOutput:
        return self.forward_features([images], [masks], drop_rate)[0]

    def latents(self, images: Tensor, drop_rate: float = 0.0) -> Tensor:
        """(B, C, H/p, W/p): the bottleneck of the final-normed patch tokens, row-major grid."""
        out = self.features(images, drop_rate=drop_rate)
        return self.to_latent_grid(self.feature_bottleneck(out.patches), out.grid)

    @staticmethod
    def to_latent_grid(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        batch, _, channels = tokens.shape
        return tokens.transpose(1, 2).reshape(batch, channels, *grid)

    def intermediate(self, images: Tensor, blocks: list[int]) -> list[Tensor]:
        """Raw (un-normed) token sequences (B, 1+N, D) after the given block indices, in index order."""
        x, height, width = self.tokens(images)
        rope = self.rope_embed(height, width)
        wanted, outputs = set(blocks), []
        for index, block in enumerate(self.blocks):
            x = block(x, rope)
            if index in wanted:
                outputs.append(x)
            if index >= max(blocks):
                break
        return outputs
