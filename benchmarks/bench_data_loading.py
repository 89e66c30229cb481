"""Data loading images/s: tokbench's extraction loader against a plain loop, on JPEG folders.

    .venv/bin/python benchmarks/bench_data_loading.py                  # 512 JPEGs at 256 px (ADM crop)
    .venv/bin/python benchmarks/bench_data_loading.py --workers 0,2,8 --images 2048

An ImageNet-layout folder of JPEGs (500x375, ImageNet's typical size, smooth random content)
is written to a temporary directory, then read at 256² with the ADM centre crop:

- **tokbench**: ``BuildContext.batches`` (``tokbench.data.loader.iterate_batches``) with N
  decoding workers, batches collated to one uint8 tensor (pinned on GPU machines);
- **baseline**: the plain loop people write first: open, crop and convert each image in the
  main process, stack a batch, convert to a tensor.

The figure that matters is the ratio to the consumer: loading must outrun the encoder it
feeds (``bench_codec.py``), or the GPU waits. The pixels are checked to be identical.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import add_common_options, comparison, record, setup  # noqa: E402


def write_folder(root: Path, images: int, classes: int = 8) -> None:
    from PIL import Image

    generator = np.random.default_rng(0)
    for index in range(images):
        folder = root / f"n{index % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        low = generator.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((500, 375), Image.BICUBIC)
        image.save(folder / f"{index:06d}.JPEG", quality=90)


def plain_loop(dataset, batch_size: int):
    """One image after another in the main process (the baseline)."""
    for start in range(0, len(dataset), batch_size):
        batch = [dataset.image(i) for i in range(start, min(start + batch_size, len(dataset)))]
        yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", default="0,2", help="decoding worker counts to time")
    add_common_options(parser)
    args = parser.parse_args(argv)
    device = setup(args)

    from tokbench.data.imagefolder import ImageFolderDataset
    from tokbench.data.params import ImageFolderParams
    from tokbench.runtime.context import BuildContext
    from tokbench.storage.store import Store

    figures, comparisons = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_folder(root, args.images)
        dataset = ImageFolderDataset.from_params(ImageFolderParams(root=str(root), resolution=args.resolution))
        list(plain_loop(dataset, args.batch))  # page cache warm for both
        started = time.perf_counter()
        baseline_batches = list(plain_loop(dataset, args.batch))
        baseline = args.images / (time.perf_counter() - started)
        figures["plain_loop_img_s"] = baseline
        for workers in (int(w) for w in args.workers.split(",")):
            context = BuildContext(store=Store(Path(tmp) / "store"), device=str(device), progress=False,
                                   loader_workers=workers)
            started = time.perf_counter()
            batches = [images for images, _, _ in context.batches(dataset, args.batch)]
            rate = args.images / (time.perf_counter() - started)
            if not all(torch.equal(a, b) for a, b in zip(batches, baseline_batches)):
                raise AssertionError("the loader's pixels differ from the plain loop's")
            figures[f"tokbench_{workers}_workers_img_s"] = rate
            comparisons.append(comparison(f"JPEG 500x375 -> {args.resolution}² ADM crop, {workers} worker(s)", rate,
                                          "plain loop in the main process", baseline, "img/s"))
    return record("data_loading", {"images": args.images, "resolution": args.resolution, "batch": args.batch,
                                   "source": "ImageNet-layout folder of 500x375 JPEGs (quality 90)"},
                  figures, comparisons, device, save=not args.no_record)


if __name__ == "__main__":
    main()
