"""iBOT block masks and DINOv2's per-batch masking scheme."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokbench_vtp.pretrain.masking import BlockMaskGenerator, sample_batch_masks




def test_block_masks_never_exceed_the_target_and_mostly_reach_it():
    generator = BlockMaskGenerator((16, 16))
    rng = np.random.default_rng(0)
    reached = []
    for target in [0, 1, 5, 26, 64, 128]:
        for _ in range(20):
            mask = generator(target, rng)
            assert mask.shape == (16, 16) and mask.dtype == bool
            assert mask.sum() <= target
            if target == 0:
                assert not mask.any()
            else:
                reached.append(mask.sum() / target)
    assert np.mean(reached) > 0.9  # blocks are placed until the target is (nearly) met


@pytest.mark.parametrize("aspect, shape", [(1.0, (2, 2)), (4.0, (4, 1)), (0.25, (1, 4))])
def test_blocks_are_filled_rectangles_with_the_drawn_aspect(aspect, shape):
    # area 4 and a fixed aspect (height / width) leave exactly one block shape
    generator = BlockMaskGenerator((8, 8), min_num_patches=4, min_aspect=aspect, max_aspect=aspect)
    rng = np.random.default_rng(2)
    for _ in range(10):
        mask = generator(4, rng)
        rows, cols = np.nonzero(mask)
        assert mask.sum() == 4
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == shape


def test_block_masks_are_reproducible_and_validated():
    generator = BlockMaskGenerator((16, 16))
    first = generator(50, np.random.default_rng(7))
    np.testing.assert_array_equal(first, generator(50, np.random.default_rng(7)))
    assert not np.array_equal(first, generator(50, np.random.default_rng(8)))
    with pytest.raises(ValueError, match="cannot mask 300 patches"):
        generator(300, np.random.default_rng(0))
    with pytest.raises(ValueError, match="aspect"):
        BlockMaskGenerator((4, 4), min_aspect=2.0, max_aspect=1.0)


def test_tiny_grid_still_masks():
    generator = BlockMaskGenerator((2, 2))
    masks = [generator(2, np.random.default_rng(seed)) for seed in range(20)]
    assert all(m.sum() <= 2 for m in masks)
    assert any(m.sum() > 0 for m in masks)


def test_batch_masks_follow_the_dinov2_scheme():
    grid = (16, 16)
    masks = sample_batch_masks(10, grid, mask_probability=0.5, ratio_range=(0.1, 0.5), rng=np.random.default_rng(0))
    assert masks.shape == (10, 256) and masks.dtype == bool
    counts = masks.sum(axis=1)
    assert (counts > 0).sum() == 5  # round(10 * 0.5) images masked, the rest untouched
    assert counts.max() <= int(256 * 0.5)
    # Ratios spread linearly over the range: the 5 masked images span from ~10% to ~50%.
    masked = np.sort(counts[counts > 0])
    assert masked[0] <= int(256 * 0.18) and masked[-1] >= int(256 * 0.3)


def test_batch_masks_are_shuffled_and_reproducible():
    rng_seeds = range(10)
    prefixes = []
    for seed in rng_seeds:
        masks = sample_batch_masks(8, (8, 8), 0.5, (0.2, 0.5), np.random.default_rng(seed))
        np.testing.assert_array_equal(masks, sample_batch_masks(8, (8, 8), 0.5, (0.2, 0.5), np.random.default_rng(seed)))
        prefixes.append(bool(masks[:4].any(axis=1).all()))
    assert not all(prefixes)  # masked images are not always the first ones


def test_batch_mask_edge_cases_and_validation():
    rng = np.random.default_rng(0)
    assert not sample_batch_masks(6, (4, 4), 0.0, rng=rng).any()
    assert sample_batch_masks(6, (8, 8), 1.0, (0.3, 0.5), rng=rng).any(axis=1).all()
    assert sample_batch_masks(0, (4, 4), rng=rng).shape == (0, 16)
    with pytest.raises(ValueError, match="mask_probability"):
        sample_batch_masks(4, (4, 4), 1.5, rng=rng)
    with pytest.raises(ValueError, match="ratio_range"):
        sample_batch_masks(4, (4, 4), 0.5, (0.6, 0.2), rng=rng)
