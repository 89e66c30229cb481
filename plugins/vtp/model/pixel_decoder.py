"""The VTP pixel decoder: 1x1 conv in, a ViT (LayerNorm, SwiGLU, 2-D RoPE, no CLS),
final LayerNorm, 1x1 conv to 3·p² channels and PixelShuffle(p). Output is
ImageNet-normalised RGB, unclamped."""

from __future__ import annotations

from torch import Tensor, nn

from tokbench_vtp.model.config import VTPArchitecture
from tokbench_vtp.model.layers import Block
from tokbench_vtp.model.rope import RopePositionEmbedding


class PixelDecoder(nn.Module):
    def __init__(self, arch: VTPArchitecture):
        super().__init__()
        width, patch = arch.decoder_width, arch.patch_size
        self.width = width
        self.proj_in = nn.Conv2d(arch.bottleneck, width, kernel_size=1)
        self.rope_embed = RopePositionEmbedding(width // arch.decoder_heads, base=arch.rope_base)
        self.blocks = nn.ModuleList(
            Block(width, arch.decoder_heads, arch.decoder_hidden, "layernorm", arch.decoder_qk_norm)
            for _ in range(arch.decoder_depth)
        )
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.proj_out = nn.Conv2d(width, 3 * patch * patch, kernel_size=1)
        self.pixel_shuffle = nn.PixelShuffle(patch)

    def forward(self, latents: Tensor, drop_rate: float = 0.0) -> Tensor:
        batch, _, height, width = latents.shape
        x = self.proj_in(latents).flatten(2).transpose(1, 2)
        rope = self.rope_embed(height, width)
        for block in self.blocks:
            x = block(x, rope, drop_rate)
        x = self.norm(x).transpose(1, 2).reshape(batch, self.width, height, width)
        return self.pixel_shuffle(self.proj_out(x))

    @property
    def last_layer(self) -> Tensor:
        """The weight adaptive GAN weighting differentiates against."""
        return self.proj_out.weight
