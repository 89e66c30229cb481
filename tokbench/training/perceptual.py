"""Differentiable LPIPS-VGG (v0.1) as a training loss, with a locally provided VGG16 backbone.

The metric in :mod:`tokbench.metrics.perceptual` measures under ``inference_mode`` in [0,1];
a decoder loss needs gradients and must accept the space the decoder works in (VTP and RAE
decode to ImageNet-normalised pixels, taming to [-1,1]). The backbone file is found by the
metric's :func:`~tokbench.metrics.perceptual.find_vgg16_weights` (argument >
``$TOKBENCH_LPIPS_VGG`` > torch-hub cache) and never downloaded; the linear heads ship in
the ``lpips`` wheel.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from tokbench.metrics.errors import MetricUnavailable
from tokbench.metrics.perceptual import ENV_LPIPS_VGG, VGG16_FILENAME, vgg16_features_state, find_vgg16_weights
from tokbench.nn.layers import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INPUT_SPACES", "LPIPSLoss", "lpips_training_loss", "to_signed"]

INPUT_SPACES = ("unit", "signed", "imagenet")


def to_signed(x: torch.Tensor, input_space: str) -> torch.Tensor:
    """Map (B,3,H,W) images from ``input_space`` to LPIPS's [-1,1] (differentiably).

    ``"unit"``: [0,1] -> ``2x - 1``; ``"signed"``: already [-1,1]; ``"imagenet"``:
    ``(x01 - mean) / std`` per channel -> ``2 (x * std + mean) - 1``.
    """
    if input_space == "signed":
        return x
    if input_space == "unit":
        return x * 2 - 1
    if input_space == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * std + mean) * 2 - 1
    raise ValueError(f"unknown input_space {input_space!r}; use one of {INPUT_SPACES}")


class LPIPSLoss(nn.Module):
    """Batch-mean LPIPS-VGG v0.1 distance, differentiable with respect to both images.

    ``backbone``: ``"file"`` loads torchvision's VGG16 ImageNet weights from ``vgg_weights``
    or where :func:`~tokbench.metrics.perceptual.find_vgg16_weights` finds them (raises
    :class:`~tokbench.metrics.errors.MetricUnavailable` naming the file and how to provide
    it); ``"random"`` keeps a randomly initialised VGG16 (offline tests only: the values are
    not LPIPS). The network is frozen and stays in eval mode (``train()`` does not switch on
    the heads' dropout). No clamping is applied: decoder outputs slightly outside the range
    still get gradients.
    """

    def __init__(
        self,
        input_space: str = "unit",
        vgg_weights: str | os.PathLike[str] | None = None,
        backbone: str = "file",
    ):
        super().__init__()
        if input_space not in INPUT_SPACES:
            raise ValueError(f"LPIPSLoss: input_space must be one of {INPUT_SPACES}, got {input_space!r}")
        if backbone not in ("file", "random"):
            raise ValueError(f"LPIPSLoss: backbone must be 'file' or 'random', got {backbone!r}")
        if backbone == "random" and vgg_weights is not None:
            raise ValueError("LPIPSLoss: vgg_weights is given but backbone='random'; drop one of them")
        path = find_vgg16_weights(vgg_weights) if backbone == "file" else None
        import lpips  # imports torchvision; only when the loss is really built

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
            # pnet_rand=True builds VGG16 without downloading; pretrained=True loads the wheel's heads.
            model = lpips.LPIPS(pretrained=True, net="vgg", version="0.1", pnet_rand=True, verbose=False)
        if path is not None:
            state = vgg16_features_state(path, list(model.net.state_dict().keys()))
            try:
                model.net.load_state_dict(state, strict=True)
            except RuntimeError as error:
                raise MetricUnavailable(
                    f"LPIPSLoss: {path} does not fit VGG16's feature layers ({error}). "
                    f"Provide torchvision's {VGG16_FILENAME} via {ENV_LPIPS_VGG} or vgg_weights=."
                ) from error
        model.requires_grad_(False)
        model.eval()
        self.model = model
        self.input_space = input_space
        self.backbone = backbone
        self.vgg_weights: Path | None = path

    def train(self, mode: bool = True) -> LPIPSLoss:
        super().train(mode)
        self.model.eval()  # frozen: the v0.1 heads contain dropout that must stay off
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of LPIPS(x[b], y[b]); a 0-dim tensor."""
        for name, image in (("x", x), ("y", y)):
            if image.dim() != 4 or image.shape[1] != 3:
                raise ValueError(f"LPIPSLoss expects (B,3,H,W) images, {name} has shape {tuple(image.shape)}")
        if x.shape != y.shape:
            raise ValueError(f"LPIPSLoss: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
        dtype = self.model.scaling_layer.shift.dtype
        a = to_signed(x.to(dtype), self.input_space)
        b = to_signed(y.to(dtype), self.input_space)
        return self.model(a, b).mean()

    def extra_repr(self) -> str:
        return f"input_space={self.input_space!r}, backbone={self.backbone!r}, vgg_weights={self.vgg_weights}"


def lpips_training_loss(device: torch.device | str, input_space: str = "signed") -> LPIPSLoss:
    """The LPIPS term of a tiny preset's loss (``train.lpips_weight > 0``), on ``device``; VGG16
    weights that are missing or unusable are a MissingAssetError that says how to provide them
    or to switch the term off, never a silent skip."""
    from tokbench.errors import MissingAssetError

    try:
        return LPIPSLoss(input_space=input_space).to(device)
    except MetricUnavailable as error:
        raise MissingAssetError(
            f"train.lpips_weight > 0 needs the VGG16 weights of LPIPS: {error} (or set `train: {{lpips_weight: 0}}`)"
        ) from error
