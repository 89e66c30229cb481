"""LightningDiT training and sampling throughput (and MFU on GPU).

    python benchmarks/bench_lightningdit.py                               # tiny/1 on CPU
    python benchmarks/bench_lightningdit.py --size XL/1 --channels 64 --batch 64 --device cuda --compile

Training: images/s of full optimizer steps (forward, backward, AdamW, EMA) on random latents,
with tokbench's trainer; its baseline in the same process is a plain eager loop (the same model,
torch.optim.AdamW without fused kernels, no EMA) so the trainer's overhead is visible.
Sampling: images/s of Euler steps (one model evaluation per image and step, no CFG).
MFU = achieved model FLOPs (analytic, = FlopCounterMode) / the device's bf16 peak (``--peak-tflops``;
H100 SXM dense bf16: 989). Results are appended to benchmarks/results/lightningdit.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import add_common_options, comparison, record, setup, sync  # noqa: E402

from tokbench.generation.flops import forward_flops, training_flops_per_image
from tokbench.generation.model import LightningDiT, dit_config
from tokbench.generation.train import DiTTrainer, LatentSet, TrainSettings
from tokbench.generation.transport import NoiseSchedule, sample_ode




def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny/1")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--side", type=int, default=8, help="latent side (16 for f16 at 256 px)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    add_common_options(parser)
    args = parser.parse_args(argv)
    setup(args)

    config = dit_config(args.size, args.channels, input_size=args.side)
    n = max(args.batch * 2, 64)
    latents = torch.randn(n, args.channels, args.side, args.side)
    data = LatentSet(latents, latents.flip(-1), torch.randint(0, 1000, (n,)))
    model = LightningDiT(config)
    settings = TrainSettings(steps=10**9, batch_size=args.batch, compile=args.compile,
                             activation_checkpointing=args.activation_checkpointing)
    trainer = DiTTrainer(model, data, settings, NoiseSchedule(), args.device)
    trainer.train_step()  # warm-up (and compilation)
    sync(args.device)
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    sync(args.device)
    train_seconds = (time.perf_counter() - started) / args.steps

    plain = LightningDiT(config).to(args.device)
    optimizer = torch.optim.AdamW(plain.parameters(), lr=2e-4, betas=(0.9, 0.95), weight_decay=0, foreach=False)
    x1, y = latents[: args.batch].to(args.device), data.labels[: args.batch].to(args.device)

    def plain_step() -> None:
        t = torch.rand(args.batch, device=args.device)
        x0 = torch.randn_like(x1)
        xt = t.view(-1, 1, 1, 1) * x1 + (1 - t.view(-1, 1, 1, 1)) * x0
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if args.device.startswith("cuda") else torch.autocast("cpu", enabled=False)
        with autocast:
            loss = (plain(xt, t, y).float() - (x1 - x0)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    plain_step()
    sync(args.device)
    started = time.perf_counter()
    for _ in range(args.steps):
        plain_step()
    sync(args.device)
    plain_seconds = (time.perf_counter() - started) / args.steps

    ema = trainer.ema
    grid = NoiseSchedule().grid(args.sample_steps)
    noise = torch.randn(args.batch, args.channels, args.side, args.side, device=args.device)
    labels = data.labels[: args.batch].to(args.device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if args.device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), autocast:
        sample_ode(lambda x, t: ema(x, t, labels), noise, grid[:3])  # warm-up
        sync(args.device)
        started = time.perf_counter()
        sample_ode(lambda x, t: ema(x, t, labels), noise, grid)
        sync(args.device)
    sample_seconds = time.perf_counter() - started

    train_flops = training_flops_per_image(config) * args.batch / train_seconds
    figures = {
        "forward_gflops_per_image": forward_flops(config) / 1e9,
        "train_images_per_s": args.batch / train_seconds,
        "plain_loop_images_per_s": args.batch / plain_seconds,
        "train_tflops": train_flops / 1e12,
        "sample_images_per_s": args.batch / sample_seconds,
    }
    if args.device.startswith("cuda"):
        figures["mfu"] = train_flops / (args.peak_tflops * 1e12)
        figures["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    settings = {"size": args.size, "channels": args.channels, "tokens": config.tokens, "batch": args.batch,
                "precision": "bf16 autocast" if args.device.startswith("cuda") else "fp32", "compile": args.compile,
                "activation_checkpointing": args.activation_checkpointing, "sample_steps": args.sample_steps,
                "peak_tflops": args.peak_tflops}
    comparisons = [comparison(f"LightningDiT-{args.size} training step (AdamW, EMA, seeded batches)",
                              figures["train_images_per_s"], "plain eager loop (same model, unfused AdamW, no EMA)",
                              figures["plain_loop_images_per_s"], "img/s")]
    return record("lightningdit", settings, figures, comparisons, args.device, save=not args.no_record)


if __name__ == "__main__":
    main()
