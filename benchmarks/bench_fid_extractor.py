"""Throughput of tokbench's FID extractor (img/s) and the cost of one 2048-d Fréchet distance.

    python benchmarks/bench_fid_extractor.py [--device cpu] [--batches 16 32] [--repeats 2] [--threads N]

Each (internal dtype, batch size) cell: one warm-up batch, then ``--repeats`` timed batches
of 256x256 uint8 images (resized to 299 inside, as in rFID at 256). Run on an idle machine:
other CPU-heavy processes inflate the numbers a lot on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from tokbench.metrics.frechet import feature_statistics, frechet_distance
from tokbench.metrics.inception import load_fid_extractor


def _images(count: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    low = torch.rand(count, 3, 16, 16, generator=generator)
    images = torch.nn.functional.interpolate(low, size=size, mode="bicubic").clamp(0, 1)
    return (images * 255).round().to(torch.uint8)


def _throughput(dtype: str, batch: int, repeats: int, size: int, device: str) -> float:
    extractor = load_fid_extractor(device=device, internal_dtype=dtype, batch_size=batch)  # type: ignore[arg-type]
    images = _images(batch, size)
    extractor(images)  # warm-up (allocator, oneDNN/cuDNN primitives)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        extractor(images)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def _frechet_seconds(count: int = 4096, dim: int = 2048) -> float:
    rng = np.random.default_rng(0)
    first = np.abs(rng.standard_normal((count, dim)))
    second = np.abs(rng.standard_normal((count, dim))) * 1.1
    stats1, stats2 = feature_statistics(first), feature_statistics(second)
    start = time.perf_counter()
    frechet_distance(*stats1, *stats2)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"input {args.size}x{args.size} -> 299, load average before start {load:.2f}")
    print(f"{'internal dtype':>14} | {'batch':>5} | {'img/s':>7}")
    print(f"{'-' * 14}-+-{'-' * 5}-+-{'-' * 7}")
    for dtype in args.dtypes:
        for batch in args.batches:
            rate = _throughput(dtype, batch, args.repeats, args.size, args.device)
            print(f"{dtype:>14} | {batch:>5} | {rate:>7.2f}", flush=True)
    print(f"frechet_distance, 2048-d, float64: {_frechet_seconds():.2f} s")


if __name__ == "__main__":
    main()
