"""Sizes of RAE's ``GeneralDecoder`` (torch-free: suites validate them before any model exists).

The released decoders are MAE-style ViTs (``configs/decoder/ViT{B,L,XL}/config.json`` of
bytetriper/RAE); ``tiny`` is this plugin's CPU-scale size. A checkpoint's size is read from its
tensor shapes (:func:`tokbench_rae.decoder.infer_decoder_config`), except the head count, which
shapes cannot reveal: it comes from :data:`HEADS_BY_WIDTH` (the released widths) or is
``width // 64``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: LayerNorm epsilon of every decoder norm (``layer_norm_eps`` of the released configs)
LAYER_NORM_EPS = 1e-12
#: released widths -> attention heads (ViT-XL has 72-dim heads, so width // 64 would be wrong)
HEADS_BY_WIDTH = {768: 12, 1024: 16, 1152: 16}
DEFAULT_HEAD_DIM = 64


@dataclass(frozen=True)
class DecoderConfig:
    """Everything that fixes a ``GeneralDecoder``'s tensors and computation."""

    latent_dim: int  # encoder token width (decoder_embed input)
    hidden: int
    layers: int
    heads: int
    intermediate: int
    patch_size: int
    grid: int  # tokens per side the decoder was built for (16 for 256 px at patch 16)
    channels: int = 3

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"decoder {name} must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(f"decoder width {self.hidden} is not divisible by its {self.heads} heads")
        if self.hidden % 4:
            raise ValueError(f"decoder width {self.hidden} must be divisible by 4 (2-D sin-cos position embedding)")

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def image_size(self) -> int:
        return self.grid * self.patch_size

    def parameter_count(self) -> int:
        """Tensor elements of the state dict (the fixed position table included), without torch."""
        d, i = self.hidden, self.intermediate
        layer = 4 * (d * d + d) + (d * i + i) + (i * d + d) + 2 * 2 * d
        return (
            self.latent_dim * d + d  # decoder_embed
            + (self.num_patches + 1) * d  # decoder_pos_embed
            + self.layers * layer
            + 2 * d  # decoder_norm
            + d * self.patch_size**2 * self.channels + self.patch_size**2 * self.channels  # decoder_pred
            + d  # trainable_cls_token
        )

    def forward_macs(self) -> int:
        """Multiply-accumulates of one decode (linear layers and attention; norms and GELU ignored)."""
        tokens, d, i = self.num_patches + 1, self.hidden, self.intermediate
        per_layer = tokens * (4 * d * d + 2 * d * i) + 2 * tokens * tokens * d
        return self.num_patches * self.latent_dim * d + self.layers * per_layer + tokens * d * self.patch_size**2 * self.channels


def heads_for_width(width: int) -> int:
    if width in HEADS_BY_WIDTH:
        return HEADS_BY_WIDTH[width]
    if width % DEFAULT_HEAD_DIM:
        raise ValueError(
            f"cannot tell the head count of a {width}-wide decoder: released widths are {sorted(HEADS_BY_WIDTH)}, "
            f"other widths must be multiples of {DEFAULT_HEAD_DIM} (heads = width / {DEFAULT_HEAD_DIM})"
        )
    return width // DEFAULT_HEAD_DIM


#: name -> (hidden, layers, heads, intermediate); ViT-B/L/XL as released, tiny for CPU training
DECODER_SIZES: dict[str, tuple[int, int, int, int]] = {
    "ViT-B": (768, 12, 12, 3072),
    "ViT-L": (1024, 24, 16, 4096),
    "ViT-XL": (1152, 28, 16, 4096),
    "tiny": (128, 4, 2, 512),
}


def decoder_config(size: str, latent_dim: int = 768, patch_size: int = 16, grid: int = 16) -> DecoderConfig:
    """The config of a named size (``ViT-XL`` with the defaults is the released DINOv2-B decoder)."""
    if size not in DECODER_SIZES:
        raise ValueError(f"unknown decoder size {size!r}; choose one of {', '.join(DECODER_SIZES)}")
    hidden, layers, heads, intermediate = DECODER_SIZES[size]
    return DecoderConfig(latent_dim, hidden, layers, heads, intermediate, patch_size, grid)
