"""What the plugins' short ``tiny``-preset training loops share: the built-in ``shapes`` images
(train + held-out), the image tensor, the augmented batch stream, thread capping, warm-up + cosine
learning rate, 8-bit PSNR, zero-initialised residual branches for diffusers conv autoencoders,
model placement, the run summary, the ``training.json`` that ties a trained directory to its
settings, and :func:`run_tiny_loop`: a conv autoencoder's run of the one training loop,
:mod:`tokbench.training.loop`. Each plugin keeps its model, its loss and its preset (the settings:
:mod:`tokbench.training.tiny_params`).

``settings`` below is any object with the fields the function reads (the plugins' pydantic
``TinyTrainParams``): ``num_images``, ``holdout_images``, ``resolution``, ``seed``;
``lr``, ``warmup_steps``, ``steps``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar

import torch

T = TypeVar("T")
#: a progress wrapper: ``track(iterable, description, total)``
Track = Callable[[Iterable[T], str, "int | None"], Iterable[T]]

#: held-out images come from the 'val' split with this seed offset (never trained on)
HOLDOUT_SEED_OFFSET = 1
#: a trained preset's summary file (beside its weights): preset, cache key, training figures
TRAINING_SUMMARY = "training.json"


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
def torch_threads(count: int) -> Iterator[int]:
    """Run the block with ``count`` intra-op torch threads, then restore the previous count.

    Per-image work on small tensors (augmenting 64 px views) wants 1: splitting a few
    thousand pixels over threads costs more than it saves, and on a loaded machine the
    threads wait on each other (measured: a hue shift of one 64 px view took 10-17 ms with
    2 threads, 0.5 ms with 1)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield max(1, count)
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def sensible_threads() -> Iterator[int]:
    """Cap torch's intra-op threads at the CPU cores this process may use."""
    previous = torch.get_num_threads()
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        available = os.cpu_count() or 1
    with torch_threads(max(1, min(previous, available))) as threads:
        yield threads


def psnr(reference: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [0, 1], both quantised to 8 bits."""
    a = (reference.clamp(0, 1) * 255).round()
    b = (reconstruction.clamp(0, 1) * 255).round()
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def preset_key_inputs(family: str, training_format: int, preset: str, train: Any, context=None) -> dict[str, Any]:
    """What determines a tiny preset's trained weights (its store key): the plugin family, its
    training-recipe version, the preset, the train params (``train.cache_inputs()``) and the data."""
    train_images, holdout = shapes_sources(train, context)  # cheap: nothing is rendered
    return {
        "family": family,
        "format": training_format,
        "preset": preset,
        "train": train.cache_inputs(),
        "data": {"train": train_images.fingerprint(), "holdout": holdout.fingerprint()},
    }


def prepare_model(model: torch.nn.Module, device: torch.device, compile: bool) -> torch.nn.Module:
    """``model`` on ``device`` in train mode, channels-last on GPU; with ``compile``, its ``encoder``
    and ``decoder`` compiled in place (so parameter names, and the saved checkpoint, stay unchanged)."""
    model = model.to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.encoder.compile()
        model.decoder.compile()
    return model


def run_tiny_loop(train: Any, pool: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  objective: Any, generator: torch.Generator, *, name: str, generators: Iterable[torch.Generator] = (),
                  discriminator: Any = None, details: Callable | None = None, track: "Track | None" = None,
                  log: Callable[[str], None] | None = None, checkpoints: Any = None) -> list[dict[str, float]]:
    """A conv autoencoder's tiny run through :class:`tokbench.training.loop.TrainingLoop`: the
    augmented batches of ``pool`` drawn from ``generator``, warm-up + cosine ``lr_at``, gradients
    clipped at 1, checkpoints tied to ``train.cache_inputs()``. Returns the history."""
    from tokbench.training.loop import TrainingLoop

    batches = AugmentedBatches.for_training(pool, train, generator, next(model.parameters()).device)
    loop = TrainingLoop(model, optimizer, lambda step: lr_at(step, train), train.steps, batches, objective,
                        max_grad_norm=1.0, discriminator=discriminator, generators=[generator, *generators], name=name,
                        details=details, track=track, log=log, checkpoints=checkpoints, identity=train.cache_inputs())
    return loop.run()


def summary_head(train: Any, device: torch.device, threads: int, started: float) -> dict[str, Any]:
    """The first entries of a tiny run's summary: steps, batch size, device, threads, seconds so far."""
    return {"steps": train.steps, "batch_size": train.batch_size, "device": str(device), "threads": threads,
            "train_seconds": round(time.time() - started, 2)}


def tail_means(history: list[dict[str, float]], keys: dict[str, str], last: int = 20) -> dict[str, float]:
    """``{summary name: mean of the history key over the last ``last`` steps}``."""
    tail = history[-max(1, min(last, len(history))):]
    return {name: sum(h[key] for h in tail) / len(tail) for name, key in keys.items()}


def write_training_summary(directory: Path, preset: str, key_inputs: dict[str, Any], summary: dict[str, Any],
                           **extra: Any) -> dict[str, Any]:
    """Write a trained preset's ``training.json`` (preset, cache key of ``key_inputs``, ``extra`` and
    the training summary) into ``directory``; returns the store-manifest entry ``{"training": ...}``."""
    from tokbench.hashing import content_key

    summary = {"preset": preset, "cache_key": content_key(key_inputs), **extra, **summary}
    (directory / TRAINING_SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True))
    return {"training": summary}


