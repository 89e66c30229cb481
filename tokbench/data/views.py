"""A dataset seen through an evaluation protocol's crop at another resolution.

Protocols fix their own preprocessing (VTP's zero-shot squashes, OpenCLIP resizes the
shorter side and centre-crops, DINOv2 crops 0.875); ``ImageDataset.view`` returns the
images that protocol would see. Datasets that keep their originals (image folders)
re-crop those; procedural datasets re-render. This generic fallback re-crops the
dataset's own square images, and says so in ``describe``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from tokbench.data.base import ImageDataset
from tokbench.data.transforms import CROP_FUNCTIONS, TRANSFORMS_VERSION
from tokbench.hashing import content_key
from tokbench.suggest import unknown_choice


def check_crop(crop: str) -> None:
    if crop not in CROP_FUNCTIONS:
        raise ValueError(unknown_choice("crop", crop, CROP_FUNCTIONS))


class ResampledView(ImageDataset):
    """``base``'s images passed through ``CROP_FUNCTIONS[crop]`` to ``resolution``."""

    def __init__(self, base: ImageDataset, crop: str, resolution: int):
        check_crop(crop)
        self.base = base
        self.crop = crop
        self.resolution = int(resolution)
        self.classnames = list(base.classnames)

    def __len__(self) -> int:
        return len(self.base)

    def image(self, index: int) -> np.ndarray:
        source = Image.fromarray(self.base.image(index))
        return np.asarray(CROP_FUNCTIONS[self.crop](source, self.resolution), dtype=np.uint8)

    def label(self, index: int) -> int:
        return self.base.label(index)

    def labels(self) -> np.ndarray:
        return self.base.labels()

    def caption(self, index: int) -> str | None:
        return self.base.caption(index)

    def zero_shot_templates(self) -> tuple[str, ...] | str:
        return self.base.zero_shot_templates()

    def fingerprint(self) -> str:
        return content_key({"view": self.base.fingerprint(), "crop": self.crop, "resolution": self.resolution,
                            "transforms_version": TRANSFORMS_VERSION})

    def describe(self) -> dict[str, Any]:
        return {
            **self.base.describe(),
            "view": {"crop": self.crop, "resolution": self.resolution,
                     "from": f"the dataset's own {self.base.resolution}px images"},
            "fingerprint": self.fingerprint(),
        }
