"""LPIPS (``lpips.LPIPS(net='vgg', version='0.1')``) with a locally provided VGG16 backbone.

The linear heads ship inside the ``lpips`` wheel; the VGG16 ImageNet backbone is
torchvision's ``vgg16-397923af.pth``, which cannot be downloaded offline. This module never
downloads: it looks for the file (argument > ``$TOKBENCH_LPIPS_VGG`` > the torch-hub cache
``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``) and otherwise raises
:class:`MetricUnavailable`, which tasks report as "LPIPS unavailable" instead of failing.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from tokbench.hashing import file_identity
from tokbench.metrics.errors import MetricUnavailable
from tokbench.metrics.tf32_guard import no_tf32
from tokbench.metrics.weights_file import LocatedFile, locate_weights_file

__all__ = ["ENV_LPIPS_VGG", "LPIPSMetric", "MetricUnavailable", "find_vgg16_weights", "load_lpips"]

ENV_LPIPS_VGG = "TOKBENCH_LPIPS_VGG"
VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_HASH_PREFIX = "397923af"  # torch-hub convention: sha256 prefix in the file name
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILENAME}"
_RANGE_SLACK = 1e-6


def _how_to_provide() -> str:
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME
    return (
        f"LPIPS needs torchvision's VGG16 ImageNet weights ({VGG16_FILENAME}, from {VGG16_URL}). "
        f"Set {ENV_LPIPS_VGG}=/path/to/{VGG16_FILENAME}, or place the file at {hub_file} "
        f"(torch-hub cache; TORCH_HOME moves it). tokbench never downloads it."
    )


def _hub_cache_file() -> LocatedFile | None:
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME
    if not hub_file.is_file():
        return None
    digest = file_identity(hub_file)
    if not digest.startswith(VGG16_HASH_PREFIX):
        raise MetricUnavailable(
            f"LPIPS: {hub_file} has sha256 {digest}, which does not start with {VGG16_HASH_PREFIX}: "
            f"the file is corrupt; delete it and provide a good copy. {_how_to_provide()}"
        )
    return LocatedFile(hub_file, "torch-hub-cache")


def _find(vgg_weights: str | os.PathLike[str] | None) -> LocatedFile:
    return locate_weights_file(
        vgg_weights, env_var=ENV_LPIPS_VGG, what="LPIPS: VGG16 weights file", how_to_get=_how_to_provide,
        error=MetricUnavailable, default=_hub_cache_file, missing="LPIPS unavailable: no VGG16 weights found.",
    )


def find_vgg16_weights(vgg_weights: str | os.PathLike[str] | None = None) -> Path:
    """Locate the VGG16 backbone file or raise :class:`MetricUnavailable` saying how to provide it."""
    return _find(vgg_weights).path


def vgg16_features_state(path: Path, target_keys: list[str]) -> dict[str, torch.Tensor]:
    """Map torchvision's ``features.<i>.<param>`` onto lpips' ``slice<k>.<i>.<param>`` names."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise MetricUnavailable(
            f"LPIPS: cannot read {path} as a torch state dict ({error}). {_how_to_provide()}"
        ) from error
    if not isinstance(state, dict):
        raise MetricUnavailable(f"LPIPS: {path} is not a state dict. {_how_to_provide()}")
    mapped = {}
    for key in target_keys:  # e.g. "slice3.12.weight" <- "features.12.weight"
        _, index, param = key.split(".")
        source_key = f"features.{index}.{param}"
        if source_key not in state:
            raise MetricUnavailable(
                f"LPIPS: {path} lacks {source_key}; it is not torchvision's VGG16 state dict. {_how_to_provide()}"
            )
        mapped[key] = state[source_key]
    return mapped


