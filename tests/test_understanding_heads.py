"""The head grid: each head trains exactly like a plain torch linear classifier would,
alone, with the same optimiser, schedule and batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tokbench.understanding.heads import (
    BATCHNORM_EPS,
    LARS_ETA,
    HeadGridSpec,
    train_head_grid,
)


def blobs(n=600, dim=12, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator) * 1.5
    labels = torch.randint(0, classes, (n,), generator=generator)
    features = centres[labels] + torch.randn(n, dim, generator=generator) + 3.0  # offset: BN matters
    return features, labels


def batch_orders(n, batch, iterations, seed):
    """The batches train_head_grid draws for one seed (documented behaviour)."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    permutation, cursor = torch.randperm(n, generator=generator), 0
    for _ in range(iterations):
        if cursor + batch > n:
            permutation, cursor = torch.randperm(n, generator=generator), 0
        yield permutation[cursor : cursor + batch]
        cursor += batch


def cosine(step, total, warmup):
    if step < warmup:
        return step / max(warmup - 1, 1) if warmup > 1 else 0.0
    i, n = step - warmup, total - warmup
    return 0.5 * (1 + math.cos(math.pi * i / n))


def reference_head(features, labels, classes, columns, lr, seed, spec: HeadGridSpec):
    """nn.Linear (+ BatchNorm1d) trained with torch.optim.SGD or a textbook MAE LARS."""
    dim = features.shape[1]
    generator = torch.Generator().manual_seed(seed)
    init = torch.randn(dim, classes, generator=generator) * spec.init_std
    mask = torch.zeros(dim)
    mask[torch.as_tensor(columns)] = 1
    linear = torch.nn.Linear(dim, classes)
    with torch.no_grad():
        linear.weight.copy_((init * mask[:, None]).T)
        linear.bias.zero_()
    norm = torch.nn.BatchNorm1d(dim, affine=False, eps=BATCHNORM_EPS) if spec.batchnorm else torch.nn.Identity()
    batch = min(spec.batch_size, len(features))
    base_lr = lr * batch / 256
    params = [linear.weight, linear.bias]
    buffers = [torch.zeros_like(p) for p in params]
    for step, index in enumerate(batch_orders(len(features), batch, spec.iterations, seed)):
        norm.train()
        loss = torch.nn.functional.cross_entropy(linear(norm(features[index])), labels[index])
        linear.zero_grad()
        loss.backward()
        step_lr = base_lr * cosine(step, spec.iterations, spec.warmup_iterations)
        with torch.no_grad():
            linear.weight.grad *= mask[None, :]
            for p, buf in zip(params, buffers):
                update = p.grad.clone()
                if spec.optimizer == "lars" and p.ndim > 1:
                    update += spec.weight_decay * p
                    p_norm, u_norm = p.norm(), update.norm()
                    if p_norm > 0 and u_norm > 0:
                        update *= LARS_ETA * p_norm / u_norm
                elif p.ndim > 1 and spec.weight_decay:
                    update += spec.weight_decay * p
                buf.mul_(spec.momentum).add_(update)
                p.sub_(step_lr * buf)
    norm.eval()
    return linear, norm


@pytest.mark.parametrize(
    "options",
    [
        dict(optimizer="sgd"),
        dict(optimizer="sgd", weight_decay=1e-3, warmup_iterations=10),
        dict(optimizer="sgd", batchnorm=True),
        dict(optimizer="lars", batchnorm=True, warmup_iterations=5, weight_decay=1e-4),
    ],
    ids=["sgd", "sgd-wd-warmup", "sgd-batchnorm", "lars-batchnorm"],
)
def test_every_head_matches_a_plain_torch_probe(options):
    features, labels = blobs()
    variants = {"all": np.arange(12), "first": np.arange(5)}
    spec = HeadGridSpec(variants=variants, learning_rates=(0.01, 0.3), seeds=(0, 3), iterations=40, batch_size=128, **options)
    grid = train_head_grid(features, labels, 4, spec)
    logits = grid.logits(features)  # (S, N, H, C), evaluation mode
    for s, seed in enumerate(spec.seeds):
        for h, (variant, lr) in enumerate(spec.heads):
            linear, norm = reference_head(features, labels, 4, variants[variant], lr, seed, spec)
            with torch.no_grad():
                expected = linear(norm(features))
            torch.testing.assert_close(logits[s, :, h], expected, rtol=2e-4, atol=2e-5)


def test_a_head_trains_the_same_in_any_grid():
    features, labels = blobs(seed=1)
    both = HeadGridSpec(variants={"a": np.arange(12), "b": np.arange(3, 9)}, learning_rates=(0.05, 0.5), iterations=30, batch_size=100)
    alone = HeadGridSpec(variants={"b": np.arange(3, 9)}, learning_rates=(0.5,), iterations=30, batch_size=100)
    grid_logits = train_head_grid(features, labels, 4, both).logits(features)[0, :, 3]
    alone_logits = train_head_grid(features, labels, 4, alone).logits(features)[0, :, 0]
    # float32 matmuls of a 4-head and a 1-head weight block sum in different orders (BLAS blocking
    # depends on the shapes and the CPU): equal up to that rounding, as in the plain-torch comparison
    torch.testing.assert_close(grid_logits, alone_logits, rtol=1e-4, atol=1e-5)


def test_weights_outside_a_variant_stay_zero_and_the_probe_learns():
    features, labels = blobs(n=1000, seed=2)
    spec = HeadGridSpec(variants={"few": np.array([0, 2, 4])}, learning_rates=(0.5,), iterations=200, batch_size=200)
    grid = train_head_grid(features, labels, 4, spec)
    weight = grid.weight[0].view(12, 1, 4)
    assert torch.all(weight[[1, 3, 5, 6, 7, 8, 9, 10, 11]] == 0)
    full = HeadGridSpec(variants={"all": np.arange(12)}, learning_rates=(0.5,), iterations=200, batch_size=200)
    accuracy = train_head_grid(features, labels, 4, full).accuracy(features, labels, topk=(1, 2))
    assert accuracy[1][0, 0] > 0.9 and accuracy[2][0, 0] >= accuracy[1][0, 0]


def test_accuracy_counts_topk():
    features, labels = blobs(n=50)
    spec = HeadGridSpec(variants={"all": np.arange(12)}, learning_rates=(0.1,), iterations=1, batch_size=10)
    grid = train_head_grid(features, labels, 4, spec)
    logits = grid.logits(features)[0, :, 0]
    top2 = logits.topk(2, dim=1).indices
    expected = (top2 == labels[:, None]).any(dim=1).double().mean()
    assert grid.accuracy(features, labels, topk=(2,), chunk=7)[2][0, 0] == pytest.approx(float(expected))
    assert grid.accuracy(features, labels, topk=(10,))[10][0, 0] == 1.0  # k beyond the class count


def test_dinov2_learning_rates():
    from tokbench.tasks.understanding_params import DINOV2_LEARNING_RATES

    assert DINOV2_LEARNING_RATES == (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)


@pytest.mark.parametrize(
    "bad",
    [dict(variants={}), dict(learning_rates=()), dict(iterations=0), dict(warmup_iterations=11), dict(optimizer="adam")],
)
def test_bad_specs_are_refused(bad):
    options = {**dict(variants={"a": np.arange(2)}, learning_rates=(0.1,), iterations=10), **bad}
    with pytest.raises(ValueError):
        HeadGridSpec(**options)
