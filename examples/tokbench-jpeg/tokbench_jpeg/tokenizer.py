"""Area-downsample, JPEG round trip, bicubic upsample.

The latent is the decoded low-resolution JPEG image in [-1, 1] (3 x H/f x W/f): what a
generator would model if its tokenizer were a classical codec. No learned weights, so the
fingerprint is the parameters plus the libjpeg build (its output is what it is).
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, features

from tokbench.api import Capability, LatentSpec, Tokenizer
from tokbench.hashing import content_key
from tokbench_jpeg.params import JpegParams


class JpegTokenizer(Tokenizer):
    capabilities = frozenset({Capability.ENCODE, Capability.DECODE})
    native_resolution = 256

    def __init__(self, params: JpegParams | None = None):
        self.params = params or JpegParams()
        self._dtype = torch.float32
        self._device = torch.device("cpu")

    def latent_spec(self, image_size: int) -> LatentSpec:
        f = self.params.factor
        return LatentSpec(channels=3, height=image_size // f, width=image_size // f, downsample=f)

    def _jpeg(self, image: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=self.params.quality,
                                    subsampling=self.params.subsampling, optimize=False)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("RGB"))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            small = F.avg_pool2d(images.float(), self.params.factor) if self.params.factor > 1 else images.float()
            pixels = (small.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            coded = np.stack([self._jpeg(image) for image in pixels])
            latents = torch.from_numpy(coded).permute(0, 3, 1, 2).to(images.device, images.dtype)
            return latents / 127.5 - 1

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            images = (latents + 1) / 2
            if self.params.factor > 1:
                images = F.interpolate(images, scale_factor=self.params.factor, mode="bicubic", align_corners=False)
            return images.clamp(0, 1)

    def fingerprint(self) -> str:
        return content_key({"jpeg": self.params.model_dump(), "libjpeg": features.version("jpg"),
                            "pillow": Image.__version__})

    def modules(self) -> Sequence[torch.nn.Module]:
        return []

    def to(self, device=None, dtype=None) -> "JpegTokenizer":
        self._device = torch.device(device) if device is not None else self._device
        self._dtype = dtype or self._dtype
        return self

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype


def build(params: JpegParams, context=None) -> JpegTokenizer:
    return JpegTokenizer(params)
