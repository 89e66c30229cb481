"""What the plugins' short ``tiny``-preset training loops share: the built-in ``shapes`` images
(train + held-out), the image tensor, thread capping, warm-up + cosine learning rate, 8-bit PSNR,
and zero-initialised residual branches for diffusers conv autoencoders.

``settings`` below is any object with the fields the function reads (the plugins' pydantic
``TinyTrainParams``): ``num_images``, ``holdout_images``, ``resolution``, ``seed``;
``lr``, ``warmup_steps``, ``steps``.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar

import torch

T = TypeVar("T")
#: a progress wrapper: ``track(iterable, description, total)``
Track = Callable[[Iterable[T], str, "int | None"], Iterable[T]]

#: held-out images come from the 'val' split with this seed offset (never trained on)
HOLDOUT_SEED_OFFSET = 1


class ImageSource(Protocol):
    """Anything with ``len()`` and ``image(i)`` -> uint8 (H, W, 3) array."""

    def __len__(self) -> int: ...

    def image(self, index: int) -> Any: ...


def images_tensor(source: ImageSource, count: int | None = None) -> torch.Tensor:
    """The first ``count`` images of ``source`` as one uint8 tensor (N, 3, H, W)."""
    import numpy as np

    count = len(source) if count is None else min(count, len(source))
    if count == 0:
        raise ValueError("the image source is empty")
    stacked = np.stack([np.asarray(source.image(i), dtype=np.uint8) for i in range(count)])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def shapes_sources(train: Any, context=None) -> tuple[ImageSource, ImageSource]:
    """(train images, held-out images) from the built-in ``shapes`` dataset."""
    train_params = {"split": "train", "num_images": train.num_images, "resolution": train.resolution, "seed": train.seed}
    holdout_params = {
        "split": "val",
        "num_images": train.holdout_images,
        "resolution": train.resolution,
        "seed": train.seed + HOLDOUT_SEED_OFFSET,
    }
    if context is not None:
        return context.build_dataset("shapes", train_params), context.build_dataset("shapes", holdout_params)
    from tokbench.data.params import ShapesParams
    from tokbench.data.shapes import ShapesDataset

    return (
        ShapesDataset.from_params(ShapesParams(**train_params)),
        ShapesDataset.from_params(ShapesParams(**holdout_params)),
    )


@contextlib.contextmanager
def sensible_threads() -> Iterator[int]:
    """Cap torch's intra-op threads at the CPU cores this process may use."""
    previous = torch.get_num_threads()
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        available = os.cpu_count() or 1
    threads = max(1, min(previous, available))
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


def psnr(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [0, 1], both quantised to 8 bits."""
    a = (reference.clamp(0, 1) * 255).round()
    b = (reconstruction.clamp(0, 1) * 255).round()
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def lr_at(step: int, train: Any) -> float:
    """Linear warm-up to ``lr``, then cosine decay to 1% of it."""
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    return train.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def zero_init_residuals(model) -> None:
    """Zero the last layer of every residual branch (resnet ``conv2``, attention
    output) so each block starts as the identity: the untrained network is then a
    short plain conv chain, which learns much faster in a few hundred steps."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ResnetBlock2D):
                module.conv2.weight.zero_()
                if module.conv2.bias is not None:
                    module.conv2.bias.zero_()
            elif isinstance(module, Attention):
                out = module.to_out[0]
                out.weight.zero_()
                if out.bias is not None:
                    out.bias.zero_()
