"""FID reference features of an evaluation dataset: computed once, shared by every task and
tokenizer that scores against the same images with the same Inception (rFID and gFID alike).

The reference is exactly the dataset's uint8 images (its crop and resolution); features are
2048-d float64, stored sharded so an interrupted extraction resumes at the first missing shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tokbench.hashing import content_key

if TYPE_CHECKING:  # pragma: no cover
    from tokbench.tasks.base import TaskContext

#: bump when the reference features of the same images and weights would change
REFERENCE_VERSION = "fid-reference-v1"
#: images per stored shard: one layout for every task, so that rFID and gFID against the same
#: images share one extraction (the tasks' own ``shard_size`` differ); 1024 keeps the keys that
#: generation's default always had. The Inception batch size is not in the key: features of an
#: image do not depend on it (checked bit for bit on CPU, batch 32 vs 64)
REFERENCE_SHARD_SIZE = 1024


class UsesFIDWeights:
    """For tasks whose params have ``fid_weights``: the weights file, resolved once, and its
    content hash as a key input (other weights, other numbers)."""

    _fid_weights: Path | None = None

    def fid_weights(self) -> Path:
        from tokbench.metrics.fid_weights import resolve_fid_weights

        if self._fid_weights is None:
            self._fid_weights = resolve_fid_weights(self.params.fid_weights)  # type: ignore[attr-defined]
        return self._fid_weights

    def fid_key_inputs(self) -> dict[str, Any]:
        from tokbench.hashing import file_identity

        return {"fid_weights_sha256": file_identity(self.fid_weights())}


def reference_pointer(key: str, count: int) -> dict[str, Any]:
    """Where the reference features of ``count`` images stored under ``key`` live, as evidence
    (``tokbench.verdicts.evidence``)."""
    from tokbench.verdicts.evidence import pointer

    return pointer(key, "features.npy", -(-count // REFERENCE_SHARD_SIZE))


def reference_features(ctx: "TaskContext", extractor, count: int | None, batch_size: int) -> tuple[np.ndarray, str]:
    """(N, 2048) float64 features of the first ``count`` images of ``ctx.dataset`` and their store key."""
    dataset = ctx.dataset
    count = len(dataset) if count is None else min(count, len(dataset))
    size = REFERENCE_SHARD_SIZE
    shards = [list(range(i, min(i + size, count))) for i in range(0, count, size)]
    key = content_key({"reference-features": dataset.fingerprint(), "count": count, "shard": size,
                       "evaluator": extractor.identity.get("weights_sha256"), "protocol": REFERENCE_VERSION})
    sharded = ctx.build.store.sharded(key=key, kind="fid-reference-features", num_shards=len(shards),
                                      meta={"label": f"FID reference features of {ctx.dataset_name} ({count} images)"})

    def produce(out, ids: list[int]) -> None:
        features = [extractor(images.to(ctx.build.device)).cpu().numpy()
                    for images, _, _ in ctx.build.batches(dataset, batch_size, indices=ids)]
        np.save(out / "features.npy", np.concatenate(features).astype(np.float64))

    todo = sharded.todo()
    if todo:
        from tokbench.runtime.timing import phase

        with phase("feature extraction", f"FID reference features of {ctx.dataset_name}"):
            for index in ctx.build.track(todo, desc=f"reference features {ctx.dataset_name}"):
                sharded.write_shard(index, lambda out, ids=shards[index]: produce(out, ids))
    sharded.finalize()
    features = np.concatenate([np.load(sharded.shard_dir(i) / "features.npy") for i in range(len(shards))])
    return features, key
