"""Frozen features, extracted once into the store.

A feature table is keyed by what determines it: the tokenizer's weight fingerprint, the
dataset view's fingerprint, the feature names (or the latent and its pooling), the
extraction precision and the augmentation. It is sharded: an interrupted extraction
resumes at the first missing shard, and every later probe, zero-shot run or protocol
variant on the same inputs reads it instead of running the model again.

Stored as float16 (half the bytes of ImageNet-scale tables) unless a shard's values do not
fit, then float32; read back as float32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from tokbench.hashing import content_key

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from tokbench.api import Tokenizer
    from tokbench.data.base import ImageDataset
    from tokbench.runtime.context import BuildContext

#: Bump when the bytes stored for the same request change.
EXTRACTION_VERSION = 1
LATENT = "latent"
FLOAT16_LIMIT = 60000.0


@dataclass(frozen=True)
class FeatureRequest:
    """``names``: ``Tokenizer.image_features`` names, or ``("latent",)`` for the encoder's
    latent average-pooled to a ``latent_pool`` x ``latent_pool`` grid and flattened."""

    names: tuple[str, ...]
    latent_pool: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    augmentation: Literal["none", "hflip"] = "none"
    #: float16 halves probe tables (float32 when values do not fit); generation latents keep float32
    storage: Literal["float16", "float32"] = "float16"

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a feature request needs at least one feature name")
        if LATENT in self.names and len(self.names) > 1:
            raise ValueError("the latent is extracted on its own; request image features separately")
        if self.latent_pool < 1:
            raise ValueError(f"latent_pool must be >= 1, got {self.latent_pool}")

    @property
    def uses_latent(self) -> bool:
        return self.names == (LATENT,)

    @property
    def views(self) -> int:
        return 2 if self.augmentation == "hflip" else 1


@dataclass
class FeatureTable:
    """Features of every image (and view): ``features[name]`` is (views * N, dim) float32,
    view-major; ``labels`` and ``indices`` (dataset positions) line up with the rows."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    indices: np.ndarray
    key: str
    extracted_now: bool

    def matrix(self, names: list[str] | tuple[str, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The named features side by side, and each name's column indices in it."""
        blocks, columns, offset = [], {}, 0
        for name in names:
            block = self.features[name]
            blocks.append(block)
            columns[name] = np.arange(offset, offset + block.shape[1])
            offset += block.shape[1]
        return np.concatenate(blocks, axis=1), columns


def feature_table_key(tokenizer_fingerprint: str, dataset_fingerprint: str, request: FeatureRequest, count: int, shard_size: int) -> str:
    described = asdict(request)
    if described["storage"] == "float16":  # the default since the first version: keep those keys
        del described["storage"]
    return content_key(
        {
            "features": tokenizer_fingerprint,
            "dataset": dataset_fingerprint,
            "request": described,
            "count": count,
            "shard": shard_size,
            "version": EXTRACTION_VERSION,
        }
    )


def extract_features(
    build: "BuildContext",
    tokenizer: "Tokenizer",
    tokenizer_fingerprint: str,
    dataset: "ImageDataset",
    request: FeatureRequest,
    *,
    count: int | None = None,
    batch_size: int = 64,
    shard_size: int = 1024,
    label: str = "",
) -> FeatureTable:
    """Features of the first ``count`` images of ``dataset`` (all by default), from the
    store when present, else extracted shard by shard (resumable)."""
    count = len(dataset) if count is None else min(count, len(dataset))
    if count < 1:
        raise ValueError("cannot extract features of an empty dataset")
    shards = [list(range(i, min(i + shard_size, count))) for i in range(0, count, shard_size)]
    key = feature_table_key(tokenizer_fingerprint, dataset.fingerprint(), request, count, shard_size)
    table = build.store.sharded(
        key=key,
        kind="features",
        num_shards=len(shards),
        meta={"label": label or f"features {', '.join(request.names)}", "request": asdict(request), "count": count},
    )
    missing = table.todo()
    if missing:
        from tokbench.runtime.timing import phase

        with phase("encoding" if request.names == ("latent",) else "feature extraction", label):
            for index in build.track(missing, desc=label or "features"):
                table.write_shard(index, lambda out, ids=shards[index]: _extract_shard(build, tokenizer, dataset, request, ids, batch_size, out))
    table.finalize()

    names = request.names
    per_shard = [
        {name: np.load(table.shard_dir(i) / f"{_file(name)}.npy") for name in (*names, "labels", "indices")} for i in range(len(shards))
    ]
    features = {
        name: np.concatenate([shard[name].astype(np.float32) for shard in per_shard], axis=1).reshape(-1, per_shard[0][name].shape[-1])
        for name in names
    }
    labels = np.tile(np.concatenate([shard["labels"] for shard in per_shard]), request.views)
    indices = np.tile(np.concatenate([shard["indices"] for shard in per_shard]), request.views)
    return FeatureTable(features, labels, indices, key, extracted_now=bool(missing))


def _file(name: str) -> str:
    return name.replace("/", "_")


def _extract_shard(build, tokenizer, dataset, request: FeatureRequest, ids: list[int], batch_size: int, out) -> None:
    import torch

    device = torch.device(build.device)
    outputs: dict[str, list[list[np.ndarray]]] = {name: [[] for _ in range(request.views)] for name in request.names}
    labels: list[np.ndarray] = []
    for images, batch_labels, _ in build.batches(dataset, batch_size, indices=ids):
        pixels = images.to(device, non_blocking=True).float().div_(255).to(tokenizer.dtype)
        labels.append(batch_labels.numpy())
        for view in range(request.views):
            batch = pixels if view == 0 else pixels.flip(-1)
            for name, value in _features(tokenizer, batch, request, device).items():
                outputs[name][view].append(value.float().cpu().numpy())
    for name, views in outputs.items():
        stacked = np.stack([np.concatenate(chunks) for chunks in views])  # (views, n, dim)
        if request.storage == "float16" and np.isfinite(stacked).all() and np.abs(stacked).max(initial=0.0) < FLOAT16_LIMIT:
            stacked = stacked.astype(np.float16)
        np.save(out / f"{_file(name)}.npy", stacked)
    np.save(out / "labels.npy", np.concatenate(labels).astype(np.int64))
    np.save(out / "indices.npy", np.asarray(ids, dtype=np.int64))


def _features(tokenizer, images: "torch.Tensor", request: FeatureRequest, device) -> dict[str, "torch.Tensor"]:
    import contextlib

    import torch
    import torch.nn.functional as F

    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if request.precision == "bf16"
        else contextlib.nullcontext()
    )
    with torch.no_grad(), autocast:
        if request.uses_latent:
            latents = tokenizer.encode(images).float()
            pooled = F.adaptive_avg_pool2d(latents, request.latent_pool)
            return {LATENT: pooled.flatten(1)}
        values = tokenizer.image_features(images, list(request.names))
    missing = [name for name in request.names if name not in values]
    if missing:
        raise KeyError(f"{type(tokenizer).__name__}.image_features did not return {missing}")
    return {name: values[name].float().flatten(1) for name in request.names}
