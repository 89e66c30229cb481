"""ClipLoss and the logit-scale clamp, single process (distributed checks: test_distributed_losses)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tokbench_vtp.pretrain.losses.clip import ClipLoss, clamp_logit_scale_




def test_identity_pairs_by_hand() -> None:
    # logits = s * I: every row is log(1 + e^-s) away from certainty, in both directions.
    eye = torch.eye(2)
    s = 2.0
    loss = ClipLoss()(eye, eye, torch.tensor(s))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-s)), abs=1e-6)


def test_asymmetric_pairs_by_hand() -> None:
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits_per_image = [[1, 0.6], [0, 0.8]] (scale 1); logits_per_text is its transpose.
    i2t = (-math.log(math.exp(1) / (math.exp(1) + math.exp(0.6))) - math.log(math.exp(0.8) / (1 + math.exp(0.8)))) / 2
    t2i = (-math.log(math.exp(1) / (math.exp(1) + 1)) - math.log(math.exp(0.8) / (math.exp(0.6) + math.exp(0.8)))) / 2
    loss = ClipLoss()(image, text, torch.tensor(1.0))
    assert loss.item() == pytest.approx((i2t + t2i) / 2, abs=1e-6)


def test_matches_naive_cross_entropy_and_gathering_flags_are_noops_alone() -> None:
    g = torch.Generator().manual_seed(0)
    image = nn.functional.normalize(torch.randn(5, 3, generator=g), dim=-1)
    text = nn.functional.normalize(torch.randn(5, 3, generator=g), dim=-1)
    scale = torch.tensor(7.0)
    logits = scale * image @ text.T
    log_i = logits - logits.logsumexp(dim=1, keepdim=True)
    log_t = logits - logits.logsumexp(dim=0, keepdim=True)
    expected = -(log_i.diagonal().mean() + log_t.diagonal().mean()) / 2
    for kwargs in ({}, {"local_loss": True}, {"gather_with_grad": False}, {"gather": False}):
        assert ClipLoss(**kwargs)(image, text, scale).item() == pytest.approx(expected.item(), abs=1e-5)


def test_gradient_reaches_logit_scale_and_features() -> None:
    raw = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    image = torch.eye(3, requires_grad=True)
    ClipLoss()(image, torch.eye(3), raw.exp()).backward()
    # Perfectly aligned pairs: sharper logits lower the loss, so d loss / d scale < 0.
    assert raw.grad is not None and raw.grad.item() < 0
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same"):
        ClipLoss()(torch.eye(3), torch.eye(2), torch.tensor(1.0))
    with pytest.raises(ValueError, match="scalar"):
        ClipLoss()(torch.eye(2), torch.eye(2), torch.ones(2))


def test_clamp_logit_scale_in_place() -> None:
    p = nn.Parameter(torch.tensor(5.0))
    assert clamp_logit_scale_(p) is p
    assert p.item() == pytest.approx(math.log(100))
    assert p.requires_grad
    q = nn.Parameter(torch.tensor(-0.5))
    clamp_logit_scale_(q)
    assert q.item() == 0.0
    r = nn.Parameter(torch.tensor(2.6593))
    clamp_logit_scale_(r, max_value=3.0)
    assert r.item() == pytest.approx(2.6593)
