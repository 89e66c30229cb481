"""A grid of linear classifiers trained together on cached features.

Every head of a linear-probe grid (feature variants x learning rates x seeds) sees the same
batches of the same frozen features, so all of them train in one pass: the weights of one
seed are a single (D, heads * classes) matrix, a step is one batched matmul forward and
one backward, and the cross-entropy gradient is written out in closed form (no autograd).
A feature variant is a subset of the feature columns; its heads keep zero weights outside
it, so a head on ``cls`` alone and a head on ``cls + patch_mean`` share the matmul.

All heads of a seed start from the same initial matrix and see the same batches, so a head
trains exactly as it would alone. Seeds differ in the initialisation and in the order of
the batches (each seed draws its own permutation): they measure the probe's own variance.

Optimisers: SGD with momentum (DINOv2's linear eval) and LARS (MAE's linear probe, with
MAE's rule: weight decay and the trust ratio on weight matrices only). Optional
``BatchNorm1d(affine=False)`` in front of the heads (MAE): batch statistics while
training, running statistics at evaluation, exactly as ``torch.nn.BatchNorm1d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch

from tokbench.runtime.timing import progress
from tokbench.training.schedules import CosineSchedule

BATCHNORM_EPS = 1e-6  # MAE's linear probe: BatchNorm1d(affine=False, eps=1e-6)
BATCHNORM_MOMENTUM = 0.1
LARS_ETA = 0.001  # MAE's util/lars.py trust coefficient


@dataclass(frozen=True)
class HeadGridSpec:
    """What to train. ``variants`` maps a variant name to the feature columns it uses."""

    variants: dict[str, np.ndarray]
    learning_rates: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    iterations: int = 1000
    batch_size: int = 1024
    warmup_iterations: int = 0
    optimizer: Literal["sgd", "lars"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batchnorm: bool = False
    init_std: float = 0.01

    def __post_init__(self) -> None:
        if not self.variants or not self.learning_rates or not self.seeds:
            raise ValueError("a head grid needs at least one variant, learning rate and seed")
        if self.iterations < 1 or self.batch_size < 1:
            raise ValueError(f"iterations and batch_size must be positive, got {self.iterations}, {self.batch_size}")
        if not 0 <= self.warmup_iterations <= self.iterations:
            raise ValueError(f"warmup_iterations must be in [0, iterations], got {self.warmup_iterations}")
        if self.optimizer not in ("sgd", "lars"):
            raise ValueError(f"optimizer must be 'sgd' or 'lars', got {self.optimizer!r}")

    @property
    def heads(self) -> list[tuple[str, float]]:
        """(variant, learning rate) of each head of a seed, in weight-column order."""
        return [(variant, lr) for variant in self.variants for lr in self.learning_rates]


@dataclass
class TrainedGrid:
    spec: HeadGridSpec
    num_classes: int
    weight: torch.Tensor  # (S, D, H * C)
    bias: torch.Tensor  # (S, H * C)
    running_mean: torch.Tensor | None = None  # (S, D) with batchnorm
    running_var: torch.Tensor | None = None
    final_loss: torch.Tensor | None = None  # (S, H): mean training loss of the last iterations
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def num_heads(self) -> int:
        return len(self.spec.heads)

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (S, N, H, C) logits of every head."""
        x = features.to(self.weight.device, torch.float32)
        x = x.unsqueeze(0).expand(len(self.spec.seeds), -1, -1)
        if self.running_mean is not None:
            x = (x - self.running_mean[:, None]) * torch.rsqrt(self.running_var[:, None] + BATCHNORM_EPS)
        out = torch.baddbmm(self.bias[:, None, :], x, self.weight)
        return out.view(out.shape[0], out.shape[1], self.num_heads, self.num_classes)

    @torch.no_grad()
    def accuracy(self, features: torch.Tensor, labels: torch.Tensor, topk: Sequence[int] = (1, 5), chunk: int = 4096) -> dict[int, torch.Tensor]:
        """Top-k accuracy of every head: {k: (S, H) float64 in [0, 1]}."""
        labels = labels.to(self.weight.device)
        correct = {k: torch.zeros(len(self.spec.seeds), self.num_heads, dtype=torch.float64, device=self.weight.device) for k in topk}
        kmax = min(max(topk), self.num_classes)
        for start in range(0, len(features), chunk):
            logits = self.logits(features[start : start + chunk])
            top = logits.topk(kmax, dim=-1).indices  # (S, n, H, kmax)
            hits = top == labels[start : start + chunk].view(1, -1, 1, 1)
            for k in topk:
                correct[k] += hits[..., : min(k, kmax)].any(dim=-1).sum(dim=1)
        return {k: (v / max(len(features), 1)).cpu() for k, v in correct.items()}

    @torch.no_grad()
    def example_hits(self, features: torch.Tensor, labels: torch.Tensor, chosen: torch.Tensor,
                     topk: Sequence[int] = (1, 5), chunk: int = 4096) -> dict[int, torch.Tensor]:
        """Per-example correctness of one head per seed (``chosen``: (S,) head indices):
        {k: (S, N) bool}, the per-item evidence behind ``accuracy`` of those heads."""
        labels = labels.to(self.weight.device)
        seeds = torch.arange(len(self.spec.seeds), device=self.weight.device)
        kmax = min(max(topk), self.num_classes)
        parts: dict[int, list[torch.Tensor]] = {k: [] for k in topk}
        for start in range(0, len(features), chunk):
            logits = self.logits(features[start : start + chunk])[seeds, :, chosen.to(self.weight.device)]  # (S, n, C)
            hits = logits.topk(kmax, dim=-1).indices == labels[start : start + chunk].view(1, -1, 1)
            for k in topk:
                parts[k].append(hits[..., : min(k, kmax)].any(dim=-1).cpu())
        return {k: torch.cat(v, dim=1) if v else torch.zeros(len(seeds), 0, dtype=torch.bool) for k, v in parts.items()}


