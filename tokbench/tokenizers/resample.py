"""Resampling baseline: the latent is the image downsampled by ``factor``.

A non-learned reference point for reconstruction metrics (how much does a
learned f-``factor`` tokenizer beat plain interpolation?), and a fast, weight-free
tokenizer for tests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from tokbench.api import Capability, LatentSpec, Tokenizer
from tokbench.hashing import content_key


class ResampleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: Literal[2, 4, 8, 16] = 8
    mode: Literal["area", "bilinear", "bicubic"] = "bicubic"


class ResampleTokenizer(Tokenizer):
    capabilities = frozenset({Capability.ENCODE, Capability.DECODE})

    def __init__(self, params: ResampleParams):
        self.params = params
        self._dtype = None
        self._device = None

    def latent_spec(self, image_size: int) -> LatentSpec:
        side = image_size // self.params.factor
        return LatentSpec(channels=3, height=side, width=side, downsample=self.params.factor)

    def encode(self, images):
        import torch.nn.functional as F

        images = self._cast(images)
        return F.interpolate(images, scale_factor=1 / self.params.factor, mode="area")

    def decode(self, latents):
        import torch.nn.functional as F

        latents = self._cast(latents)
        kwargs = {} if self.params.mode == "area" else {"align_corners": False}
        mode = "nearest" if self.params.mode == "area" else self.params.mode
        return F.interpolate(latents, scale_factor=self.params.factor, mode=mode, **kwargs).clamp(0, 1)

    def _cast(self, tensor):
        return tensor.to(device=self._device or tensor.device, dtype=self._dtype or tensor.dtype)

    def fingerprint(self) -> str:
        return content_key({"resample": self.params.model_dump()})

    def modules(self):
        return []

    def to(self, device=None, dtype=None):
        import torch

        if device is not None:
            self._device = torch.device(device)
        if dtype is not None:
            self._dtype = dtype
        return self

    @property
    def device(self):
        import torch

        return self._device or torch.device("cpu")

    @property
    def dtype(self):
        import torch

        return self._dtype or torch.float32


def build_resample(params: ResampleParams, context=None) -> ResampleTokenizer:
    return ResampleTokenizer(params)
