"""DINO self-distillation loss on CLS tokens (DINOv2 recipe), with its own teacher centring.

The teacher's head outputs are turned into target distributions in one of two ways:

- softmax centring: ``softmax((t - center) / teacher_temp)`` where ``center`` is an EMA of
  the global batch mean of the teacher logits (:meth:`DINOLoss.update_center`);
- Sinkhorn-Knopp: :func:`sinkhorn_knopp` makes the (prototype x sample) matrix
  ``exp(t / teacher_temp)`` approximately doubly stochastic over the *global* batch.

The student is trained with the cross-entropy ``-sum(t * log_softmax(s / student_temp))``
between each (student crop, teacher crop) pair. :meth:`DINOLoss.forward` sums the
batch-averaged terms of every pair it is given; :func:`dino_crop_pairs_loss` implements
DINOv2's multi-crop pairing and normalisation on top of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tokbench_vtp.pretrain.distributed import all_reduce_max_, all_reduce_sum_

__all__ = [
    "DINOLoss", "DinoCropLosses", "dino_crop_pairs_loss", "pair_cross_entropy", "relative_entropy", "sinkhorn_knopp",
]


def pair_cross_entropy(student_logits: torch.Tensor, teacher_probs: torch.Tensor, student_temp: float) -> torch.Tensor:
    """Per-row cross-entropy ``-sum_k t_k * log_softmax(s / student_temp)_k``, shape ``(B,)``."""
    return _cross_entropy_from_log_probs(_student_log_probs(student_logits, student_temp), teacher_probs)


def _student_log_probs(student_logits: torch.Tensor, student_temp: float) -> torch.Tensor:
    return F.log_softmax(student_logits.float() / student_temp, dim=-1)


def _cross_entropy_from_log_probs(log_p: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    if log_p.shape != teacher_probs.shape:
        raise ValueError(
            "student logits and teacher probabilities must have the same (B, K) shape, "
            f"got {tuple(log_p.shape)} and {tuple(teacher_probs.shape)}"
        )
    return -(teacher_probs.float() * log_p).sum(dim=-1)


@torch.no_grad()
def relative_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the rows of ``probs`` (B, K) divided by ln K: 1 for uniform targets, 0 for
    one-hot ones. DINO teacher targets near 1 have collapsed to uniform: the student then only
    learns to flatten its outputs and the branch teaches the trunk nothing."""
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"relative_entropy expects (B, K >= 2) probabilities, got shape {tuple(probs.shape)}")
    p = probs.float()
    entropy = -(p * p.clamp_min(torch.finfo(p.dtype).tiny).log()).sum(dim=-1).mean()
    return entropy / math.log(probs.shape[1])


@torch.no_grad()
def sinkhorn_knopp(
    teacher_logits: torch.Tensor,
    teacher_temp: float,
    n_iterations: int = 3,
    n_samples: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """Sinkhorn-Knopp targets over the global batch (DINOv2 / SwAV), shape ``(B_local, K)``.

    With ``Q = exp(t / teacher_temp)^T`` of shape ``(K, B)`` (B = global number of
    samples, all ranks' columns together) each iteration scales every prototype row to
    total mass ``1/K`` and then every sample column to mass ``1/B``; the result is
    multiplied by ``B``. Property implemented (and tested): **every returned row (one
    sample) sums to exactly 1**, and the column sums of the returned ``(B, K)`` matrix
    over the global batch (prototype marginals) approach ``B/K`` as the iterations grow
    (after the usual 3 iterations they are only approximately equal). The result is
    ``diag(u) exp(t/T) diag(v)`` for some positive scalings, i.e. a Sinkhorn scaling.

    Distributed: the total mass, the per-prototype sums and the sample count are summed
    over ranks, so ``world_size`` ranks give exactly the rows of the single-process result
    on the concatenated batch (ranks may hold different numbers of rows).
    ``n_samples`` is this rank's number of valid rows (default: ``teacher_logits.shape[0]``).
    A global constant (the max logit over all ranks) is subtracted before ``exp`` for
    numerical safety; this cancels exactly in the first normalisation.
    """
    if teacher_logits.ndim != 2:
        raise ValueError(f"sinkhorn_knopp expects (B, K) teacher logits, got shape {tuple(teacher_logits.shape)}")
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
    t = teacher_logits.float()
    device = t.device
    if n_samples is None:
        n_samples = t.shape[0]
    count = torch.as_tensor(n_samples, dtype=torch.float32, device=device).reshape(()).clone()
    all_reduce_sum_(count)
    # A global shift; ranks with no rows contribute -inf so they do not affect the max.
    shift = t.max() if t.numel() else torch.tensor(float("-inf"), device=device)
    all_reduce_max_(shift)
    q = torch.exp((t - shift) / teacher_temp).T  # (K, B_local)
    n_prototypes = q.shape[0]
    total = q.sum()
    all_reduce_sum_(total)
    q = q / total
    for _ in range(n_iterations):
        row_sums = q.sum(dim=1, keepdim=True)
        all_reduce_sum_(row_sums)
        q = q / row_sums / n_prototypes
        q = q / q.sum(dim=0, keepdim=True) / count
    return (q * count).T


class DinoCropLosses(NamedTuple):
    """DINOv2 multi-crop DINO loss, each part already divided by ``n_terms``."""

    global_loss: torch.Tensor
    local_loss: torch.Tensor
    n_terms: int

    @property
    def total(self) -> torch.Tensor:
        """The DINO loss to weight and add to the objective: mean over all (student, teacher) pairs."""
        return self.global_loss + self.local_loss


class TeacherCentering(nn.Module):
    """What DINO and iBOT share: the prototype count, the student temperature and the
    teacher centre (an EMA of the global-batch mean teacher logit) with softmax centring."""

    center: torch.Tensor

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"out_dim (number of prototypes) must be >= 1, got {out_dim}")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must lie in [0, 1], got {center_momentum}")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """``softmax((t - center) / teacher_temp)`` over prototypes, any leading shape; no gradient."""
        return F.softmax((teacher_logits.float() - self.center) / teacher_temp, dim=-1)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """``center = m * center + (1 - m) * mean(teacher_logits)`` over the global batch.

        The row sums and the row count are summed over ranks, so uneven per-rank batches
        give the exact global mean. (DINOv2 overlaps this all-reduce with the backward
        pass, and for iBOT averages the per-rank means; here it is synchronous and exact.)
        Call it with the raw teacher logits of the step, after :meth:`softmax_center_teacher`
        has used the previous centre.
        """
        t = teacher_logits.float().reshape(-1, self.out_dim)
        stats = torch.cat([t.sum(dim=0), torch.tensor([t.shape[0]], dtype=torch.float32, device=t.device)])
        all_reduce_sum_(stats)
        if stats[-1] == 0:
            return
        batch_center = (stats[:-1] / stats[-1]).unsqueeze(0)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1.0 - self.center_momentum)


class DINOLoss(TeacherCentering):
    """DINO cross-entropy between student and teacher CLS-head outputs, plus teacher centring."""

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self, teacher_logits: torch.Tensor, teacher_temp: float, n_iterations: int = 3
    ) -> torch.Tensor:
        """Sinkhorn-Knopp teacher targets over the global batch; see :func:`sinkhorn_knopp`."""
        return sinkhorn_knopp(teacher_logits, teacher_temp, n_iterations)

    def forward(
        self, student_logits_list: Sequence[torch.Tensor], teacher_probs_list: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Sum over *all* (student, teacher) pairs of the batch-averaged cross-entropy.

        No pair is skipped and nothing is divided by the number of pairs: the caller picks
        the pairing and the normalisation (DINOv2 divides the summed terms by the number
        of pairs, see :func:`dino_crop_pairs_loss`). Each tensor is ``(B, K)``; teacher
        tensors are probabilities (centred softmax or Sinkhorn-Knopp).
        """
        total = student_logits_list[0].new_zeros((), dtype=torch.float32)
        for student in student_logits_list:
            log_p = _student_log_probs(student, self.student_temp)
            for teacher in teacher_probs_list:
                total = total + _cross_entropy_from_log_probs(log_p, teacher).mean()
        return total


