"""The tokenizer contract every plugin implements.

Pixel convention at every boundary: float images in [0, 1], shape (B, 3, H, W).
Each tokenizer converts to its own normalisation inside ``encode``/``decode``.

This module must stay importable without torch: listing plugins and validating
suites read the capability and spec types defined here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch


#: The plugin interface version. A plugin module may declare ``TOKBENCH_PLUGIN_API = N``; a
#: different N is refused at load time with both versions named. Bump on breaking changes to
#: the hooks, ``Tokenizer`` or the task/dataset contracts.
PLUGIN_API_VERSION = 1


class Capability(str, enum.Enum):
    """What a tokenizer can do; tasks declare which ones they need."""

    ENCODE = "encode"  # images -> latents
    DECODE = "decode"  # latents -> images
    IMAGE_FEATURES = "image_features"  # images -> named feature tensors (probing)
    TEXT = "text"  # tokenize + text_features (zero-shot)
    DISCRETE = "discrete"  # latents are codebook entries with indices


@dataclass(frozen=True)
class LatentSpec:
    """Shape and nature of the latent a tokenizer produces for one image size."""

    channels: int
    height: int
    width: int
    downsample: int
    discrete: bool = False
    codebook_size: int | None = None
    dtype: str = "float32"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def tokens(self) -> int:
        return self.height * self.width

    def to_dict(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
            "downsample": self.downsample,
            "discrete": self.discrete,
            "codebook_size": self.codebook_size,
            "dtype": self.dtype,
        }


class CapabilityError(NotImplementedError):
    """Raised when a task calls a method the tokenizer does not declare."""


class Tokenizer:
    """Base class for tokenizers. Subclasses set ``capabilities`` and implement
    the methods matching them. Instances own their torch modules.

    Required: ``latent_spec``, ``encode``, ``decode``, ``fingerprint``,
    ``modules`` (the torch modules to move between devices/dtypes).
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.ENCODE, Capability.DECODE})
    #: Resolution the tokenizer was trained at; tasks resize to it unless told otherwise.
    native_resolution: int = 256
    #: Compute spent producing these weights (FLOPs), when known; recorded with every result
    #: and used by the leaderboard's scaling plots (gFID vs tokenizer pretraining compute).
    training_flops: float | None = None

    # ---- required -------------------------------------------------------
    def latent_spec(self, image_size: int) -> LatentSpec:
        raise NotImplementedError

    def encode(self, images: "torch.Tensor") -> "torch.Tensor":
        """(B,3,H,W) float in [0,1] -> latents (B,C,h,w)."""
        raise NotImplementedError

    def decode(self, latents: "torch.Tensor") -> "torch.Tensor":
        """latents -> (B,3,H,W) float in [0,1] (clamped)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Stable identity of the weights and the parameters that change outputs."""
        raise NotImplementedError

    def modules(self) -> Sequence["torch.nn.Module"]:
        raise NotImplementedError

    # ---- optional ---------------------------------------------------------
    def reconstruct(self, images: "torch.Tensor") -> "torch.Tensor":
        return self.decode(self.encode(images))

    def image_features(self, images: "torch.Tensor", layers: Sequence[str] | None = None) -> dict[str, "torch.Tensor"]:
        raise CapabilityError(f"{type(self).__name__} does not provide image features")

    def tokenize(self, texts: Sequence[str]) -> "torch.Tensor":
        raise CapabilityError(f"{type(self).__name__} has no text tower")

    def text_features(self, tokens: "torch.Tensor") -> "torch.Tensor":
        raise CapabilityError(f"{type(self).__name__} has no text tower")

    # ---- device / dtype ----------------------------------------------------
    def to(self, device: "torch.device | str | None" = None, dtype: "torch.dtype | None" = None) -> "Tokenizer":
        for module in self.modules():
            module.to(device=device, dtype=dtype)
        return self

    def eval(self) -> "Tokenizer":
        for module in self.modules():
            module.eval()
        return self

    def _tensors(self):
        """Parameters, then buffers (a weight-free codec may hold its basis as a buffer)."""
        for module in self.modules():
            yield from module.parameters()
        for module in self.modules():
            yield from (b for b in module.buffers() if b.is_floating_point())

    @property
    def device(self) -> "torch.device":
        for tensor in self._tensors():
            return tensor.device
        import torch

        return torch.device("cpu")

    @property
    def dtype(self) -> "torch.dtype":
        for tensor in self._tensors():
            return tensor.dtype
        import torch

        return torch.float32
