"""Shared helpers for the vae plugin tests (tiny, deterministic, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from tokbench_vae.params import TinyTrainParams


def random_autoencoder(seed: int = 0, attention: bool = True):
    """A small randomly initialised AutoencoderKL (f4, 4 latent channels): same weights for the same seed."""
    import torch
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * 3,
            up_block_types=["UpDecoderBlock2D"] * 3,
            block_out_channels=[8, 16, 16],
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=32,
            mid_block_add_attention=attention,
            scaling_factor=0.5,
        ).eval()


def quick_train_params(**overrides) -> TinyTrainParams:
    """A training run of a second or two at 32 px."""
    settings = dict(
        steps=30,
        batch_size=8,
        lr=2e-3,
        warmup_steps=5,
        resolution=32,
        crop_size=16,
        full_resolution_steps=10,
        num_images=64,
        holdout_images=8,
        block_out_channels=(8, 16, 16),
        norm_num_groups=4,
    )
    settings.update(overrides)
    return TinyTrainParams(**settings)


class ArrayImages:
    """The minimal image source: ``len()`` and ``image(i)`` -> uint8 (H, W, 3)."""

    def __init__(self, count: int, size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:size, 0:size] / size
        self.images = []
        for _ in range(count):
            colour = rng.uniform(0, 255, size=3)
            other = rng.uniform(0, 255, size=3)
            cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
            inside = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)[..., None]
            self.images.append(np.where(inside, colour, other).astype(np.uint8))

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int) -> np.ndarray:
        return self.images[index]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from more threads, and on a busy machine (tests run
    beside other work) oversubscribed OpenMP threads slow them down many times."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