def check_trained_with(directory: Path, key_inputs: dict[str, Any]) -> None:
    """Refuse to reuse a directory trained with other settings than ``key_inputs`` say."""
    from tokbench.hashing import content_key

    summary_path = directory / TRAINING_SUMMARY
    found = json.loads(summary_path.read_text()).get("cache_key") if summary_path.is_file() else None
    if found != content_key(key_inputs):
        raise ValueError(
            f"{str(directory)!r} holds a model trained with other settings (or not by this plugin); "
            "use an empty directory, or omit `directory` to train into a temporary one"
        )


def training_pool(train: Any, train_images: "ImageSource | torch.Tensor",
                  holdout_images: "ImageSource | torch.Tensor | None" = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The uint8 training images (N, 3, H, W) (the first ``train.num_images`` of a source) and the
    held-out ones, checked against the autoencoder's ``train.downsample``."""
    pool = train_images if isinstance(train_images, torch.Tensor) else images_tensor(train_images, train.num_images)
    holdout = None
    if holdout_images is not None:
        holdout = holdout_images if isinstance(holdout_images, torch.Tensor) else images_tensor(holdout_images)
    if pool.dtype != torch.uint8 or pool.ndim != 4 or pool.shape[1] != 3:
        raise ValueError(f"training images must be uint8 (N,3,H,W), got {tuple(pool.shape)} {pool.dtype}")
    if pool.shape[-1] % train.downsample or pool.shape[-2] % train.downsample:
        raise ValueError(f"image size {tuple(pool.shape[-2:])} is not divisible by the downsampling factor {train.downsample}")
    return pool, holdout


class ShuffledIndices:
    """Batches of indices into a pool of ``size`` items: epochs of seeded permutations (from
    ``generator``), a new one whenever the rest of the current one is shorter than a batch."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator):
        self.size, self.batch_size, self.generator = size, batch_size, generator
        self.order, self.cursor = torch.randperm(size, generator=generator), 0

    def next(self) -> torch.Tensor:
        if self.cursor + self.batch_size > len(self.order):
            self.order, self.cursor = torch.randperm(self.size, generator=self.generator), 0
        index = self.order[self.cursor : self.cursor + min(self.batch_size, len(self.order))]
        self.cursor += len(index)
        return index

    def batch(self, step: int) -> torch.Tensor:
        return self.next()

    def state_dict(self) -> dict[str, Any]:
        """The position in the stream (the generator's state is saved with the other generators)."""
        return {"order": self.order.clone(), "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order, self.cursor = state["order"].clone(), int(state["cursor"])


class AugmentedBatches:
    """Training batches of a uint8 image pool (N, 3, H, W), in [-1, 1]: epochs of seeded
    permutations, a random ``crop_size`` crop for steps before ``crop_until`` (the last steps
    train at full resolution), random horizontal and vertical flips; channels-last on GPU.

    Every draw comes from ``generator`` (CPU) in a fixed order per step (new permutation, crop,
    flips), so a preset trains the same weights whatever else shares the generator in between.
    """

    def __init__(self, pool: torch.Tensor, batch_size: int, generator: torch.Generator, crop_size: int | None,
                 crop_until: int, device: torch.device):
        self.pool, self.device = pool.to(device), device
        self.generator = generator
        self.crop_size, self.crop_until = crop_size, crop_until
        self.indices = ShuffledIndices(len(self.pool), batch_size, generator)

    @classmethod
    def for_training(cls, pool: torch.Tensor, train: Any, generator: torch.Generator,
                     device: torch.device) -> "AugmentedBatches":
        """The batches of a tiny run: ``train.batch_size``, crops of ``train.crop_size`` until the last
        ``train.full_resolution_steps`` steps."""
        return cls(pool, train.batch_size, generator, train.crop_size, train.steps - train.full_resolution_steps, device)

    def batch(self, step: int) -> torch.Tensor:
        x = self.pool[self.indices.next().to(self.device)]
        size = self.crop_size
        if size is not None and size < min(x.shape[-2:]) and step < self.crop_until:
            top, left = (int(v) for v in torch.randint(0, min(x.shape[-2:]) - size + 1, (2,), generator=self.generator))
            x = x[..., top : top + size, left : left + size]
        x = x.float() / 127.5 - 1
        flips = torch.rand(2, len(x), generator=self.generator) < 0.5
        x = torch.where(flips[0].to(self.device)[:, None, None, None], x.flip(-1), x)
        x = torch.where(flips[1].to(self.device)[:, None, None, None], x.flip(-2), x)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def state_dict(self) -> dict[str, Any]:
        return self.indices.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.indices.load_state_dict(state)


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
