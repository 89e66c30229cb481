"""Where the time of a reconstruction evaluation goes, stage by stage.

    .venv/bin/python benchmarks/bench_reconstruction.py --images 256 --resolution 64

Prints images/s for data loading, the tokenizer round trip, the FID
Inception, SSIM/PSNR, and the Fréchet distance (both the features path and
the statistics-only path): a profile with no baseline (each stage's own
baseline is in bench_data_loading / bench_codec / bench_fid_extractor).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import add_common_options, record, setup, sync  # noqa: E402


def timed(fn, *args):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    out = fn(*args)
    sync("cuda" if torch.cuda.is_available() else "cpu")
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    add_common_options(parser)
    args = parser.parse_args(argv)
    setup(args)

    from tokbench.data.loader import load_images
    from tokbench.data.shapes import ShapesDataset
    from tokbench.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_from_features
    from tokbench.metrics.image_quality import psnr_uint8, ssim, to_uint8
    from tokbench.metrics.inception import load_fid_extractor
    from tokbench.tokenizers.resample import ResampleParams, ResampleTokenizer

    dataset = ShapesDataset(split="val", num_images=args.images, resolution=args.resolution)
    indices = list(range(args.images))
    images, t_load = timed(load_images, dataset, indices)
    images = images.to(args.device)
    tokenizer = ResampleTokenizer(ResampleParams(factor=4)).to(args.device)

    def round_trip():
        return torch.cat([tokenizer.reconstruct(b.float() / 255) for b in images.split(args.batch_size)])

    recon, t_tok = timed(round_trip)
    recon_u8 = to_uint8(recon)
    (_, t_quality) = timed(lambda: (psnr_uint8(images, recon_u8), ssim(images.float() / 255, recon_u8.float() / 255)))
    extractor, t_build = timed(load_fid_extractor, None, args.device)

    def features(batch):
        return torch.cat([extractor(b) for b in batch.split(args.batch_size)]).cpu().numpy()

    ref, t_inception = timed(features, images)
    rec = features(recon_u8)
    fd_features, t_fd_features = timed(frechet_distance_from_features, ref, rec)
    stats = (*feature_statistics(ref), *feature_statistics(rec))
    fd_stats, t_fd_stats = timed(frechet_distance, *stats)

    n = args.images
    rows = {
        "shapes generation (img/s)": n / t_load,
        "tokenizer round trip, bicubic f4 (img/s)": n / t_tok,
        "PSNR+SSIM (img/s)": n / t_quality,
        "FID Inception features (img/s)": n / t_inception,
        "FID extractor build (s)": t_build,
        "Frechet distance from features (s)": t_fd_features,
        "Frechet distance from statistics (s)": t_fd_stats,
    }
    print(f"  FD agreement features vs statistics: {abs(fd_features - fd_stats):.2e}")
    return record("reconstruction", {"images": n, "resolution": args.resolution, "batch": args.batch_size,
                                     "tokenizer": "resample f4 (bicubic)"}, rows, [], args.device, save=not args.no_record)


if __name__ == "__main__":
    main()
