"""Assemble one (per-rank) VTP pretraining batch from image–caption samples.

VTP (§3.6) uses every pair of the batch for CLIP and random subsets of it for
SSL (B_ssl) and reconstruction (B_rec). The collator draws those subsets from
a per-batch seed, augments only what the subsets need (multi-crop is by far the
most expensive view, so samples outside the SSL subset get none), builds the
iBOT masks and tokenizes the captions. Pixels stay in [0, 1].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from tokbench_vtp.pretrain.augment import MultiCropAugmentation
from tokbench_vtp.pretrain.masking import BlockMaskGenerator, sample_batch_masks

Tokenize = Callable[[list[str]], torch.Tensor]
SeedLike = int | Sequence[int]


@dataclass(frozen=True)
class Sample:
    """One drawn sample: its dataset index, content and augmentation seed
    (entropy for ``numpy.random.default_rng``, e.g. (seed, stream, position))."""

    index: int
    image: Image.Image
    caption: str
    seed: tuple[int, ...]


@dataclass
class PretrainBatch:
    """Tensors of one step. Crops are crop-major: all images' crop 0, then all
    images' crop 1, ... (the order DINOv2's losses chunk by). ``masks`` rows follow
    ``global_crops``. ``ssl_positions``/``rec_positions`` say which rows of the
    CLIP batch the SSL and reconstruction subsets are (sorted)."""

    clip_images: torch.Tensor  # (B, 3, S, S) float [0, 1]
    text_tokens: torch.Tensor  # (B, context) long
    global_crops: torch.Tensor  # (2*Bs, 3, G, G)
    local_crops: torch.Tensor  # (n_local*Bs, 3, L, L)
    masks: torch.Tensor  # (2*Bs, (G/patch)^2) bool
    rec_images: torch.Tensor  # (Br, 3, S, S)
    indices: torch.Tensor  # (B,) long, dataset indices
    ssl_positions: torch.Tensor  # (Bs,) long, rows of the CLIP batch
    rec_positions: torch.Tensor  # (Br,) long

    def _map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> "PretrainBatch":
        return PretrainBatch(**{f.name: function(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PretrainBatch":
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "PretrainBatch":
        """Called by DataLoader(pin_memory=True) on custom batch types."""
        return self._map(lambda tensor: tensor.pin_memory())

    @property
    def batch_size(self) -> int:
        return int(self.clip_images.shape[0])


class PretrainCollator:
    """``collator(samples, seed) -> PretrainBatch``.

    ``ssl_batch``/``rec_batch`` are per-rank subset sizes (0 switches a branch
    off: its tensors are empty). Subsets and masks come from ``seed`` alone;
    each sample's views from its own ``Sample.seed``, so a batch is a pure
    function of (samples, seed).
    """

    def __init__(
        self,
        augment: MultiCropAugmentation,
        tokenize: Tokenize,
        ssl_batch: int,
        rec_batch: int,
        patch_size: int = 16,
        mask_probability: float = 0.5,
        mask_ratio: tuple[float, float] = (0.1, 0.5),
    ):
        if ssl_batch < 0 or rec_batch < 0:
            raise ValueError(f"ssl_batch and rec_batch must be >= 0, got {ssl_batch} and {rec_batch}")
        config = augment.config
        if patch_size <= 0 or config.global_size % patch_size:
            raise ValueError(
                f"global_size={config.global_size} is not a multiple of patch_size={patch_size}; "
                "iBOT masks need whole patches"
            )
        self.augment = augment
        self.tokenize = tokenize
        self.ssl_batch = int(ssl_batch)
        self.rec_batch = int(rec_batch)
        self.patch_size = int(patch_size)
        self.mask_probability = float(mask_probability)
        self.mask_ratio = (float(mask_ratio[0]), float(mask_ratio[1]))
        side = config.global_size // patch_size
        self.grid = (side, side)
        self.mask_generator = BlockMaskGenerator(self.grid)
        # Fail at construction, not at the first batch.
        sample_batch_masks(0, self.grid, self.mask_probability, self.mask_ratio, np.random.default_rng(0))

    def __call__(self, samples: Sequence[Sample], seed: SeedLike) -> PretrainBatch:
        batch = len(samples)
        if batch == 0:
            raise ValueError("cannot collate an empty batch")
        if self.ssl_batch > batch or self.rec_batch > batch:
            raise ValueError(
                f"ssl_batch={self.ssl_batch} / rec_batch={self.rec_batch} exceed the per-rank batch of {batch}; "
                "they are subsets of the CLIP batch, so lower them or raise the batch size"
            )
        rng = np.random.default_rng(seed)
        ssl_positions = np.sort(rng.choice(batch, size=self.ssl_batch, replace=False))
        rec_positions = np.sort(rng.choice(batch, size=self.rec_batch, replace=False))
        in_ssl = np.zeros(batch, dtype=bool)
        in_ssl[ssl_positions] = True

        views = [
            self.augment(sample.image, np.random.default_rng(list(sample.seed)), need_ssl=bool(in_ssl[i]))
            for i, sample in enumerate(samples)
        ]
        config = self.augment.config
        size, global_size, local_size = config.image_size, config.global_size, config.local_size
        clip_images = torch.stack([view["clip"] for view in views])
        rec_images = clip_images[torch.from_numpy(rec_positions)] if self.rec_batch else torch.empty(0, 3, size, size)
        ssl_views = [views[i] for i in ssl_positions]
        global_crops = _crop_major([v["global_crops"] for v in ssl_views], 2, global_size)
        local_crops = _crop_major([v["local_crops"] for v in ssl_views], config.n_local, local_size)
        masks = sample_batch_masks(
            2 * self.ssl_batch, self.grid, self.mask_probability, self.mask_ratio, rng, self.mask_generator
        )
        captions = [sample.caption for sample in samples]
        tokens = torch.as_tensor(self.tokenize(captions)).long()
        if tokens.ndim != 2 or tokens.shape[0] != batch:
            raise ValueError(
                f"tokenize returned shape {tuple(tokens.shape)} for {batch} captions; expected (B, context)"
            )
        return PretrainBatch(
            clip_images=clip_images,
            text_tokens=tokens,
            global_crops=global_crops,
            local_crops=local_crops,
            masks=torch.from_numpy(masks),
            rec_images=rec_images.contiguous(),
            indices=torch.tensor([sample.index for sample in samples], dtype=torch.long),
            ssl_positions=torch.from_numpy(ssl_positions).long(),
            rec_positions=torch.from_numpy(rec_positions).long(),
        )


def _crop_major(per_image: list[torch.Tensor], n_crops: int, size: int) -> torch.Tensor:
    """[(n_crops, 3, s, s)] * n → (n_crops * n, 3, s, s) with crop k of every image together."""
    if not per_image or n_crops == 0:
        return torch.empty(0, 3, size, size)
    return torch.stack(per_image, dim=1).reshape(-1, 3, size, size)
