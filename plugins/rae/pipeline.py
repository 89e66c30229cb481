"""The pixel <-> latent path shared by the tokenizer and decoder training (one implementation).

encode: [0, 1] pixels -> bicubic resize to ``grid x encoder patch`` (RAE: 256 -> 224 for a 16x16
grid; ``F.interpolate(..., mode='bicubic', align_corners=False)`` without antialias, as
``RAE.encode``) -> ImageNet normalisation -> frozen encoder -> last block, norm without affine,
CLS + registers dropped -> (B, C, grid, grid).
decode: raw latent -> ``GeneralDecoder`` -> unpatchify -> ImageNet de-normalisation.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tokbench.nn.layers import imagenet_denormalize, imagenet_normalize
from tokbench_rae.decoder import GeneralDecoder
from tokbench_rae.encoder import FrozenEncoder


def encoder_pixels(images: Tensor, grid: int, encoder_patch: int) -> Tensor:
    """[0, 1] images -> the encoder's ImageNet-normalised input for a ``grid x grid`` latent."""
    side = grid * encoder_patch
    if images.shape[-2:] != (side, side):
        images = F.interpolate(images, size=(side, side), mode="bicubic", align_corners=False)
    return imagenet_normalize(images)


def encode_tokens(encoder: FrozenEncoder, images: Tensor, grid: int) -> Tensor:
    """[0, 1] images -> raw latent tokens (B, grid², C), row-major."""
    return encoder.latent_tokens(encoder_pixels(images, grid, encoder.patch_size))


def tokens_to_grid(tokens: Tensor, grid: int) -> Tensor:
    batch, count, channels = tokens.shape
    if count != grid * grid:
        raise ValueError(f"{count} tokens do not form a {grid}x{grid} grid")
    return tokens.transpose(1, 2).reshape(batch, channels, grid, grid)


def decode_pixels(decoder: GeneralDecoder, latents: Tensor) -> Tensor:
    """Raw latents (B, C, grid, grid) -> [0, 1]-range pixels, not clamped (training needs the raw values)."""
    return imagenet_denormalize(decoder.decode_grid(latents))
