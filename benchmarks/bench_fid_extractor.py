"""FID Inception feature extraction images/s, and the cost of one 2048-d Fréchet distance.

    .venv/bin/python benchmarks/bench_fid_extractor.py                     # CPU: batch 32, float32 + float64
    .venv/bin/python benchmarks/bench_fid_extractor.py --batches 64,256 --device cuda

tokbench's extractor (``tokbench.metrics.inception``: torch-fidelity's ``inception-v3-compat``
network with local weights, channels-last weights, TF32 off, features widened to float64) is
timed against its baseline in the same process: torch-fidelity's ``FeatureExtractorInceptionV3``
as shipped (NCHW) called directly on the same uint8 batch, as ``torch_fidelity.calculate_metrics``
runs it. The features are checked to agree to 1e-4 (channels-last changes the summation order only). Inputs are 256² uint8 images (resized to 299 inside, as in rFID at 256).
``float64`` is the batch-size-independent mode (slower; an option, not the default).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import add_common_options, best_seconds, comparison, record, setup  # noqa: E402

from tokbench.metrics.frechet import feature_statistics, frechet_distance  # noqa: E402
from tokbench.metrics.inception import load_fid_extractor  # noqa: E402


def smooth_images(count: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    low = torch.rand(count, 3, 16, 16, generator=generator)
    images = torch.nn.functional.interpolate(low, size=size, mode="bicubic").clamp(0, 1)
    return (images * 255).round().to(torch.uint8)


def frechet_seconds(count: int = 4096, dim: int = 2048) -> float:
    import time

    rng = np.random.default_rng(0)
    first = np.abs(rng.standard_normal((count, dim)))
    second = np.abs(rng.standard_normal((count, dim))) * 1.1
    stats1, stats2 = feature_statistics(first), feature_statistics(second)
    start = time.perf_counter()
    frechet_distance(*stats1, *stats2)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="32", help="batch sizes")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    add_common_options(parser)
    args = parser.parse_args(argv)
    device = setup(args)
    figures, comparisons = {}, []
    for dtype in args.dtypes.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            extractor = load_fid_extractor(device=device, internal_dtype=dtype, batch_size=batch)  # type: ignore[arg-type]
            images = smooth_images(batch, args.size).to(device)
            ours = batch / best_seconds(lambda: extractor(images), device, args.repeats)
            figures[f"{dtype}_batch{batch}_img_s"] = ours
            if dtype == "float32":  # baseline: torch-fidelity's network as shipped (NCHW), called directly
                network = load_fid_extractor(device=device, batch_size=batch, memory_format="contiguous",
                                             batchnorm="separate")._model

                def direct():
                    with torch.no_grad():
                        return network(images)[0]

                baseline = batch / best_seconds(direct, device, args.repeats)
                difference = (direct().double().cpu() - extractor(images)).abs().max().item()
                if difference > 1e-4:  # channels-last and the folded BatchNorm change the summation order only
                    raise AssertionError(f"tokbench's features differ from torch-fidelity's by {difference:.3g}")
                figures["channels_last_max_abs_feature_difference"] = difference
                unfolded = load_fid_extractor(device=device, batch_size=batch, batchnorm="separate")
                figures[f"{dtype}_batch{batch}_unfolded_img_s"] = batch / best_seconds(lambda: unfolded(images), device, args.repeats)
                comparisons.append(comparison(f"Inception pool3, BatchNorm folded into the convolutions, batch {batch}", ours,
                                              "the same network in channels-last with its BatchNorm layers", figures[f"{dtype}_batch{batch}_unfolded_img_s"], "img/s"))
                comparisons.append(comparison(f"Inception pool3 (channels-last, BatchNorm folded), {args.size}² -> 299, batch {batch}", ours,
                                              "torch-fidelity FeatureExtractorInceptionV3 (NCHW) called directly", baseline, "img/s"))
    figures["frechet_distance_2048d_s"] = frechet_seconds()
    return record("fid_extractor", {"batches": args.batches, "dtypes": args.dtypes, "input": f"{args.size}² uint8"},
                  figures, comparisons, device, save=not args.no_record)


if __name__ == "__main__":
    main()