def column_mask(spec: HeadGridSpec, dim: int, device: torch.device) -> torch.Tensor:
    """(D, H) 0/1 mask: which feature columns each head of a seed reads."""
    masks = []
    for variant, _ in spec.heads:
        columns = np.zeros(dim, dtype=np.float32)
        columns[np.asarray(spec.variants[variant])] = 1.0
        masks.append(columns)
    return torch.from_numpy(np.stack(masks, axis=1)).to(device)


def train_head_grid(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    spec: HeadGridSpec,
    device: str | torch.device = "cpu",
) -> TrainedGrid:
    """Train every head of ``spec`` on ``features`` (N, D) and ``labels`` (N,) in one pass.

    The features stay in their stored dtype on ``device`` (fp16 halves GPU memory); each
    batch is upcast to fp32 and the heads train in fp32.
    """
    import time

    started = time.perf_counter()
    device = torch.device(device)
    features = features.to(device)
    labels = labels.to(device=device, dtype=torch.long)
    n, dim = features.shape
    if n == 0:
        raise ValueError("no training features")
    seeds = len(spec.seeds)
    heads = len(spec.heads)
    width = heads * num_classes
    batch = min(spec.batch_size, n)

    mask = column_mask(spec, dim, device)  # (D, H)
    weight_mask = mask.repeat_interleave(num_classes, dim=1)  # (D, H * C)
    # every head of a seed starts from the same N(0, init_std) matrix (restricted to its
    # columns), so a head trains identically whatever else is in the grid
    weight = torch.empty(seeds, dim, width, device=device)
    for s, seed in enumerate(spec.seeds):
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        weight[s] = (torch.randn(dim, num_classes, generator=generator) * spec.init_std).repeat(1, heads).to(device)
    weight *= weight_mask
    bias = torch.zeros(seeds, width, device=device)
    momentum_w = torch.zeros_like(weight)
    momentum_b = torch.zeros_like(bias)
    # lr x batch / 256 as DINOv2 and MAE scale their base rates
    lrs = torch.tensor([lr for _, lr in spec.heads], device=device) * (batch / 256.0)
    lr_columns = lrs.repeat_interleave(num_classes)  # (H * C,)
    schedule = CosineSchedule(1.0, 0.0, spec.iterations, warmup_steps=spec.warmup_iterations)
    running_mean = torch.zeros(seeds, dim, device=device) if spec.batchnorm else None
    running_var = torch.ones(seeds, dim, device=device) if spec.batchnorm else None
    orders = [torch.Generator(device="cpu").manual_seed(10_000 + int(seed)) for seed in spec.seeds]
    permutations = [torch.randperm(n, generator=g) for g in orders]
    cursor = 0
    loss_window = max(1, min(50, spec.iterations))
    loss_sum = torch.zeros(seeds, heads, device=device)

    for step in progress(range(spec.iterations), f"probe head grid ({heads} heads)", spec.iterations):
        if cursor + batch > n:  # a new epoch per seed: fresh permutations, drop the ragged tail
            permutations = [torch.randperm(n, generator=g) for g in orders]
            cursor = 0
        index = torch.stack([p[cursor : cursor + batch] for p in permutations]).to(device)  # (S, B)
        cursor += batch
        x = features[index].float()  # (S, B, D)
        y = labels[index]  # (S, B)
        if spec.batchnorm:
            mean = x.mean(dim=1)
            var = x.var(dim=1, unbiased=False)
            x = (x - mean[:, None]) * torch.rsqrt(var[:, None] + BATCHNORM_EPS)
            running_mean.mul_(1 - BATCHNORM_MOMENTUM).add_(mean, alpha=BATCHNORM_MOMENTUM)
            running_var.mul_(1 - BATCHNORM_MOMENTUM).add_(var * (batch / max(batch - 1, 1)), alpha=BATCHNORM_MOMENTUM)
        logits = torch.baddbmm(bias[:, None, :], x, weight).view(seeds, batch, heads, num_classes)
        probs = torch.softmax(logits, dim=-1)
        picked = probs.gather(-1, y[:, :, None, None].expand(-1, -1, heads, 1)).squeeze(-1)  # (S, B, H)
        if step >= spec.iterations - loss_window:
            loss_sum += -torch.log(picked.clamp_min(1e-30)).mean(dim=1)
        # d(mean CE)/d logits = (softmax - onehot) / B, per head
        grad_logits = probs
        grad_logits.scatter_add_(-1, y[:, :, None, None].expand(-1, -1, heads, 1),
                                 torch.full((seeds, batch, heads, 1), -1.0, device=device))
        grad_logits = grad_logits.view(seeds, batch, width) / batch
        grad_w = torch.bmm(x.transpose(1, 2), grad_logits) * weight_mask  # (S, D, H * C)
        grad_b = grad_logits.sum(dim=1)  # (S, H * C)
        scale = schedule(step)
        if spec.optimizer == "sgd":
            if spec.weight_decay:
                grad_w = grad_w + spec.weight_decay * weight
            momentum_w.mul_(spec.momentum).add_(grad_w)
            momentum_b.mul_(spec.momentum).add_(grad_b)
        else:
            grad_w = grad_w + spec.weight_decay * weight
            per_head = (seeds, dim, heads, num_classes)
            weight_norm = weight.view(per_head).pow(2).sum(dim=(1, 3)).sqrt()  # (S, H)
            update_norm = grad_w.view(per_head).pow(2).sum(dim=(1, 3)).sqrt()
            trust = torch.where(
                (weight_norm > 0) & (update_norm > 0), LARS_ETA * weight_norm / update_norm.clamp_min(1e-30),
                torch.ones_like(weight_norm),
            )
            grad_w = grad_w * trust.repeat_interleave(num_classes, dim=1)[:, None, :]
            momentum_w.mul_(spec.momentum).add_(grad_w)
            momentum_b.mul_(spec.momentum).add_(grad_b)
        step_lr = lr_columns * scale
        weight.sub_(momentum_w * step_lr)
        bias.sub_(momentum_b * step_lr)

    return TrainedGrid(
        spec=spec,
        num_classes=num_classes,
        weight=weight,
        bias=bias,
        running_mean=running_mean,
        running_var=running_var,
        final_loss=(loss_sum / loss_window).cpu(),
        seconds=time.perf_counter() - started,
    )


def epochs_to_iterations(epochs: float, num_samples: int, batch_size: int) -> int:
    return max(1, math.ceil(epochs * num_samples / min(batch_size, num_samples)))