class LPIPSMetric:
    """Per-image LPIPS-VGG (v0.1) distance of two (B,3,H,W) float batches in [0,1].

    Images are mapped to [-1,1] (``2x - 1``) as ``lpips`` expects; the result is float64 on
    CPU, shape (B,), 0 for identical images. TF32 is disabled while it runs on a GPU.
    """

    def __init__(self, model: torch.nn.Module, identity: dict[str, Any]):
        self._model = model
        self._identity = dict(identity)

    @property
    def device(self) -> torch.device:
        return next(self._model.parameters()).device

    @property
    def identity(self) -> dict[str, Any]:
        return {**self._identity, "device": self.device.type, "tf32": False}

    def to(self, device: str | torch.device) -> LPIPSMetric:
        self._model.to(torch.device(device))
        return self

    def __call__(self, a01: torch.Tensor, b01: torch.Tensor) -> torch.Tensor:
        for name, image in (("a01", a01), ("b01", b01)):
            if not isinstance(image, torch.Tensor) or not image.is_floating_point():
                raise TypeError(f"LPIPS expects float images in [0,1]; {name} is not a float tensor")
            if image.dim() != 4 or image.shape[1] != 3:
                raise ValueError(f"LPIPS expects (B,3,H,W) images, {name} has shape {tuple(image.shape)}")
            low, high = float(image.min()), float(image.max())
            if low != low or low < -_RANGE_SLACK or high > 1 + _RANGE_SLACK:
                raise ValueError(
                    f"LPIPS: {name} has values in [{low:.4g}, {high:.4g}], expected [0,1] "
                    "(clamp reconstructions; map [-1,1] images with (x + 1) / 2)"
                )
        if a01.shape != b01.shape:
            raise ValueError(f"LPIPS: shapes differ, {tuple(a01.shape)} vs {tuple(b01.shape)}")
        device = self.device
        with torch.inference_mode(), no_tf32(device):
            a = a01.to(device, torch.float32).clamp(0, 1) * 2 - 1
            b = b01.to(device, torch.float32).clamp(0, 1) * 2 - 1
            distances = self._model(a, b)
        return distances.flatten().to("cpu", torch.float64)


def load_lpips(vgg_weights: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> LPIPSMetric:
    """LPIPS-VGG v0.1 with the heads from the ``lpips`` wheel and the VGG16 backbone from a local file.

    Raises :class:`MetricUnavailable` when no backbone file is found (never downloads). A
    backbone whose sha256 is not torchvision's ImageNet file is accepted with a warning and
    recorded in :attr:`LPIPSMetric.identity` (``vgg16_imagenet: False``): its numbers are not LPIPS.
    """
    found = _find(vgg_weights)
    import lpips  # imports torchvision; only when the metric is really built

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        # pnet_rand=True: the backbone is built randomly initialised (no download) and filled below;
        # pretrained=True: the v0.1 linear heads load from the lpips wheel.
        model = lpips.LPIPS(pretrained=True, net="vgg", version="0.1", pnet_rand=True, verbose=False)
    backbone = model.net
    state = vgg16_features_state(found.path, list(backbone.state_dict().keys()))
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise MetricUnavailable(
            f"LPIPS: {found.path} does not fit VGG16's feature layers ({error}). {_how_to_provide()}"
        ) from error
    model.requires_grad_(False)
    model.eval()

    digest = file_identity(found.path)
    imagenet = digest.startswith(VGG16_HASH_PREFIX)
    if not imagenet:
        warnings.warn(
            f"LPIPS backbone {found.path} (sha256 {digest[:16]}...) is not torchvision's ImageNet VGG16 "
            f"({VGG16_FILENAME}); the distances are not comparable with published LPIPS.",
            UserWarning,
            stacklevel=2,
        )
    heads = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    identity = {
        "metric": "lpips",
        "net": "vgg",
        "version": "0.1",
        "input": "float RGB (B,3,H,W) in [0,1], fed to lpips as 2x-1",
        "lpips_version": _package_version("lpips"),
        "heads_sha256": file_identity(heads),
        "vgg16_sha256": digest,
        "vgg16_file": found.path.name,
        "vgg16_origin": found.origin,
        "vgg16_imagenet": imagenet,
    }
    return LPIPSMetric(model, identity).to(device)


def _package_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
