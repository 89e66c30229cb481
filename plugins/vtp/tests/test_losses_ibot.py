"""IBOTPatchLoss: per-image weighting, centring and Sinkhorn-Knopp (single process)."""

from __future__ import annotations

import math

import pytest
import torch

from tokbench_vtp.pretrain.losses.ibot import IBOTPatchLoss, masked_patch_weights




MASKS = torch.tensor([[True, False, False, False], [True, True, False, True]])  # 1 and 3 masked patches


def _rows_with_ce(x: list[float], temp: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Student rows [0, x*temp] against teacher [1, 0]: CE = log(1 + e^x) per row."""
    student = torch.tensor([[0.0, v * temp] for v in x])
    teacher = torch.tensor([[1.0, 0.0]] * len(x))
    return student, teacher


def test_masked_patch_weights() -> None:
    assert torch.allclose(masked_patch_weights(MASKS), torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3]))


def test_each_masked_image_counts_equally_by_hand() -> None:
    # CEs log2, log4, log4, log8: image 0 -> log 2, image 1 -> mean(2, 2, 3) log 2 = 7/3 log 2.
    student, teacher = _rows_with_ce([0.0, math.log(3), math.log(3), math.log(7)])
    loss = IBOTPatchLoss(patch_out_dim=2)
    got = loss.forward_masked(student, teacher, MASKS)
    assert got.item() == pytest.approx((1 + 7 / 3) / 2 * math.log(2), rel=1e-6)
    # A third, unmasked image still counts in the denominator.
    masks3 = torch.cat([MASKS, torch.zeros(1, 4, dtype=torch.bool)])
    got3 = loss.forward_masked(student, teacher, masks3)
    assert got3.item() == pytest.approx((1 + 7 / 3) / 3 * math.log(2), rel=1e-6)


def test_padding_rows_and_weight_override() -> None:
    student, teacher = _rows_with_ce([0.0, math.log(3), math.log(3), math.log(7), 5.0, 9.0])
    loss = IBOTPatchLoss(patch_out_dim=2)
    padded = loss.forward_masked(student, teacher, MASKS, n_masked_patches=4)
    assert padded.item() == pytest.approx((1 + 7 / 3) / 2 * math.log(2), rel=1e-6)
    ones = loss.forward_masked(student[:4], teacher[:4], MASKS, masks_weight=torch.ones(4))
    assert ones.item() == pytest.approx((1 + 2 + 2 + 3) / 2 * math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="n_masked_patches"):
        loss.forward_masked(student, teacher, MASKS)
    with pytest.raises(ValueError, match="bool"):
        loss.forward_masked(student[:4], teacher[:4], MASKS.float())


def test_centre_update_and_softmax_centering() -> None:
    loss = IBOTPatchLoss(patch_out_dim=2, center_momentum=0.5)
    loss.update_center(torch.tensor([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0]]))  # mean [2, 2]
    assert torch.allclose(loss.center, torch.tensor([[1.0, 1.0]]))
    probs = loss.softmax_center_teacher(torch.tensor([[1.0, 1.0 + 0.1 * math.log(3)]]), teacher_temp=0.1)
    assert torch.allclose(probs, torch.tensor([[0.25, 0.75]]))


def test_sinkhorn_uses_the_masked_patch_count() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=g)
    loss = IBOTPatchLoss(patch_out_dim=3)
    p = loss.sinkhorn_knopp_teacher(logits, 0.3, n_masked_patches_tensor=torch.tensor(5), n_iterations=200)
    assert torch.allclose(p.sum(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(p.sum(dim=0), torch.full((3,), 5 / 3), atol=1e-4)
    assert torch.allclose(loss.sinkhorn_knopp_teacher(logits, 0.3), loss.sinkhorn_knopp_teacher(logits, 0.3, 5))
