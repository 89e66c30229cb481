"""How fast can the tiny VTP trunk learn the 12 shape classes at all? A supervised ceiling.

The tiny VTP recipe learns colour zero-shot within minutes on CPU, but the 12 shape classes stay
at chance. This study separates "the objective is wrong" from "the model learns shapes slowly":
it trains the tiny VTP vision trunk (the exact ``tiny`` architecture: patch 8, width 128, depth 4,
RoPE, CLS) with a linear head *directly on the shape labels*, which is the most direct signal any
pretraining objective could give it, and a small CNN of a quarter of its size beside it as the
reference. Both train on fresh shapes images (batch 64, AdamW, cosine schedule) and are scored on
1200 held-out images (chance 1/12).

    python benchmarks/vtp_tiny_shape_ceiling.py --steps 600 2400 --threads 2

Each ``--steps`` value is its own run (its own cosine schedule). Results are appended to
``benchmarks/results/vtp_tiny_shape_ceiling.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import add_common_options, record, setup  # noqa: E402

from tokbench.data.loader import load_images
from tokbench.data.shapes import ShapesDataset
from tokbench.nn.layers import imagenet_normalize
from tokbench.training.schedules import CosineSchedule
from tokbench_vtp.model.config import preset
from tokbench_vtp.model.trunk import VisionTrunk

BATCH = 64
TRAIN_IMAGES = 40_000
VAL_IMAGES = 1200


class TrunkClassifier(nn.Module):
    def __init__(self, heads: int):
        super().__init__()
        arch = preset("tiny").model_copy(update={"vision_heads": heads})
        self.trunk = VisionTrunk(arch)
        for module in self.trunk.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.normal_(self.trunk.cls_token, std=0.02)
        self.head = nn.Linear(arch.vision_width, 12)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk.features(images).cls)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        layers, widths = [], [3, 32, 64, 128, 128]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], 12)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean(dim=(2, 3)))


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([
            model(imagenet_normalize(images[i : i + 200].to(device).float() / 255)).argmax(dim=1).cpu()
            for i in range(0, len(images), 200)
        ])
    model.train()
    return float((predictions == labels).float().mean())


def train(model: nn.Module, steps: int, data, device: torch.device, seed: int) -> tuple[float, float]:
    """Held-out accuracy after ``steps`` supervised steps, and the seconds they took."""
    train_images, train_labels, val_images, val_labels = data
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    schedule = CosineSchedule(1e-3, 0.0, steps, warmup_steps=min(50, steps - 1))
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = schedule(step)
        index = torch.randint(0, len(train_images), (BATCH,), generator=generator)
        logits = model(imagenet_normalize(train_images[index].to(device).float() / 255))
        loss = F.cross_entropy(logits, train_labels[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    seconds = time.perf_counter() - start
    return accuracy(model, val_images, val_labels, device), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_options(parser)
    parser.add_argument("--steps", type=int, nargs="+", default=[600, 2400])
    parser.add_argument("--heads", type=int, default=4, help="trunk heads (the tiny preset has 2; 4 learns a little faster)")
    parser.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = setup(args)
    train_set = ShapesDataset(split="train", num_images=args.train_images, resolution=64)
    val_set = ShapesDataset(split="val", num_images=VAL_IMAGES, resolution=64)
    data = (load_images(train_set, range(len(train_set))), torch.as_tensor(train_set.labels()),
            load_images(val_set, range(len(val_set))), torch.as_tensor(val_set.labels()))
    figures: dict[str, float] = {"chance": 1 / 12}
    for steps in args.steps:
        for name, build in (("vtp_tiny_trunk", lambda: TrunkClassifier(args.heads)), ("small_cnn", SmallCNN)):
            torch.manual_seed(args.seed)
            accuracy_, seconds = train(build(), steps, data, device, args.seed)
            figures[f"{name}_top1_at_{steps}"] = accuracy_
            figures[f"{name}_seconds_at_{steps}"] = seconds
            print(f"{name} {steps} steps: held-out top-1 {accuracy_:.3f} ({seconds:.0f} s)", flush=True)
    settings = {"steps": args.steps, "batch": BATCH, "heads": args.heads, "train_images": args.train_images,
                "val_images": VAL_IMAGES, "seed": args.seed}
    record("vtp_tiny_shape_ceiling", settings, figures, [], device, save=not args.no_record)


if __name__ == "__main__":
    main()