def dino_crop_pairs_loss(
    student_global: torch.Tensor,
    student_local: torch.Tensor | None,
    teacher_global_probs: torch.Tensor,
    n_global: int,
    student_temp: float = 0.1,
) -> DinoCropLosses:
    """DINOv2 multi-crop DINO loss.

    Inputs are stacked crop-major (rows ``[c*B:(c+1)*B]`` belong to crop ``c``):
    ``student_global`` ``(n_global*B, K)`` student logits of the global crops,
    ``student_local`` ``(n_local*B, K)`` student logits of the local crops (``None`` or
    zero rows when there are none), ``teacher_global_probs`` ``(n_global*B, K)`` teacher
    targets of the global crops *in their original crop order* (the swap is done here).

    Pairing: student global crop ``i`` is supervised by every teacher global crop
    ``j != i`` (for 2 global crops: the *other* one); every local crop by every teacher
    global crop. Each term is batch-averaged; ``n_terms = n_global*(n_global-1) +
    n_local*n_global`` and both returned parts are divided by it, so ``total`` is the
    mean over all pairs. (DINOv2 counts at least one local term even with no local crops,
    ``max(n_local*n_global, 1)``; here the count is exact.)
    """
    if n_global < 1:
        raise ValueError(f"n_global must be >= 1, got {n_global}")
    if student_global.shape != teacher_global_probs.shape:
        raise ValueError(
            f"student_global {tuple(student_global.shape)} and teacher_global_probs "
            f"{tuple(teacher_global_probs.shape)} must have the same (n_global*B, K) shape"
        )
    if student_global.shape[0] % n_global:
        raise ValueError(f"student_global has {student_global.shape[0]} rows, not a multiple of n_global={n_global}")
    batch = student_global.shape[0] // n_global
    if student_local is None:
        student_local = student_global.new_zeros((0, student_global.shape[1]))
    local_rows_ok = batch > 0 and student_local.shape[0] % batch == 0
    if student_local.shape[0] and (not local_rows_ok or student_local.shape[1:] != student_global.shape[1:]):
        raise ValueError(
            f"student_local {tuple(student_local.shape)} must be (n_local*B, K) with B={batch}, "
            f"K={student_global.shape[1]}"
        )
    n_local = student_local.shape[0] // batch if batch else 0
    n_terms = n_global * (n_global - 1) + n_local * n_global
    if n_terms == 0:
        raise ValueError("no DINO loss terms: use at least 2 global crops or some local crops")
    teachers = teacher_global_probs.chunk(n_global)
    students = student_global.chunk(n_global)
    zero = student_global.new_zeros((), dtype=torch.float32)
    global_sum = zero
    for i, student in enumerate(students):
        log_p = _student_log_probs(student, student_temp)
        for j, teacher in enumerate(teachers):
            if i != j:
                global_sum = global_sum + _cross_entropy_from_log_probs(log_p, teacher).mean()
    local_sum = zero
    for student in student_local.split(batch) if n_local else ():
        log_p = _student_log_probs(student, student_temp)
        for teacher in teachers:
            local_sum = local_sum + _cross_entropy_from_log_probs(log_p, teacher).mean()
    return DinoCropLosses(global_sum / n_terms, local_sum / n_terms, n_terms)
