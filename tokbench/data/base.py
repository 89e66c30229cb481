"""The dataset contract shared by every image source, and its default protocol view (no torch here).

Protocols fix their own preprocessing (VTP's zero-shot squashes, OpenCLIP resizes the
shorter side and centre-crops, DINOv2 crops 0.875); ``ImageDataset.view`` returns the
images that protocol would see. Datasets that keep their originals (image folders)
re-crop those; procedural datasets re-render. The generic fallback, :class:`ResampledView`,
re-crops the dataset's own square images, and says so in ``describe``.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
from PIL import Image

from tokbench.data.transforms import CROP_FUNCTIONS, TRANSFORMS_VERSION
from tokbench.errors import unknown_choice
from tokbench.hashing import content_key


class ImageDataset(abc.ABC):
    """Indexable images with integer labels, already at ``resolution``.

    ``image(i)`` returns a uint8 array of shape (resolution, resolution, 3), RGB.
    Subclasses set ``classnames`` and ``resolution`` and must be picklable, so
    loader workers can receive them.
    """

    classnames: list[str]
    resolution: int

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def image(self, index: int) -> np.ndarray:
        """uint8 array (resolution, resolution, 3), RGB."""

    @abc.abstractmethod
    def label(self, index: int) -> int: ...

    def caption(self, index: int) -> str | None:
        """A one-sentence description of the image, or None if the source has none."""
        self._check_index(index)
        return None

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Identity of the content: equal fingerprints mean identical images and labels."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able summary for provenance records."""

    def zero_shot_templates(self) -> tuple[str, ...] | str:
        """Prompt templates for zero-shot classification (``{}`` = the class name), or the
        name of a template set in ``tokbench.understanding.prompts`` (default: OpenAI's 80
        ImageNet templates)."""
        return "openai"

    def view(self, crop: str, resolution: int) -> "ImageDataset":
        """The same images and labels as an evaluation protocol would preprocess them
        (``crop`` from ``tokbench.data.transforms.CROP_FUNCTIONS``, square ``resolution``).
        Datasets that keep originals re-crop those; this default re-crops our images."""
        return ResampledView(self, crop, resolution)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def labels(self) -> np.ndarray:
        """All labels in index order, int64."""
        return np.fromiter((self.label(i) for i in range(len(self))), dtype=np.int64, count=len(self))

    def _check_index(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        return int(index)


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
