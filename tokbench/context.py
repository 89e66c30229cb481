"""What plugins and tasks receive at run time: the store, the device, datasets
and cached artifacts. Holds no model; cheap to construct in every worker."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from tokbench.hashing import content_key
from tokbench.plugins import Registry, get_registry, resolve
from tokbench.store import Store

T = TypeVar("T")


def resolve_device(requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class BuildContext:
    """Passed to tokenizer factories and tasks."""

    store: Store
    device: str = "cpu"
    progress: bool = True
    registry: Registry = field(default_factory=get_registry)
    #: processes decoding images for extraction (``launcher.loader_workers`` resolved for the device)
    loader_workers: int = 0

    def batches(self, dataset, batch_size: int, indices=None):
        """``(uint8 images (B,3,H,W), labels, indices)`` batches of ``dataset``, decoded by
        ``loader_workers`` processes into pinned memory on GPU runs (same order, same pixels)."""
        from tokbench.data.loader import iterate_batches

        return iterate_batches(dataset, batch_size, indices=indices, num_workers=self.loader_workers)

    def build_dataset(self, kind: str, params: dict[str, Any] | Any):
        """Construct a registered dataset from its kind and params (dict or model)."""
        entry = self.registry.get("datasets", kind)
        params_model = resolve(entry.params)
        if not isinstance(params, params_model):
            params = params_model.model_validate(params)
        return resolve(entry.dataset).from_params(params)

    def cached(self, key_inputs: Any, kind: str, producer: Callable[[Path], dict[str, Any] | None], label: str = "",
               collective: bool = False) -> Path:
        """The store artifact keyed by ``key_inputs`` (anything JSON-able), produced once.

        ``collective``: on a multi-rank unit every rank runs ``producer`` together (DDP
        training, which initialises nothing itself but uses the unit's process group); by
        default rank 0 runs it alone while the others wait (``tokbench.ranks``)."""
        key = content_key({"kind": kind, "inputs": key_inputs})
        return self.store.get_or_create(key, producer, kind=kind, meta={"label": label or kind, "inputs": key_inputs},
                                        collective=collective)

    def work_dir(self, key_inputs: Any, kind: str) -> Path:
        """A persistent scratch directory for the artifact ``cached`` would produce from the same
        inputs: long producers (training) keep resumable checkpoints there across interruptions."""
        key = content_key({"kind": kind, "inputs": key_inputs})
        path = self.store.root / "partial" / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def track(self, iterable: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
        """A progress bar on long work (to stderr; silent when progress is off)."""
        if not self.progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=os.environ.get("TOKBENCH_NO_PROGRESS") == "1")
