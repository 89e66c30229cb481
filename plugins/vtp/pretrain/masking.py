"""iBOT masks for the global crops: BEiT-style block masking and DINOv2's batch scheme.

Masking random rectangles rather than independent patches makes the masked
image modelling task harder than inpainting from immediate neighbours, which is
why BEiT, iBOT and DINOv2 all use it. All randomness comes from an explicit
``numpy.random.Generator`` so the masks of a batch are a pure function of its seed.
"""

from __future__ import annotations

import math

import numpy as np


class BlockMaskGenerator:
    """Place random rectangles on an (h, w) patch grid until a patch count is reached.

    Each rectangle has a random area in [min_num_patches, max_num_patches] and a
    log-uniform aspect ratio in [min_aspect, max_aspect] (default 1/min_aspect);
    it is accepted only if the patches it newly masks fit in what is left of
    the target, so the result never exceeds the target and no patch is counted
    twice. A round where ``max_attempts`` rectangles all fail ends the masking
    (the target is then under-shot, as in BEiT/DINOv2).

    ``max_num_patches`` caps a single rectangle (default: half the grid, the
    DINOv2 setting) so large targets are built from several blocks.
    """

    def __init__(
        self,
        grid: tuple[int, int],
        min_num_patches: int = 4,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
        max_attempts: int = 10,
        max_num_patches: int | None = None,
    ):
        height, width = (int(v) for v in grid)
        if height < 1 or width < 1:
            raise ValueError(f"mask grid must be positive, got {grid}")
        if min_aspect <= 0 or (max_aspect is not None and max_aspect < min_aspect):
            raise ValueError(f"aspect range must satisfy 0 < min_aspect <= max_aspect, got {min_aspect}, {max_aspect}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.height, self.width = height, width
        self.min_num_patches = max(1, int(min_num_patches))
        self.max_num_patches = int(max_num_patches) if max_num_patches is not None else max(1, height * width // 2)
        max_aspect = 1.0 / min_aspect if max_aspect is None else max_aspect
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect))
        self.max_attempts = int(max_attempts)

    @property
    def num_patches(self) -> int:
        return self.height * self.width

    def _place_block(self, mask: np.ndarray, budget: int, rng: np.random.Generator) -> int:
        """Try up to ``max_attempts`` rectangles; mask the first whose new patches
        are in (0, budget]. Returns the number of newly masked patches (0 = failed)."""
        low, high = sorted((min(self.min_num_patches, budget), budget))
        for _ in range(self.max_attempts):
            area = rng.uniform(low, high) if high > low else float(low)
            aspect = math.exp(rng.uniform(*self.log_aspect))
            block_h = int(round(math.sqrt(area * aspect)))
            block_w = int(round(math.sqrt(area / aspect)))
            if not (1 <= block_h <= self.height and 1 <= block_w <= self.width):
                continue
            top = int(rng.integers(0, self.height - block_h + 1))
            left = int(rng.integers(0, self.width - block_w + 1))
            window = mask[top : top + block_h, left : left + block_w]
            new = int(window.size - window.sum())
            if 0 < new <= budget:
                window[...] = True
                return new
        return 0

    def __call__(self, num_masking_patches: int, rng: np.random.Generator) -> np.ndarray:
        """Boolean (h, w) mask with at most ``num_masking_patches`` True entries."""
        target = int(num_masking_patches)
        if target < 0 or target > self.num_patches:
            raise ValueError(f"cannot mask {target} patches of a {self.height}x{self.width} grid")
        mask = np.zeros((self.height, self.width), dtype=bool)
        count = 0
        while count < target:
            added = self._place_block(mask, min(target - count, self.max_num_patches), rng)
            if added == 0:
                break
            count += added
        return mask


def sample_batch_masks(
    batch_size: int,
    grid: tuple[int, int],
    mask_probability: float = 0.5,
    ratio_range: tuple[float, float] = (0.1, 0.5),
    rng: np.random.Generator | None = None,
    generator: BlockMaskGenerator | None = None,
) -> np.ndarray:
    """Masks for a batch of images, DINOv2's scheme: (batch_size, h*w) bool.

    The first ``round(batch_size * mask_probability)`` images get masks whose
    ratios are spread over ``ratio_range`` (image i draws its ratio uniformly
    between the i-th and (i+1)-th of n+1 equally spaced points, so the batch
    covers the whole range rather than clustering), the rest get none; the batch
    order is then shuffled. ``rng`` should always be passed for reproducibility
    (None draws fresh OS entropy).
    """
    if batch_size < 0:
        raise ValueError(f"batch_size must be non-negative, got {batch_size}")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
    low, high = (float(v) for v in ratio_range)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"ratio_range must satisfy 0 <= low <= high <= 1, got {ratio_range}")
    rng = np.random.default_rng() if rng is None else rng
    generator = BlockMaskGenerator(grid) if generator is None else generator
    if (generator.height, generator.width) != tuple(int(v) for v in grid):
        raise ValueError(f"generator grid {(generator.height, generator.width)} differs from grid {tuple(grid)}")
    num_patches = generator.num_patches
    masks = np.zeros((batch_size, num_patches), dtype=bool)
    num_masked = int(round(batch_size * mask_probability))
    points = np.linspace(low, high, num_masked + 1)
    for i in range(num_masked):
        ratio = rng.uniform(points[i], points[i + 1])
        masks[i] = generator(int(num_patches * ratio), rng).reshape(-1)
    return masks[rng.permutation(batch_size)]
