"""What plugins and tasks receive at run time: the store, the device, datasets
and cached artifacts. Holds no model; cheap to construct in every worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from tokbench.hashing import content_key
from tokbench.registry.plugins import Registry, get_registry, resolve
from tokbench.storage.store import Store

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
    #: steps between the resume checkpoints of trainings that produce artifacts (``launcher.checkpoint_every``;
    #: None: each trainer's default); an execution detail, in no key
    checkpoint_every: int | None = None
    #: while a tokenizer factory runs: its plugin's training code (``{"digest", "boundary", ...}``);
    #: every artifact ``cached`` makes meanwhile is keyed on it, so editing training code retrains
    training_code: dict[str, Any] | None = None
    #: the suite's datasets by name (``suite_dataset``; a tokenizer's ``train_dataset`` param)
    suite_datasets: dict[str, Any] = field(default_factory=dict)
    #: artifacts ``cached`` returned while a tokenizer was built: kind, key, reused or produced
    artifacts_used: list[dict[str, Any]] = field(default_factory=list)

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

    def suite_dataset(self, name: str):
        """The dataset the suite defines under ``name`` (e.g. a tokenizer's ``train_dataset``)."""
        if name not in self.suite_datasets:
            from tokbench.errors import TokbenchError, unknown_choice

            raise TokbenchError(unknown_choice("suite dataset", name, self.suite_datasets))
        config = self.suite_datasets[name]
        return self.build_dataset(config.kind, config.params)

    def _artifact_key(self, key_inputs: Any, kind: str) -> str:
        inputs: dict[str, Any] = {"kind": kind, "inputs": key_inputs}
        if self.training_code is not None:
            inputs["training_code"] = self.training_code["digest"]
        return content_key(inputs)

    def cached(self, key_inputs: Any, kind: str, producer: Callable[[Path], dict[str, Any] | None], label: str = "",
               collective: bool = False) -> Path:
        """The store artifact keyed by ``key_inputs`` (anything JSON-able), produced once.

        Called from a tokenizer factory, the key also holds the digest of the plugin's training
        code (``training_code``), and the artifact is listed in the result (``built_from``).

        ``collective``: on a multi-rank unit every rank runs ``producer`` together (DDP
        training, which initialises nothing itself but uses the unit's process group); by
        default rank 0 runs it alone while the others wait (``tokbench.runtime.ranks``)."""
        key = self._artifact_key(key_inputs, kind)
        reused = self.store.has(key)
        meta = {"label": label or kind, "inputs": key_inputs}
        if self.training_code is not None:
            meta["training_code"] = self.training_code
        path = self.store.get_or_create(key, producer, kind=kind, meta=meta, collective=collective)
        if self.training_code is not None:
            self.artifacts_used.append({"kind": kind, "key": key, "label": label or kind, "reused": reused,
                                        "training_code": self.training_code})
        return path

    def work_dir(self, key_inputs: Any, kind: str) -> Path:
        """A persistent scratch directory for the artifact ``cached`` would produce from the same
        inputs: long producers (training) keep resumable checkpoints there across interruptions.
        Leased while this process lives (``store gc`` leaves it alone) and removed once the
        artifact being produced around it commits."""
        return self.store.work_dir(self._artifact_key(key_inputs, kind))

    def track(self, iterable: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
        """A progress bar on long work (``tokbench.runtime.timing.progress``; off when ``progress`` is)."""
        from tokbench.runtime.timing import progress

        return progress(iterable, desc, total) if self.progress else iterable
