"""KoLeoLoss and ReconstructionLoss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tokbench_vtp.pretrain.losses.koleo import KoLeoLoss
from tokbench_vtp.pretrain.losses.reconstruction import ReconstructionLoss




def _circle(degrees: list[float]) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees])


def test_koleo_three_points_on_an_arc_by_hand() -> None:
    # Angles 0, 30, 90 degrees: nearest neighbours 0<->30 (chord 2 sin 15deg) and 90->30 (chord 1).
    x = _circle([0.0, 30.0, 90.0])
    expected = -(2 * math.log(2 * math.sin(math.radians(15))) + math.log(1.0)) / 3
    assert KoLeoLoss()(x).item() == pytest.approx(expected, abs=1e-6)
    # Rows are normalised first: rescaling each vector changes nothing.
    scaled = x * torch.tensor([[3.0], [0.5], [10.0]])
    assert KoLeoLoss()(scaled).item() == pytest.approx(expected, abs=1e-6)


def test_koleo_matches_brute_force_nearest_distance() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 4, generator=g)
    u = nn.functional.normalize(x, dim=-1)
    d = torch.cdist(u, u) + torch.eye(9) * 10
    expected = -torch.log(d.min(dim=1).values).mean()
    assert KoLeoLoss()(x).item() == pytest.approx(expected.item(), abs=1e-5)


def test_koleo_gradient_spreads_points_and_rejects_single_row() -> None:
    x = _circle([0.0, 10.0, 180.0]).requires_grad_(True)
    KoLeoLoss()(x).backward()
    with torch.no_grad():
        moved = x - 0.01 * x.grad
    assert KoLeoLoss()(moved).item() < KoLeoLoss()(x.detach()).item()
    with pytest.raises(ValueError, match="B >= 2"):
        KoLeoLoss()(torch.ones(1, 3))


class _MeanSquared(nn.Module):
    """Stand-in perceptual distance: per-image mean squared error."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).flatten(1).mean(dim=1)


def test_reconstruction_l1_and_weighted_perceptual() -> None:
    target = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])  # (1, 1, 2, 2)
    rec = torch.zeros_like(target, requires_grad=True)
    total, parts = ReconstructionLoss(l1_weight=2.0, perceptual_weight=0.5, perceptual=_MeanSquared())(rec, target)
    assert parts["l1"].item() == pytest.approx(1.5)
    assert parts["perceptual"].item() == pytest.approx((1 + 4 + 9) / 4)
    assert total.item() == pytest.approx(2 * 1.5 + 0.5 * 3.5)
    total.backward()
    assert rec.grad is not None and rec.grad.abs().sum() > 0


def test_reconstruction_l1_only_and_errors() -> None:
    total, parts = ReconstructionLoss(perceptual_weight=0.0)(torch.ones(2, 3), torch.zeros(2, 3))
    assert total.item() == 1.0 and set(parts) == {"l1"}
    with pytest.raises(ValueError, match="perceptual_weight=0"):
        ReconstructionLoss()
    with pytest.raises(ValueError, match=">= 0"):
        ReconstructionLoss(l1_weight=-1.0, perceptual_weight=0.0)
    with pytest.raises(ValueError, match="same shape"):
        ReconstructionLoss(perceptual_weight=0.0)(torch.ones(2, 3), torch.ones(3, 2))
