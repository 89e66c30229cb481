"""Linear-probe head grid: all heads in one pass vs the same heads one after another.

Three ways to train the DINOv2 grid (4 feature variants x 13 learning rates) on the same
cached features, same batches, same number of steps:

  grid        tokbench: every head in one batched matmul per step (closed-form gradient)
  sequential  the same trainer, one head at a time, each on its own feature columns
  torch-loop  one head at a time with nn.Linear + torch.optim.SGD + autograd (the usual code)

Synthetic features (Gaussian class clusters) sized like ViT features; what is timed is the
head training only (feature extraction is cached in the store either way).

    python benchmarks/bench_probe_grid.py                      # CPU-sized defaults
    python benchmarks/bench_probe_grid.py --device cuda --width 1024 --classes 1000 --samples 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import add_common_options, comparison, record, setup, sync  # noqa: E402

from tokbench.tasks.understanding_params import PROBE_DEFAULTS, ProbeRecipe
from tokbench.understanding.heads import HeadGridSpec, train_head_grid



def synthetic_features(samples: int, width: int, classes: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    dim = 5 * width  # CLS of the last 4 blocks + mean patch token
    centres = torch.randn(classes, dim, generator=generator)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    features = centres[labels] + 2.0 * torch.randn(samples, dim, generator=generator)
    columns = {name: np.arange(i * width, (i + 1) * width) for i, name in
               enumerate(["block-1.cls", "block-1.patch_mean", "block-2.cls", "block-3.cls", "block-4.cls"])}
    variants = {v: np.concatenate([columns[n] for n in ProbeRecipe.variant_features(v)])
                for v in PROBE_DEFAULTS["dinov2"]["variants"]}
    return features, labels, variants



def torch_loop_head(features, labels, classes, columns, lr, iterations, batch, device):
    """One head the usual way: nn.Linear on its columns, torch.optim.SGD, cosine LambdaLR."""
    import math

    x = features[:, torch.as_tensor(columns)].to(device)
    y = labels.to(device)
    head = torch.nn.Linear(x.shape[1], classes).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr * batch / 256, momentum=0.9)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / iterations)))
    generator = torch.Generator().manual_seed(0)
    for _ in range(iterations):
        index = torch.randint(0, len(x), (batch,), generator=generator).to(device)
        loss = torch.nn.functional.cross_entropy(head(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=12800)
    parser.add_argument("--width", type=int, default=192, help="feature width per block (ViT-Ti 192, S 384, B 768, L 1024)")
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--skip-torch-loop", action="store_true")
    add_common_options(parser)
    args = parser.parse_args(argv)
    setup(args)

    features, labels, variants = synthetic_features(args.samples, args.width, args.classes)
    lrs = PROBE_DEFAULTS["dinov2"]["learning_rates"]
    common = dict(iterations=args.iterations, batch_size=args.batch)
    heads = len(variants) * len(lrs)

    def timed(fn) -> float:
        sync(args.device)
        start = time.perf_counter()
        fn()
        sync(args.device)
        return time.perf_counter() - start

    train_head_grid(features[:2048], labels[:2048], args.classes,
                    HeadGridSpec(variants=variants, learning_rates=lrs[:2], iterations=2, batch_size=256), args.device)  # warm-up
    grid_seconds = timed(lambda: train_head_grid(features, labels, args.classes,
                                                 HeadGridSpec(variants=variants, learning_rates=lrs, **common), args.device))

    def sequential() -> None:
        for columns in variants.values():
            sliced = features[:, torch.as_tensor(columns)]
            for lr in lrs:
                spec = HeadGridSpec(variants={"v": np.arange(sliced.shape[1])}, learning_rates=(lr,), **common)
                train_head_grid(sliced, labels, args.classes, spec, args.device)

    sequential_seconds = timed(sequential)
    loop_seconds = None
    if not args.skip_torch_loop:
        loop_seconds = timed(lambda: [torch_loop_head(features, labels, args.classes, columns, lr, args.iterations,
                                                      args.batch, args.device)
                                      for columns in variants.values() for lr in lrs])
    settings = {"samples": args.samples, "dim": int(features.shape[1]), "classes": args.classes, "heads": heads,
                "iterations": args.iterations, "batch": args.batch}
    figures = {"grid_s": grid_seconds, "sequential_s": sequential_seconds, "torch_loop_s": loop_seconds}
    comparisons = [comparison(f"{heads} heads (DINOv2 grid), one batched pass", grid_seconds,
                              "the same trainer, one head after another", sequential_seconds, "s")]
    if loop_seconds is not None:
        comparisons.append(comparison(f"{heads} heads (DINOv2 grid), one batched pass", grid_seconds,
                                      "nn.Linear + torch.optim.SGD per head", loop_seconds, "s"))
    return record("probe_grid", settings, figures, comparisons, args.device, save=not args.no_record)


if __name__ == "__main__":
    main()
