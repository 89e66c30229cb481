"""Batch collation and the deterministic, resumable, rank-sliced loader."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tokbench.errors import TokbenchError
from tokbench_vtp.pretrain.augment import MultiCropAugmentation, MultiCropConfig
from tokbench_vtp.pretrain.collate import PretrainBatch, PretrainCollator, Sample
from tokbench_vtp.pretrain.loader import DeterministicLoader
from tokbench_vtp.pretrain.sources import ShapesCaptionSource

CONFIG = MultiCropConfig(image_size=32, global_size=32, local_size=16, n_local=2)




def fake_tokenize(captions: list[str]) -> torch.Tensor:
    """Deterministic stand-in for a BPE tokenizer: character codes, padded to 77."""
    tokens = torch.zeros(len(captions), 77, dtype=torch.int32)
    for row, caption in enumerate(captions):
        codes = [ord(c) for c in caption[:77]]
        tokens[row, : len(codes)] = torch.tensor(codes)
    return tokens


@pytest.fixture(scope="module")
def source() -> ShapesCaptionSource:
    return ShapesCaptionSource(split="train", num_images=24, resolution=24, seed=0)


def _collator(ssl_batch: int = 2, rec_batch: int = 1, **kwargs) -> PretrainCollator:
    return PretrainCollator(MultiCropAugmentation(CONFIG), fake_tokenize, ssl_batch, rec_batch, patch_size=16, **kwargs)


def _loader(source, **kwargs) -> DeterministicLoader:
    options = dict(collator=_collator(), global_batch_size=4, seed=11)
    options.update(kwargs)
    return DeterministicLoader(source, **options)


def assert_batches_equal(first: PretrainBatch, second: PretrainBatch) -> None:
    for field in dataclasses.fields(PretrainBatch):
        a, b = getattr(first, field.name), getattr(second, field.name)
        assert a.dtype == b.dtype and torch.equal(a, b), field.name


def test_every_field_has_the_documented_shape(source):
    batch = next(_loader(source, collator=_collator(ssl_batch=3, rec_batch=2)))
    assert batch.clip_images.shape == (4, 3, 32, 32) and batch.clip_images.dtype == torch.float32
    assert batch.text_tokens.shape == (4, 77) and batch.text_tokens.dtype == torch.long
    assert batch.global_crops.shape == (6, 3, 32, 32)
    assert batch.local_crops.shape == (6, 3, 16, 16)
    assert batch.masks.shape == (6, 4) and batch.masks.dtype == torch.bool
    assert batch.rec_images.shape == (2, 3, 32, 32)
    assert batch.indices.shape == (4,) and batch.indices.dtype == torch.long
    for images in (batch.clip_images, batch.global_crops, batch.local_crops, batch.rec_images):
        assert images.min() >= 0 and images.max() <= 1
    assert batch.batch_size == 4
    moved = batch.to("cpu")
    assert_batches_equal(batch, moved)


def test_resume_reproduces_the_next_batch_bit_exactly(source):
    uninterrupted = _loader(source)
    expected = [next(uninterrupted) for _ in range(4)]
    interrupted = _loader(source)
    for _ in range(3):
        next(interrupted)
    state = interrupted.state_dict()
    assert state["step"] == 3
    resumed = _loader(source)
    resumed.load_state_dict(state)
    assert_batches_equal(next(resumed), expected[3])
    assert not torch.equal(expected[2].indices, expected[3].indices)


def test_resume_across_an_epoch_boundary_and_with_workers(source):
    # 24 samples / 4 = 6 steps per epoch; steps 5..8 straddle epochs 0 and 1
    plain = _loader(source)
    expected = [plain.batch_at(step) for step in range(9)]
    with_workers = _loader(source, num_workers=2)
    with_workers.load_state_dict({"step": 5})
    for step in range(5, 9):
        assert_batches_equal(next(with_workers), expected[step])
    assert with_workers.state_dict()["step"] == 9 and with_workers.epoch == 1
    with_workers.close()


def test_each_epoch_is_a_permutation_and_epochs_differ(source):
    loader = _loader(source)
    epochs = [torch.cat([next(loader).indices for _ in range(6)]).tolist() for _ in range(2)]
    assert sorted(epochs[0]) == list(range(24)) and sorted(epochs[1]) == list(range(24))
    assert epochs[0] != epochs[1]


def test_two_ranks_partition_the_global_batch(source):
    global_loader = _loader(source, global_batch_size=8, collator=_collator(ssl_batch=2, rec_batch=1))
    ranks = [
        _loader(source, global_batch_size=8, rank=r, world_size=2, collator=_collator(ssl_batch=1, rec_batch=1))
        for r in range(2)
    ]
    for _ in range(2):
        whole = next(global_loader)
        parts = [next(loader) for loader in ranks]
        assert torch.equal(torch.cat([p.indices for p in parts]), whole.indices)  # contiguous slices, in order
        assert not set(parts[0].indices.tolist()) & set(parts[1].indices.tolist())
        # same global positions -> same augmentation seeds -> same plain views and tokens
        assert torch.equal(torch.cat([p.clip_images for p in parts]), whole.clip_images)
        assert torch.equal(torch.cat([p.text_tokens for p in parts]), whole.text_tokens)


def test_subsets_differ_between_steps_and_rec_is_a_subset_of_clip(source):
    loader = _loader(source, collator=_collator(ssl_batch=2, rec_batch=2))
    batches = [next(loader) for _ in range(6)]
    assert len({tuple(b.ssl_positions.tolist()) for b in batches}) > 1
    assert len({tuple(b.rec_positions.tolist()) for b in batches}) > 1
    for batch in batches:
        assert torch.equal(batch.rec_images, batch.clip_images[batch.rec_positions])


class _RecordingAugment(MultiCropAugmentation):
    def __init__(self, config):
        super().__init__(config)
        self.calls: list[bool] = []

    def __call__(self, image, rng, need_ssl=True):
        self.calls.append(need_ssl)
        return super().__call__(image, rng, need_ssl)


def _samples(source, count: int) -> list[Sample]:
    return [Sample(i, *source.get(i), (5, 1, i)) for i in range(count)]


def test_crops_only_for_the_ssl_subset_in_crop_major_order(source):
    augment = _RecordingAugment(CONFIG)
    collator = PretrainCollator(augment, fake_tokenize, ssl_batch=2, rec_batch=0, patch_size=16)
    samples = _samples(source, 5)
    batch = collator(samples, seed=[3])
    assert sorted(augment.calls) == [False, False, False, True, True]
    reference = MultiCropAugmentation(CONFIG)
    for row, position in enumerate(batch.ssl_positions.tolist()):
        sample = samples[position]
        views = reference(sample.image, np.random.default_rng(list(sample.seed)))
        for crop in range(2):
            assert torch.equal(batch.global_crops[crop * 2 + row], views["global_crops"][crop])
            assert torch.equal(batch.local_crops[crop * 2 + row], views["local_crops"][crop])
    assert torch.equal(batch.indices, torch.arange(5))
    assert torch.equal(batch.text_tokens, fake_tokenize([s.caption for s in samples]).long())


def test_masks_follow_the_mask_probability(source):
    collator = PretrainCollator(
        MultiCropAugmentation(CONFIG), fake_tokenize, 4, 0, patch_size=8, mask_probability=0.5, mask_ratio=(0.2, 0.5)
    )
    batch = collator(_samples(source, 4), seed=[0])
    assert batch.masks.shape == (8, 16)
    assert int(batch.masks.any(dim=1).sum()) == 4  # half of the 2 * 4 global crops are masked


def test_switched_off_branches_give_empty_tensors(source):
    batch = _collator(ssl_batch=0, rec_batch=0)(_samples(source, 3), seed=[1])
    assert batch.global_crops.shape == (0, 3, 32, 32)
    assert batch.local_crops.shape == (0, 3, 16, 16)
    assert batch.masks.shape == (0, 4) and batch.masks.dtype == torch.bool
    assert batch.rec_images.shape == (0, 3, 32, 32)
    assert batch.clip_images.shape == (3, 3, 32, 32)


def test_real_open_clip_tokenizer(source):
    open_clip = pytest.importorskip("open_clip")
    collator = PretrainCollator(MultiCropAugmentation(CONFIG), open_clip.get_tokenizer("ViT-B-32"), 1, 1)
    batch = collator(_samples(source, 2), seed=[0])
    assert batch.text_tokens.shape == (2, 77) and batch.text_tokens.dtype == torch.long
    assert (batch.text_tokens[:, 0] == 49406).all()  # start-of-text token


def test_clear_errors_for_bad_settings(source):
    with pytest.raises(TokbenchError, match="not divisible by world_size=3"):
        _loader(source, global_batch_size=8, world_size=3)
    with pytest.raises(TokbenchError, match="fewer than one global batch"):
        _loader(source, global_batch_size=32)
    with pytest.raises(ValueError, match="exceed the per-rank batch"):
        _collator(ssl_batch=5)(_samples(source, 4), seed=[0])
    loader = _loader(source)
    state = loader.state_dict()
    with pytest.raises(TokbenchError, match="seed=11"):
        _loader(source, seed=12).load_state_dict(state)
