"""Exactly resumable pretraining batches for every rank.

Everything random is derived from ``seed`` and a position, never from state
carried between batches:

* global sample order: a permutation of the source per epoch, seeded by (seed, epoch);
* global batch ``step`` holds positions ``[k * G, (k + 1) * G)`` of epoch ``step // steps_per_epoch``
  (k = step mod steps_per_epoch; an incomplete tail of an epoch is dropped), and rank r takes its
  contiguous slice of size G / world_size;
* a sample's augmentation rng is seeded by (seed, global stream position ``step * G + j``),
  so the same image gets new views every epoch;
* a batch's subset/mask rng is seeded by (seed, step, rank).

So the batch of any step is a pure function of (source, collator, seed, step,
rank, world size), and resuming needs nothing but the step counter. With
``num_workers > 0`` a torch DataLoader computes whole batches in workers,
indexed by step, which yields the same batches in the same order. (Workers run
torch with one thread; keep ``num_workers`` unchanged across a restart, since a
float kernel such as the blur could round differently under another thread count.)
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from tokbench.errors import TokbenchError
from tokbench.training.tiny import torch_threads
from tokbench_vtp.pretrain.collate import PretrainBatch, PretrainCollator, Sample
from tokbench_vtp.pretrain.sources import CaptionSource

# Separate seed streams so that e.g. epoch 3's permutation never shares a
# generator with sample 3's augmentation.
_STREAM_ORDER, _STREAM_SAMPLE, _STREAM_BATCH = 0, 1, 2


class _StepBatches(Dataset[PretrainBatch]):
    """Map-style dataset over steps: item ``step`` is this rank's batch of that step."""

    def __init__(
        self,
        source: CaptionSource,
        collator: PretrainCollator,
        global_batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
    ):
        self.source = source
        self.collator = collator
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.rank = rank
        self.local_batch_size = global_batch_size // world_size
        self.num_samples = len(source)
        self.steps_per_epoch = self.num_samples // global_batch_size
        self._order_epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's permutation of dataset indices (cached: one epoch at a time)."""
        if epoch != self._order_epoch:
            self._order = np.random.default_rng([self.seed, _STREAM_ORDER, epoch]).permutation(self.num_samples)
            self._order_epoch = epoch
        return self._order

    def positions(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(dataset indices, global stream positions) of this rank's samples at ``step``."""
        epoch, batch_in_epoch = divmod(step, self.steps_per_epoch)
        offset = self.rank * self.local_batch_size
        start = batch_in_epoch * self.global_batch_size + offset
        indices = self.order(epoch)[start : start + self.local_batch_size]
        stream = step * self.global_batch_size + offset + np.arange(self.local_batch_size, dtype=np.int64)
        return indices, stream

    def __getitem__(self, step: int) -> PretrainBatch:
        indices, stream = self.positions(int(step))
        samples = []
        for index, position in zip(indices.tolist(), stream.tolist()):
            image, caption = self.source.get(index)
            samples.append(Sample(index, image, caption, (self.seed, _STREAM_SAMPLE, position)))
        with torch_threads(1):  # per-view ops on small tensors: threads only add overhead
            return self.collator(samples, [self.seed, _STREAM_BATCH, int(step), self.rank])


class _StepsFrom(Sampler[int]):
    """start, start + 1, ... without end: training is counted in steps."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self) -> Iterator[int]:
        step = self.start
        while True:
            yield step
            step += 1


def _no_collate(batch: PretrainBatch) -> PretrainBatch:
    return batch


class DeterministicLoader:
    """Endless iterator of this rank's ``PretrainBatch`` es, resumable bit-exactly.

    ``state_dict()["step"]`` counts batches handed out; loading it into a fresh
    loader with the same source, collator, seed and global batch size makes the
    next batch identical to the one an uninterrupted run would have produced.
    """

    def __init__(
        self,
        source: CaptionSource,
        collator: PretrainCollator,
        global_batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
    ):
        if world_size < 1 or not 0 <= rank < world_size:
            raise TokbenchError(f"rank must be in [0, world_size); got rank={rank}, world_size={world_size}")
        if global_batch_size < 1 or global_batch_size % world_size:
            raise TokbenchError(
                f"global_batch_size={global_batch_size} is not divisible by world_size={world_size}; "
                f"use a multiple of {world_size} such as {max(1, global_batch_size // world_size) * world_size}"
            )
        if len(source) < global_batch_size:
            raise TokbenchError(
                f"the source has {len(source)} samples, fewer than one global batch of {global_batch_size}; "
                "lower global_batch_size or use more data"
            )
        if seed < 0:
            raise TokbenchError(f"seed must be non-negative (numpy seed sequences reject negative entropy), got {seed}")
        if num_workers < 0:
            raise TokbenchError(f"num_workers must be >= 0, got {num_workers}")
        self.batches = _StepBatches(source, collator, global_batch_size, seed, rank, world_size)
        self.source = source
        self.seed = seed
        self.global_batch_size = global_batch_size
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.step = 0
        self._iterator: Iterator[PretrainBatch] | None = None
        self._fingerprint: str | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    @property
    def epoch(self) -> int:
        """Epoch of the next batch."""
        return self.step // self.steps_per_epoch

    def source_fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = self.source.fingerprint()
        return self._fingerprint

    def batch_at(self, step: int) -> PretrainBatch:
        """This rank's batch of ``step``, computed in-process (no state change)."""
        batch = self.batches[step]
        return batch.pin_memory() if self.pin_memory else batch

    def __iter__(self) -> "DeterministicLoader":
        return self

    def __next__(self) -> PretrainBatch:
        if self.num_workers == 0:
            batch = self.batch_at(self.step)
        else:
            if self._iterator is None:
                self._iterator = iter(
                    DataLoader(
                        self.batches,
                        batch_size=None,
                        sampler=_StepsFrom(self.step),
                        num_workers=self.num_workers,
                        collate_fn=_no_collate,
                        pin_memory=self.pin_memory,
                        prefetch_factor=self.prefetch_factor,
                    )
                )
            batch = next(self._iterator)
        self.step += 1
        return batch

    def close(self) -> None:
        """Stop worker processes (they restart on the next ``next``)."""
        self._iterator = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "seed": self.seed,
            "global_batch_size": self.global_batch_size,
            "num_samples": len(self.source),
            "source_fingerprint": self.source_fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state["step"]``. Refuses a state from a different seed,
        batch size or data, since the next batch would then not be the one the
        interrupted run would have seen."""
        for key, mine in (
            ("seed", self.seed),
            ("global_batch_size", self.global_batch_size),
            ("num_samples", len(self.source)),
            ("source_fingerprint", self.source_fingerprint() if "source_fingerprint" in state else None),
        ):
            if key in state and state[key] != mine:
                raise TokbenchError(
                    f"loader state has {key}={state[key]!r} but this loader has {mine!r}; "
                    "resume with the same data, seed and global batch size (or start a new run)"
                )
        step = int(state["step"])
        if step < 0:
            raise TokbenchError(f"loader state has a negative step {step}")
        self.close()
        self.step = step
