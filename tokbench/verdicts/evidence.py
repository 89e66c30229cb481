"""Evidence: what a metric was computed from, item by item, as pointers into the store.

A task that reports a metric also says, in its record's ``details.evidence[metric]``, where
the per-item data behind it lives, so ``tokbench report`` can compute intervals and tests
later without running a model. Pointers name store artifacts; nothing is copied.

Kinds (``kind``):

``mean``        the metric is the mean of ``values`` (PSNR, SSIM, LPIPS per image; top-1 correctness
                averaged over probe seeds per example); ``inf_as`` replaces infinities first
                (identical images' PSNR counts as 100 dB)
``proportion``  the mean of 0/1 ``values`` (top-1 / top-5 correctness, precision/recall hits)
``frechet``     Fréchet distance between ``features`` and ``reference`` (rFID, gFID)
``kid``         kernel Inception distance between ``features`` and ``reference``
``recall``      improved recall of ``reference`` (real) against ``features`` (generated): its
                replicates rebuild the generated manifold per resample (``tokbench.stats.manifold``)

``paired`` says whether rows of one column saw the same items (reconstruction, probes,
zero-shot: yes; generated samples: no), which decides the test between rows.

A pointer: ``{"artifact": key, "file": "psnr.npy", "shards": n | None}``; a sharded
artifact's arrays are concatenated in shard order. Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("mean", "proportion", "frechet", "kid", "recall")


def pointer(artifact: str, file: str, shards: int | None = None) -> dict[str, Any]:
    """A pointer to ``file`` inside the store artifact ``artifact`` (in every shard, when sharded)."""
    return {"artifact": artifact, "file": file, "shards": shards}


def per_item(kind: str, values: dict[str, Any], paired: bool = True) -> dict[str, Any]:
    """Evidence of a metric that is the mean of per-item ``values`` (``kind``: mean or proportion)."""
    if kind not in ("mean", "proportion"):
        raise ValueError(f"per-item evidence kind must be mean or proportion, got {kind!r}")
    return {"kind": kind, "values": values, "paired": paired}


def distance(kind: str, features: dict[str, Any], reference: dict[str, Any], paired: bool) -> dict[str, Any]:
    """Evidence of a distance between two feature sets (``kind``: frechet or kid). ``paired``: the
    reference rows are the same items as the feature rows (rFID: originals and their reconstructions)."""
    if kind not in ("frechet", "kid", "recall"):
        raise ValueError(f"distance evidence kind must be frechet, kid or recall, got {kind!r}")
    return {"kind": kind, "features": features, "reference": reference, "paired": paired}


class EvidenceError(Exception):
    """The store no longer holds what a record's evidence points to."""


def _files(store, ptr: dict[str, Any]) -> list[Path]:
    key, file, shards = ptr["artifact"], ptr["file"], ptr.get("shards")
    if not store.has(key):
        raise EvidenceError(f"artifact {key} ({file}) is not in the store at {store.root}")
    base: Path = store.object_dir(key)
    if shards is None:
        return [base / file]
    from tokbench.storage.store import ShardedArtifact

    return [base / ShardedArtifact.shard_name(i) / file for i in range(int(shards))]


def load_array(store, ptr: dict[str, Any]) -> np.ndarray:
    """The array a pointer names (shards concatenated)."""
    files = _files(store, ptr)
    return np.load(files[0]) if len(files) == 1 else np.concatenate([np.load(f) for f in files])


def array_length(store, ptr: dict[str, Any]) -> int:
    """The number of rows (items) of the array a pointer names, without reading it."""
    return sum(int(np.load(f, mmap_mode="r").shape[0]) for f in _files(store, ptr))


def save_correctness(build, key_inputs: Any, arrays: dict[str, np.ndarray], label: str) -> dict[str, Any]:
    """Store per-example correctness (one array per metric: 0/1, or the fraction of probe seeds
    that got the example right) as one artifact, and return the evidence of each metric."""

    def produce(out: Path) -> None:
        for name, values in arrays.items():
            np.save(out / f"{name}.npy", np.asarray(values, dtype=np.float32))

    directory = build.cached({"correctness": key_inputs, "metrics": sorted(arrays)}, "per-example-correctness", produce,
                             label=label)
    evidence = {}
    for name, values in arrays.items():
        binary = bool(np.isin(np.asarray(values, dtype=np.float32), (0.0, 1.0)).all())
        evidence[name] = per_item("proportion" if binary else "mean", pointer(directory.name, f"{name}.npy"))
    return evidence
