"""Where the quickstart's tokenizer training time goes: a few steps of each in-repo tiny trainer
(the quickstart's own presets), timed and profiled op by op.

    .venv/bin/python benchmarks/profile_tiny_training.py                 # 20 steps each
    .venv/bin/python benchmarks/profile_tiny_training.py --steps 5 --only vae,dit

For each trainer: seconds per step (after the first step, which pays one-time costs) and that
rate times the preset's steps (what the quickstart spends on it, before evaluation), then the
ops that take the most CPU time in the profiled steps (``torch.profiler``, self time). The
trainers are called as the quickstart calls them, with only ``steps`` changed: the profiled
steps are the preset's own. Prints; records nothing (the figures go to docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "3000")  # as the tokbench CLI sets it, before torch loads (see tokbench/cli/main.py)

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from tokbench.runtime.memory import keep_freed_memory  # noqa: E402


def vae(steps: int):
    from tokbench.training.tiny import shapes_sources
    from tokbench_vae.params import VAEParams
    from tokbench_vae.train import train_tiny

    train = VAEParams(preset="tiny").train
    images, holdout = shapes_sources(train)
    return train.steps, lambda: train_tiny(train.model_copy(update={"steps": steps}), images, holdout)


def vqgan(steps: int):
    from tokbench.training.tiny import shapes_sources
    from tokbench_vqgan.params import VQGANParams
    from tokbench_vqgan.train import train_tiny

    train = VQGANParams(preset="tiny").train
    images, holdout = shapes_sources(train)
    return train.steps, lambda: train_tiny(train.model_copy(update={"steps": steps}), images, holdout)


def vtp(steps: int, recipe=None):
    from tokbench_vtp.pretrain.recipe import load_recipe
    from tokbench_vtp.pretrain.trainer import StopRequested, VTPPretrainer

    recipe = recipe or load_recipe("tiny", {"steps": 300, "stage2": {"steps": 0}})  # the quickstart's vtp-tiny

    def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                VTPPretrainer(recipe, Path(tmp), device="cpu").fit(stop_after=steps)
            except StopRequested:
                pass
    return recipe.total_steps, run


def rae_encoder(steps: int):
    from tokbench_rae.params import RAEParams

    return vtp(steps, RAEParams(preset="tiny").encoder_recipe())


def dit(steps: int):
    """The quickstart's generator on VAE tiny: LightningDiT-tiny/4 on 4x16x16 latents (16 tokens), batch 32,
    lr 2e-3, EMA 0.995, no timestep shift (suites/quickstart.yaml)."""
    from tokbench.generation.flops import steps_for_budget
    from tokbench.generation.model import LightningDiT, dit_config
    from tokbench.generation.train import DiTTrainer, LatentSet, TrainSettings
    from tokbench.generation.transport import NoiseSchedule

    config = dit_config("tiny/4", 4, input_size=16, num_classes=12)
    latents = torch.randn(2 * 2400, 4, 16, 16)
    data = LatentSet(latents[:2400], latents[2400:], torch.randint(0, 12, (2400,)))
    total = steps_for_budget(config, 3.2e12, 32)

    def run() -> None:
        torch.manual_seed(0)
        DiTTrainer(LightningDiT(config), data, TrainSettings(steps=steps, batch_size=32, lr=2e-3, ema_decay=0.995,
                                                             precision="fp32"), NoiseSchedule(), "cpu").fit()
    return total, run


TRAINERS = {"vae": vae, "vqgan": vqgan, "vtp": vtp, "rae-encoder": rae_encoder, "dit": dit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--only", default=",".join(TRAINERS), help=f"comma-separated: {', '.join(TRAINERS)}")
    parser.add_argument("--top", type=int, default=8, help="ops shown per trainer")
    args = parser.parse_args()
    keep_freed_memory()  # as every unit runs
    for name in args.only.split(","):
        total, run = TRAINERS[name](args.steps)
        _, warm = TRAINERS[name](1)
        started = time.perf_counter()
        warm()  # one step: model building, first-call costs
        one = time.perf_counter() - started
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            started = time.perf_counter()
            run()
            seconds = time.perf_counter() - started
        per_step = (seconds - one) / max(1, args.steps - 1)
        print(f"\n== {name}: {args.steps} steps in {seconds:.1f}s (1 step: {one:.1f}s) -> {per_step:.3f} s/step; "
              f"preset {total} steps ~ {per_step * total / 60:.1f} min")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))


if __name__ == "__main__":
    main()
