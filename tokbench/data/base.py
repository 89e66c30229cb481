"""The dataset contract shared by every image source (no torch here)."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np


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
        from tokbench.data.views import ResampledView

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
