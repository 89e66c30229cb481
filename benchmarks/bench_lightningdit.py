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
import platform
import time

import torch
from common import record as save_result, sync

from tokbench.generation.flops import forward_flops, training_flops_per_image
from tokbench.generation.model import LightningDiT, dit_config
from tokbench.generation.train import DiTTrainer, LatentSet, TrainSettings
from tokbench.generation.transport import NoiseSchedule, sample_ode




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny/1")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--side", type=int, default=8, help="latent side (16 for f16 at 256 px)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    config = dit_config(args.size, args.channels, input_size=args.side)
    n = max(args.batch * 2, 64)
    latents = torch.randn(n, args.channels, args.side, args.side)
    data = LatentSet(latents, latents.flip(-1), torch.randint(0, 1000, (n,)))
    model = LightningDiT(config)
    if args.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    trainer = DiTTrainer(model, data, TrainSettings(steps=10**9, batch_size=args.batch), NoiseSchedule(), args.device)
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
    record = {
        "benchmark": "lightningdit",
        "size": args.size, "channels": args.channels, "tokens": config.tokens, "batch": args.batch,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)",
        "precision": "bf16 autocast" if args.device.startswith("cuda") else "fp32",
        "compile": args.compile, "torch": torch.__version__, "host": platform.node(),
        "forward_gflops_per_image": forward_flops(config) / 1e9,
        "train_images_per_s": round(args.batch / train_seconds, 2),
        "plain_loop_images_per_s": round(args.batch / plain_seconds, 2),
        "trainer_over_plain_time": round(train_seconds / plain_seconds, 3),
        "train_tflops": round(train_flops / 1e12, 4),
        "sample_images_per_s": round(args.batch / sample_seconds, 2),
        "sample_steps": args.sample_steps,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if args.device.startswith("cuda"):
        record["mfu"] = round(train_flops / (args.peak_tflops * 1e12), 4)
    save_result("lightningdit", record, save=not args.no_record)


if __name__ == "__main__":
    main()
