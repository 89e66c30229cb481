"""DINOLoss, Sinkhorn-Knopp and the DINOv2 multi-crop composition (single process)."""

from __future__ import annotations

import math

import pytest
import torch

from tokbench_vtp.pretrain.losses.dino import (
    DINOLoss,
    dino_crop_pairs_loss,
    pair_cross_entropy,
    relative_entropy,
    sinkhorn_knopp,
)




def _naive_ce(student: torch.Tensor, teacher: torch.Tensor, temp: float) -> float:
    """Batch mean of -sum t log softmax(s/temp), written element by element."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        z = [v / temp for v in s_row]
        log_norm = math.log(sum(math.exp(v) for v in z))
        total += -sum(t * (v - log_norm) for t, v in zip(t_row, z))
    return total / len(student)


def test_uniform_teacher_constant_student_is_log_k_per_pair() -> None:
    k = 7
    loss = DINOLoss(out_dim=k)
    students = [torch.full((4, k), 3.0), torch.zeros(4, k)]
    teachers = [torch.full((4, k), 1.0 / k)] * 3
    assert loss(students, teachers).item() == pytest.approx(6 * math.log(k), rel=1e-6)


def test_cross_entropy_by_hand() -> None:
    # s / 0.1 = [0, ln 3] -> softmax [1/4, 3/4].
    student = torch.tensor([[0.0, 0.1 * math.log(3)]])
    loss = DINOLoss(out_dim=2, student_temp=0.1)
    assert loss([student], [torch.tensor([[1.0, 0.0]])]).item() == pytest.approx(math.log(4), abs=1e-6)
    half = loss([student], [torch.tensor([[0.5, 0.5]])]).item()
    assert half == pytest.approx(-0.5 * math.log(0.25) - 0.5 * math.log(0.75), abs=1e-6)


def test_softmax_center_teacher_subtracts_center() -> None:
    loss = DINOLoss(out_dim=3)
    loss.center.copy_(torch.tensor([[1.0, 0.0, 2.0]]))
    probs = loss.softmax_center_teacher(torch.tensor([[1.0, 0.0, 2.0], [1.0, 1.0, 2.0]]), teacher_temp=0.5)
    assert torch.allclose(probs[0], torch.full((3,), 1 / 3))
    e = math.exp(1 / 0.5)
    assert torch.allclose(probs[1], torch.tensor([1, e, 1]) / (2 + e))


def test_update_center_is_ema_of_batch_mean() -> None:
    loss = DINOLoss(out_dim=2, center_momentum=0.9)
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    loss.update_center(logits)
    assert torch.allclose(loss.center, torch.tensor([[0.2, 0.3]]))
    loss.update_center(logits)
    assert torch.allclose(loss.center, torch.tensor([[0.38, 0.57]]))


def _naive_sinkhorn(logits: list[list[float]], temp: float, n_iterations: int) -> list[list[float]]:
    """The same iteration on python lists, indexed q[k][b]."""
    n_b, n_k = len(logits), len(logits[0])
    q = [[math.exp(logits[b][k] / temp) for b in range(n_b)] for k in range(n_k)]
    total = sum(map(sum, q))
    q = [[v / total for v in row] for row in q]
    for _ in range(n_iterations):
        q = [[v / sum(row) / n_k for v in row] for row in q]
        cols = [sum(q[k][b] for k in range(n_k)) for b in range(n_b)]
        q = [[q[k][b] / cols[b] / n_b for b in range(n_b)] for k in range(n_k)]
    return [[q[k][b] * n_b for k in range(n_k)] for b in range(n_b)]


def test_sinkhorn_matches_naive_iteration() -> None:
    logits = torch.tensor([[0.3, -0.2, 0.9], [0.1, 0.4, -0.7], [0.8, 0.8, 0.0], [-0.5, 0.2, 0.1]])
    for n_iterations in (1, 3):
        expected = torch.tensor(_naive_sinkhorn(logits.tolist(), 0.2, n_iterations))
        got = DINOLoss(out_dim=3).sinkhorn_knopp_teacher(logits, teacher_temp=0.2, n_iterations=n_iterations)
        assert torch.allclose(got, expected, atol=1e-6)


def test_sinkhorn_doubly_stochastic_property() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g)
    p = sinkhorn_knopp(logits, teacher_temp=0.5, n_iterations=3)
    # Rows (samples) sum to exactly 1 after any number of iterations ...
    assert torch.allclose(p.sum(dim=1), torch.ones(6), atol=1e-6)
    # ... and the prototype marginals converge to B/K (equipartition).
    p_many = sinkhorn_knopp(logits, teacher_temp=0.5, n_iterations=300)
    assert torch.allclose(p_many.sum(dim=0), torch.full((4,), 6 / 4), atol=1e-4)
    # It is a diagonal scaling of exp(t/T): log p - t/T = a_b + c_k (zero double-centred residual).
    r = p.log() - logits / 0.5
    residual = r - r.mean(dim=0, keepdim=True) - r.mean(dim=1, keepdim=True) + r.mean()
    assert residual.abs().max() < 1e-4


def test_sinkhorn_shift_invariant_and_uniform() -> None:
    logits = torch.tensor([[0.3, -0.2, 0.9], [0.1, 0.4, -0.7]])
    base = sinkhorn_knopp(logits, teacher_temp=0.1)
    assert torch.allclose(sinkhorn_knopp(logits + 50.0, teacher_temp=0.1), base, atol=1e-6)
    assert torch.allclose(sinkhorn_knopp(torch.zeros(4, 5), 0.04), torch.full((4, 5), 0.2))


def test_crop_pairs_loss_pairing_and_normalisation() -> None:
    g = torch.Generator().manual_seed(1)
    b, k, n_local, temp = 2, 5, 3, 0.1
    student_global = torch.randn(2 * b, k, generator=g)
    student_local = torch.randn(n_local * b, k, generator=g)
    teacher = torch.softmax(torch.randn(2 * b, k, generator=g) / 0.05, dim=-1)
    out = dino_crop_pairs_loss(student_global, student_local, teacher, n_global=2, student_temp=temp)
    assert out.n_terms == 2 * 1 + n_local * 2
    sg, tg, sl = student_global.split(b), teacher.split(b), student_local.split(b)
    # Global crop 0 learns from teacher crop 1 and vice versa.
    expected_global = _naive_ce(sg[0], tg[1], temp) + _naive_ce(sg[1], tg[0], temp)
    expected_local = sum(_naive_ce(s, t, temp) for s in sl for t in tg)
    assert out.global_loss.item() == pytest.approx(expected_global / 8, rel=1e-5)
    assert out.local_loss.item() == pytest.approx(expected_local / 8, rel=1e-5)
    assert out.total.item() == pytest.approx((expected_global + expected_local) / 8, rel=1e-5)
    # Same as DINOv2's composition with DINOLoss: swapped teacher, global term * 2 / n_terms.
    dino = DINOLoss(out_dim=k, student_temp=temp)
    swapped = torch.cat([tg[1], tg[0]])
    assert out.global_loss.item() == pytest.approx(dino([student_global], [swapped]).item() * 2 / 8, rel=1e-5)
    assert out.local_loss.item() == pytest.approx(dino(list(sl), list(tg)).item() / 8, rel=1e-5)


def test_crop_pairs_loss_without_local_crops_and_errors() -> None:
    student = torch.randn(4, 3)
    teacher = torch.softmax(torch.randn(4, 3), dim=-1)
    out = dino_crop_pairs_loss(student, None, teacher, n_global=2)
    assert out.n_terms == 2 and out.local_loss.item() == 0.0
    expected = (
        pair_cross_entropy(student[:2], teacher[2:], 0.1).mean() + pair_cross_entropy(student[2:], teacher[:2], 0.1).mean()
    ) / 2
    assert out.total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="no DINO loss terms"):
        dino_crop_pairs_loss(student, None, teacher, n_global=1)
    with pytest.raises(ValueError, match="n_local"):
        dino_crop_pairs_loss(student, torch.randn(3, 3), teacher, n_global=2)
    with pytest.raises(ValueError, match="same"):
        DINOLoss(out_dim=3)([student], [teacher[:2]])


def test_relative_entropy_by_hand() -> None:
    uniform = torch.full((3, 8), 1 / 8)
    one_hot = torch.eye(4)
    assert relative_entropy(uniform).item() == pytest.approx(1.0)
    assert relative_entropy(one_hot).item() == pytest.approx(0.0)
    # two equally likely prototypes out of 4: ln 2 / ln 4 = 0.5; averaged with a one-hot row: 0.25
    half = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert relative_entropy(half).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="relative_entropy"):
        relative_entropy(torch.ones(4))
